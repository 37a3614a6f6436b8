"""The command line through ``assistant.cli.main``, with the hash-embedder assistant for speed."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant import Answer, Assistant, Settings
from assistant import cli as cli_module
from assistant.cli import main
from assistant.present import default_presentation
from assistant.retrieval.embeddings import HashEmbedder

QUESTION = "Cement emboli in the lungs after kyphoplasty: anticoagulate?"


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assistant]:
    data_dir = tmp_path_factory.mktemp("cli") / "data"
    yield Assistant.from_settings(Settings(data_dir=data_dir), embedder=HashEmbedder())


@pytest.fixture(autouse=True)
def hash_assistant(assistant: Assistant, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every command that builds an assistant gets the module's one; its data dir via PCE_."""
    built: list[Any] = []

    def fake(args: Any) -> Assistant:
        built.append(args)
        return assistant

    monkeypatch.setattr(cli_module, "_assistant", fake)
    monkeypatch.setenv("PCE_DATA_DIR", str(assistant.settings.data_dir))
    yield built


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_ask_prints_tier_summary_narrative_citations_and_the_tier_card(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "ask", QUESTION, "--symptomatic", "no", "--location", "peripheral")
    assert code == 0, err
    lines = out.splitlines()
    # The tier in one line first, then the narrative with its markers.
    assert lines[0].startswith("Decision table: Clinical surveillance (no symptoms, peripheral")
    assert lines[1] == "" and "[1]" in lines[2]
    assert any(line.startswith("[1] ") and "doi:10." in line for line in lines)
    assert "== Recommendation: clinical surveillance [surveillance]" in out
    assert "rule asymptomatic-peripheral" in out
    assert "  Basis:" in out and "symptomatic = no (explicit" in out
    assert "location = peripheral (explicit" in out
    assert "  Sources:" in out and "  Caveats:" in out
    assert "Decision support only" in lines[-1]


def test_ask_shows_each_findings_span_and_the_statement_it_overrode(
    capsys: pytest.CaptureFixture[str],
) -> None:
    question = (
        "Initially stable after vertebroplasty, then in shock on vasopressors; cement in "
        "segmental arteries. Next step?"
    )
    code, out, err = run(capsys, "ask", question)
    assert code == 0, err
    lines = out.splitlines()
    used = [i for i, x in enumerate(lines) if x.startswith("    - hemodynamic_instability = yes")]
    assert used, out
    words = default_presentation().overridden
    assert lines[used[-1] + 1].strip() == (
        f"{words.label} “Initially stable” (this question) — {words.later}"
    )


def test_ask_with_escalation_flags_shows_them(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "ask", QUESTION, "--symptomatic", "yes", "--location", "central",
        "--unstable", "yes", "--intracardiac", "no",
    )  # fmt: skip
    assert code == 0
    assert "[surgical_embolectomy]" in out
    assert "! Escalation: haemodynamic instability" in out
    assert "intracardiac cement" not in out.split("Escalation")[-1].splitlines()[0]


def test_ask_without_findings_lists_follow_up_questions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ask", "How should I manage cement embolism after vertebroplasty?")
    assert code == 0
    assert "[needs_information]" in out
    assert "To decide, I need to know:" in out and "  ? " in out


def test_ask_json_prints_a_valid_answer(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "ask", QUESTION, "--symptomatic", "yes", "--location", "peripheral", "--json"
    )
    assert code == 0
    data = json.loads(out)
    answer = Answer.model_validate(data)
    assert answer.recommendation is not None
    assert answer.recommendation.tier == "anticoagulation"
    assert data["findings"]["symptomatic"] is True
    assert data["citations"][0]["n"] == 1


def test_ask_out_of_scope_prints_the_scope_statement(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ask", "How do I treat fat embolism after a femur fracture?")
    assert code == 0
    assert "outside what I cover" in out
    assert "== Recommendation" not in out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["ask", ""], "error: The question is empty"),
        (["ask", "   "], "error: The question is empty"),
        (["ask", "PCE " * 2000], "error: The question is 7,999 characters long"),
        (["ask", "PCE\x07?"], "error: The question contains control characters (U+0007)"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_traceback(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith(says)
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_bad_setting_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PCE_TOP_K", "many")
    code, _, err = run(capsys, "rules", "check")
    assert code == 2
    assert err.startswith("error: invalid setting PCE_TOP_K: Input should be a valid integer")
    assert len(err.strip().splitlines()) == 1


def test_missing_llm_package_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_module, "_assistant", lambda args: Assistant.from_settings(Settings()))
    monkeypatch.setenv("PCE_LLM", "ollama:llama3.1")
    monkeypatch.setitem(sys.modules, "langchain_ollama", None)
    code, _, err = run(capsys, "ask", QUESTION)
    assert code == 2
    assert "pip install langchain-ollama" in err and len(err.strip().splitlines()) == 1


def test_invalid_choice_exits_2_via_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["ask", QUESTION, "--symptomatic", "maybe"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'maybe'" in err and "Traceback" not in err


def test_audit_export_writes_the_asked_questions(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run(capsys, "ask", QUESTION, "--symptomatic", "no", "--location", "central")
    out_csv, out_jsonl = tmp_path / "audit.csv", tmp_path / "out" / "audit.jsonl"
    code, out, _ = run(capsys, "audit", "export", "--out", str(out_csv))
    assert code == 0 and "(csv)" in out
    with out_csv.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert any(r["question"] == QUESTION and r["surface"] == "cli" for r in rows)
    assert f"Exported {len(rows)} audit event(s)" in out

    code, out, _ = run(capsys, "audit", "export", "--out", str(out_jsonl))
    assert code == 0 and "(jsonl)" in out
    events = [json.loads(line) for line in out_jsonl.read_text(encoding="utf-8").splitlines()]
    assert len(events) == len(rows)
    assert any(e["tier"] == "anticoagulation" for e in events)


def test_audit_export_to_an_unwritable_path_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "audit", "export", "--out", str(tmp_path))  # a directory
    assert code == 2
    assert err.startswith("error: cannot export the audit trail") and "Traceback" not in err


def test_rules_check_passes_on_the_shipped_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "rules", "check")
    assert code == 0, err
    assert "rules.yaml: OK" in out


def test_rules_check_fails_on_a_broken_table(capsys: pytest.CaptureFixture[str]) -> None:
    broken = Path(__file__).parent / "fixtures" / "rules" / "gap.yaml"
    code, _, err = run(capsys, "rules", "check", "--path", str(broken))
    assert code == 1
    assert "problem(s)" in err


def test_chat_carries_findings_between_turns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = iter(
        ["asymptomatic peripheral PCE after kyphoplasty", "she is now short of breath", ""]
    )
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    code, out, _ = run(capsys, "chat")
    assert code == 0
    first, second = out.split("== Recommendation")[1:3]
    assert "[surveillance]" in first.splitlines()[0]
    assert "[anticoagulation]" in second.splitlines()[0]
