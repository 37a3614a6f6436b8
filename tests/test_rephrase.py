"""The optional LLM re-phrasing with LangChain fake chat models: checked, never alters the tier."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage

from assistant import Answer, Assistant, Settings
from assistant.answer.rephrase import Rephraser, load_tier_actions, markers, model_from_settings
from assistant.errors import ConfigurationError, RulesError
from assistant.retrieval.embeddings import HashEmbedder

REPO_ROOT = Path(__file__).resolve().parent.parent

QUESTION = "Asymptomatic peripheral cement emboli after kyphoplasty: anticoagulate?"
REJECTED = "LLM re-phrasing rejected:"


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assistant]:
    data_dir = tmp_path_factory.mktemp("rephrase") / "data"
    yield Assistant.from_settings(Settings(data_dir=data_dir), embedder=HashEmbedder())


@pytest.fixture(scope="module")
def extractive(assistant: Assistant) -> Answer:
    """The extractive answer to QUESTION (no LLM), the baseline every re-phrasing is held to."""
    assert assistant.rephraser is None
    answer = assistant.ask(QUESTION)
    assert answer.recommendation is not None
    assert answer.recommendation.tier == "surveillance"
    return answer


@pytest.fixture
def with_llm(assistant: Assistant) -> Iterator[Any]:
    """Install a Rephraser around a given fake chat model for one test, then remove it."""

    def install(model: Any, **kwargs: Any) -> Rephraser:
        assistant.rephraser = Rephraser(model, **kwargs)
        return assistant.rephraser

    yield install
    assistant.rephraser = None


def reworded(text: str) -> str:
    """A faithful re-phrasing: the same statements and markers, other words."""
    return "In summary: " + text.replace(
        "need nothing beyond clinical follow-up", "need no more than clinical follow-up"
    ).replace("Sources disagree on", "The sources differ on")


class BrokenChatModel(FakeListChatModel):
    def _call(self, *args: Any, **kwargs: Any) -> str:
        raise ConnectionError("connection refused: is ollama running?")


# --- the answer --------------------------------------------------------------------------------


def test_faithful_rephrasing_is_accepted_with_its_markers(
    assistant: Assistant, extractive: Answer, with_llm: Any
) -> None:
    good = reworded(extractive.text)
    with_llm(FakeListChatModel(responses=[good]))
    answer = assistant.ask(QUESTION)
    assert answer.text == good
    assert answer.citations == extractive.citations
    assert set(markers(answer.text)) == {c.n for c in answer.citations}
    assert answer.recommendation == extractive.recommendation
    assert any("re-phrased by an LLM" in n for n in answer.notes)
    assert not any(REJECTED in n for n in answer.notes)


def test_generic_fake_chat_model_message_is_used(
    assistant: Assistant, extractive: Answer, with_llm: Any
) -> None:
    good = reworded(extractive.text)
    with_llm(GenericFakeChatModel(messages=iter([AIMessage(content=good)])))
    assert assistant.ask(QUESTION).text == good


def test_llm_text_cannot_alter_the_tier(
    assistant: Assistant, extractive: Answer, with_llm: Any
) -> None:
    attack = "Tier: surgical_embolectomy. Do an embolectomy [1]"
    with_llm(FakeListChatModel(responses=[attack]))
    answer = assistant.ask(QUESTION)
    assert answer.recommendation is not None
    assert answer.recommendation.tier == "surveillance"
    assert answer.recommendation == extractive.recommendation
    assert answer.text == extractive.text
    note = next(n for n in answer.notes if n.startswith(REJECTED))
    assert "surgical_embolectomy" in note and "embolectomy" in note


def test_unresolved_marker_is_rejected_for_the_extractive_narrative(
    assistant: Assistant, extractive: Answer, with_llm: Any
) -> None:
    bad = reworded(extractive.text) + " Cement is harmless [99]."
    with_llm(FakeListChatModel(responses=[bad]))
    answer = assistant.ask(QUESTION)
    assert answer.text == extractive.text
    note = next(n for n in answer.notes if n.startswith(REJECTED))
    assert "[99] do not resolve" in note


def test_rephrasing_without_markers_or_with_dropped_markers_is_rejected(
    assistant: Assistant, extractive: Answer, with_llm: Any
) -> None:
    with_llm(FakeListChatModel(responses=["Follow the patient clinically.", "Only this [1]."]))
    no_marker = assistant.ask(QUESTION)
    dropped = assistant.ask(QUESTION)
    assert no_marker.text == dropped.text == extractive.text
    assert "no citation marker" in " ".join(no_marker.notes)
    assert "drops marker(s) [2]" in " ".join(dropped.notes)


def test_new_numbers_are_rejected_as_added_facts(
    assistant: Assistant, extractive: Answer, with_llm: Any
) -> None:
    with_llm(FakeListChatModel(responses=[reworded(extractive.text) + " Repeat CT at 48 hours."]))
    answer = assistant.ask(QUESTION)
    assert answer.text == extractive.text
    assert "number(s) not in the cited passages: 48" in " ".join(answer.notes)


@pytest.mark.parametrize("factory", [BrokenChatModel, GenericFakeChatModel])
def test_llm_exception_keeps_the_extractive_narrative_with_a_note(
    assistant: Assistant,
    extractive: Answer,
    with_llm: Any,
    factory: type,
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = (
        BrokenChatModel(responses=["x"])
        if factory is BrokenChatModel
        else GenericFakeChatModel(messages=iter([]))  # exhausted: raises on invoke
    )
    with_llm(model)
    answer = assistant.ask(QUESTION)
    assert answer.text == extractive.text
    assert answer.recommendation == extractive.recommendation
    assert any(n.startswith(REJECTED + " the model failed") for n in answer.notes)
    assert "LLM re-phrasing failed" in caplog.text


def test_llm_timeout_keeps_the_extractive_narrative(
    assistant: Assistant, extractive: Answer, with_llm: Any
) -> None:
    with_llm(FakeListChatModel(responses=[extractive.text], sleep=3.0), timeout=0.2)
    answer = assistant.ask(QUESTION)
    assert answer.text == extractive.text
    # The note proves the timeout path was taken (no wall-clock assertion in a test).
    assert any("no reply within 0.2 s" in n for n in answer.notes)


def test_out_of_scope_questions_never_reach_the_llm(assistant: Assistant, with_llm: Any) -> None:
    model = FakeListChatModel(responses=["Do an embolectomy [1]"])
    with_llm(model)
    answer = assistant.ask("How do I treat fat embolism after a femur fracture?")
    assert answer.in_scope is False
    assert model.i == 0  # never called


def test_the_prompt_holds_the_question_narrative_and_only_cited_passages(
    extractive: Answer,
) -> None:
    rephraser = Rephraser(FakeListChatModel(responses=["-"]))
    cited = {c.passage_id for c in extractive.citations}
    uncited = [p for p in extractive.passages if p.id not in cited]
    (system, sys_text), (human, text) = rephraser.messages(
        extractive.question, extractive.text, extractive.citations, extractive.passages
    )
    assert (system, human) == ("system", "human")
    assert "keep every citation marker" in sys_text and "add no fact" in sys_text
    assert extractive.question in text and extractive.text in text
    for c in extractive.citations:
        assert f"[{c.n}] {c.title}" in text
    for p in uncited:
        assert p.text not in text


# --- the check -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rephraser() -> Rephraser:
    return Rephraser(FakeListChatModel(responses=["-"]))


@pytest.mark.parametrize(
    ("tier", "text", "rejected"),
    [
        ("surveillance", "We suggest surgical embolectomy [1] [2].", True),
        ("surveillance", "Surgical removal is recommended [1] [2].", True),
        ("anticoagulation", "Consider urgent surgical embolectomy [1] [2].", True),
        ("surveillance", "Start heparin now [1] [2].", True),
        ("surveillance", "She should be anticoagulated [1] [2].", True),
        ("anticoagulation", "No anticoagulation is needed; observe only [1] [2].", True),
        ("surgical_embolectomy", "Anticoagulation is not required [1] [2].", True),
        ("needs_information", "Start heparin [1] [2].", True),
        ("surveillance", "This falls in the anticoagulation tier [1] [2].", True),
        ("surveillance", "No anticoagulation is needed; observe only [1] [2].", False),
        ("anticoagulation", "Start heparin, then a coumarin [1] [2].", False),
        ("surgical_embolectomy", "Consider surgical embolectomy; start heparin [1] [2].", False),
        ("surveillance", "Embolectomy was reported in one case [1] [2].", False),
        ("surveillance", "Sources discuss anticoagulation and surveillance [1] [2].", False),
        ("surveillance", "Do not start heparin; she does not need anticoagulation [1] [2].", False),
        ("surveillance", "We advise against embolectomy [1] [2].", False),
        ("surveillance", "There is no standard, but start heparin [1] [2].", True),
    ],
)
def test_check_rejects_actions_of_another_tier_only(
    rephraser: Rephraser, extractive: Answer, tier: str, text: str, rejected: bool
) -> None:
    citations = extractive.citations[:2]
    assert extractive.recommendation is not None
    rec = extractive.recommendation.model_copy(update={"tier": tier})
    problems = rephraser.check(text, citations, rec)
    assert bool(problems) is rejected, problems
    if rejected:
        assert all("rules gave " + tier in p for p in problems)


def test_check_tolerates_action_phrases_the_extractive_narrative_already_has(
    rephraser: Rephraser, extractive: Answer
) -> None:
    citations = extractive.citations[:1]
    text = "Krueger advises to start heparin for central emboli [1]."
    assert rephraser.check(text, citations, extractive.recommendation)
    assert not rephraser.check(text, citations, extractive.recommendation, narrative=text)


def test_check_without_a_recommendation_rejects_any_tier_action(
    rephraser: Rephraser, extractive: Answer
) -> None:
    problems = rephraser.check("Perform an embolectomy [1].", extractive.citations[:1], None)
    assert problems == [
        "it recommends surgical removal of the cement ('Perform an embolectomy') but the rules "
        "gave no tier"
    ]


def test_markers_understands_lists_and_ranges() -> None:
    assert markers("a [1] b [2, 3] c [4-6] d [7–8]") == [1, 2, 3, 4, 5, 6, 7, 8]


def test_shipped_tier_actions_load_and_broken_ones_fail_with_the_file_named(
    tmp_path: Path,
) -> None:
    assert load_tier_actions(REPO_ROOT / "knowledge" / "tier_actions.yaml")
    broken = tmp_path / "tier_actions.yaml"
    broken.write_text(
        "version: 1\nactions:\n  - {id: a, label: a, tiers: [surgery], phrases: ['x']}\n"
        "  - {id: b, label: b, tiers: [surveillance], phrases: ['(unclosed'], colour: red}\n"
    )
    with pytest.raises(RulesError) as info:
        load_tier_actions(broken)
    message = str(info.value)
    assert str(broken) in message and "surgery" in message and "colour" in message


# --- configuration -------------------------------------------------------------------------------


def test_model_from_settings_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "langchain_ollama", None)  # import fails: not installed
    monkeypatch.setitem(sys.modules, "langchain_openai", None)
    with pytest.raises(ConfigurationError, match="pip install langchain-ollama"):
        model_from_settings("ollama:llama3.1")
    with pytest.raises(ConfigurationError, match="pip install langchain-openai"):
        model_from_settings("openai:gpt-4o-mini")
    for spec in ("llama3", "anthropic:claude", "ollama:"):
        with pytest.raises(ConfigurationError, match="ollama:<model>"):
            model_from_settings(spec)


def test_pce_llm_builds_the_provider_chat_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    created: list[dict[str, Any]] = []

    class ChatOllama(FakeListChatModel):
        def __init__(self, **kwargs: Any) -> None:
            created.append(kwargs)
            super().__init__(responses=["-"])

    monkeypatch.setitem(
        sys.modules, "langchain_ollama", types.SimpleNamespace(ChatOllama=ChatOllama)
    )
    built = Assistant.from_settings(
        Settings(data_dir=tmp_path / "data", llm="ollama:llama3.1"),
        embedder=HashEmbedder(),
        audit=False,
    )
    assert isinstance(built.rephraser, Rephraser)
    assert created[0]["model"] == "llama3.1" and created[0]["temperature"] == 0


def test_pce_llm_unset_imports_no_llm_package(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from assistant import Assistant, Settings\n"
        "from assistant.retrieval.embeddings import HashEmbedder\n"
        f"a = Assistant.from_settings(Settings(data_dir={str(tmp_path)!r}), "
        "embedder=HashEmbedder(), audit=False, retriever='bm25', build_index=False)\n"
        "assert a.rephraser is None\n"
        "a.ask('Asymptomatic peripheral cement emboli: anticoagulate?')\n"
        "loaded = [m for m in ('assistant.answer.rephrase', 'langchain_ollama', "
        "'langchain_openai', 'ollama', 'openai') if m in sys.modules]\n"
        "print('loaded:', loaded)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCE_")}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded: []" in result.stdout
