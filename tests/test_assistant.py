"""The orchestrator's public contract (DESIGN §4), with the hash embedder and embedded Chroma.

One assistant per module: building it validates knowledge, rules and lexicon and embeds the corpus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant import Answer, Assistant, AssistantError, InputError, Settings
from assistant.retrieval.embeddings import HashEmbedder
from assistant.types import ESCALATIONS, TIERS

MARKER_RE = re.compile(r"\[(\d+)\]")
KYPHO_ASYMPTOMATIC_PERIPHERAL = "Asymptomatic peripheral cement emboli after kyphoplasty: what now?"


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assistant]:
    data_dir = tmp_path_factory.mktemp("assistant") / "data"
    yield Assistant.from_settings(Settings(data_dir=data_dir), embedder=HashEmbedder())


def audit_count(assistant: Assistant, kind: str = "ask") -> int:
    assert assistant.audit is not None
    return assistant.audit.count(kind)


# --- the contract --------------------------------------------------------------------------------


def test_answer_model_dump_has_every_contract_field(assistant: Assistant) -> None:
    answer = assistant.ask(
        "Asymptomatic, peripheral cement emboli after kyphoplasty — anticoagulate?",
        findings={"symptomatic": False, "location": "peripheral"},
    )
    dumped = answer.model_dump()
    for field in (
        "id", "question", "in_scope", "text", "citations", "recommendation", "findings",
        "follow_up_questions", "passages", "disclaimer", "versions", "latency_ms", "notes",
    ):  # fmt: skip
        assert field in dumped, field
    assert dumped["in_scope"] is True
    for field in (
        "source_id", "title", "year", "doi", "pmid", "url", "passage_id", "section", "snippet",
        "evidence_type",
    ):  # fmt: skip
        assert all(field in c for c in dumped["citations"]), field
    for field in (
        "symptomatic", "location", "hemodynamic_instability", "intracardiac_cement", "procedure",
        "evidence",
    ):  # fmt: skip
        assert field in dumped["findings"], field
    rec = dumped["recommendation"]
    for field in ("tier", "label", "rule_id", "actions", "rationale", "citations", "trace"):
        assert field in rec, field
    assert rec["tier"] == "surveillance"
    assert dumped["findings"]["symptomatic"] is False
    assert dumped["findings"]["location"] == "peripheral"
    assert answer.disclaimer
    assert answer.latency_ms >= 0
    assert isinstance(answer.to_json(), dict)  # JSON-ready (mode="json")


def test_answers_stamp_knowledge_rules_model_and_app_versions(assistant: Assistant) -> None:
    versions = assistant.ask("What is pulmonary cement embolism?").versions
    assert versions.knowledge and versions.app
    assert versions.rules.startswith("2026.")  # the rules table's own version, plus fingerprint
    assert versions.model.startswith("hash-256")
    assert versions.index.startswith("pce-")


@pytest.mark.parametrize(
    ("findings", "tier"),
    [
        # Every cell of the table: tests/test_rules.py. Here: findings as data reach it, in
        # either spelling, and 'unknown' leaves the finding open.
        ({"symptomatic": False, "location": "central"}, "anticoagulation"),
        ({"symptomatic": "yes", "location": "central"}, "surgical_embolectomy"),
        ({"symptomatic": None, "location": "unknown"}, "needs_information"),
    ],
)
def test_explicit_findings_give_the_decision_table_tier(
    assistant: Assistant, findings: dict[str, Any], tier: str
) -> None:
    answer = assistant.ask("Cement embolism after vertebroplasty: management?", findings=findings)
    assert answer.recommendation is not None
    assert answer.recommendation.tier == tier
    assert answer.recommendation.tier in TIERS


def test_escalations_use_the_stable_ids_and_never_change_the_tier(assistant: Assistant) -> None:
    answer = assistant.ask(
        "Cement embolism after vertebroplasty: management?",
        findings={
            "symptomatic": False,
            "location": "peripheral",
            "hemodynamic_instability": True,
            "intracardiac_cement": True,
        },
    )
    assert answer.recommendation is not None
    assert answer.recommendation.tier == "surveillance"
    ids = {e.id for e in answer.recommendation.escalations}
    assert ids == set(ESCALATIONS) == {"hemodynamic_instability", "intracardiac_cement"}


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "kwargs", "says"),
    [
        # Bad text, findings and history through every surface: tests/test_bad_input.py.
        # Here: what only a Python caller can pass.
        (42, {}, "must be text"),
        ("PCE?", {"findings": ["symptomatic"]}, "findings must be"),
        ("PCE?", {"findings": "symptomatic"}, "findings must be"),
        ("PCE?", {"history": [42]}, "history[0] must be"),
        ("PCE?", {"history": [{"role": "user", "content": 7}]}, "history[0].content must be"),
        ("PCE?", {"history": "asymptomatic PCE"}, "history must be a list"),
    ],
)
def test_bad_input_raises_input_error_saying_what_to_fix(
    assistant: Assistant, question: Any, kwargs: dict[str, Any], says: str
) -> None:
    with pytest.raises(InputError) as info:
        assistant.ask(question, **kwargs)
    assert isinstance(info.value, AssistantError)
    assert says in str(info.value)


def test_bad_input_is_not_audited_and_raises_before_any_work(assistant: Assistant) -> None:
    before = audit_count(assistant)
    with pytest.raises(InputError):
        assistant.ask("   ")
    assert audit_count(assistant) == before


# --- scope ---------------------------------------------------------------------------------------


# These are out of scope by the scope terms or by low similarity. Small talk that the hash
# embedder happens to find "similar" to the short claims (e.g. 'Tell me a joke', 'Write me a
# poem about autumn') is covered with the real model in test_e2e.py: the similarity threshold is
# tuned for MiniLM.
@pytest.mark.parametrize(
    "question",
    [
        "Antibiotic dose for cellulitis?",
        "How do I treat fat embolism after a femur fracture?",
        "Hello there, how are you today?",
    ],
)
def test_out_of_scope_question_gets_no_recommendation_and_no_citations(
    assistant: Assistant, question: str
) -> None:
    answer = assistant.ask(question)
    assert answer.in_scope is False
    assert answer.recommendation is None
    assert answer.citations == ()
    assert "outside what I cover" in answer.text
    assert any(n.startswith("Scope:") for n in answer.notes)


def test_explicit_findings_put_the_question_in_scope_whatever_its_wording(
    assistant: Assistant,
) -> None:
    # Issue 11 changed this (it was refused as out of scope): findings sent as data say the
    # question is about this patient's cement embolism, so the table's card is given.
    answer = assistant.ask(
        "Antibiotic dose for cellulitis?", findings={"symptomatic": True, "location": "central"}
    )
    assert answer.in_scope is True
    assert answer.recommendation is not None
    assert answer.recommendation.tier == "surgical_embolectomy"
    assert "Scope:" not in " ".join(answer.notes)


# --- management and knowledge questions ----------------------------------------------------------


def test_management_question_without_findings_needs_information_and_asks(
    assistant: Assistant,
) -> None:
    answer = assistant.ask("How should I manage cement embolism after vertebroplasty?")
    assert answer.in_scope
    assert answer.recommendation is not None
    assert answer.recommendation.tier == "needs_information"
    assert answer.follow_up_questions
    assert answer.follow_up_questions == tuple(m.question for m in answer.recommendation.missing)
    assert any("symptoms" in q for q in answer.follow_up_questions)
    missing = answer.recommendation.missing[0]
    assert missing.outcomes  # what each answer would lead to


PASTED_REPORT = (
    "CT CHEST\nClinical details: L2 vertebroplasty 4 days ago.\n"
    "Findings: No intraluminal high-density material in the pulmonary arteries.\n"
    "Impression: No pulmonary cement embolism. Follow-up CT recommended in 12 months for a "
    "stable 4 mm nodule."
)


def test_a_pasted_reports_recommendation_gets_no_card_until_the_clinician_asks(
    assistant: Assistant,
) -> None:
    report = assistant.ask(PASTED_REPORT)
    assert report.in_scope and report.recommendation is None
    asked = assistant.ask(PASTED_REPORT + "\nWhat should we do?")
    assert asked.recommendation is not None
    assert asked.recommendation.tier == "needs_information"


def assert_markers_resolve(answer: Answer) -> None:
    numbers = [c.n for c in answer.citations]
    assert numbers == list(range(1, len(numbers) + 1))
    in_text = {int(n) for n in MARKER_RE.findall(answer.text)}
    assert in_text == set(numbers)
    passage_ids = {p.id for p in answer.passages}
    assert {c.passage_id for c in answer.citations} <= passage_ids


@pytest.mark.parametrize(
    "question",
    [
        "What is the incidence of pulmonary cement embolism?",
        "Is PMMA cement thrombogenic in vitro?",
        "Why does bone cement leak into the veins during vertebroplasty?",
    ],
)
def test_knowledge_question_cites_numbered_passages_and_gives_no_recommendation(
    assistant: Assistant, question: str
) -> None:
    answer = assistant.ask(question)
    assert answer.in_scope
    assert answer.recommendation is None
    assert answer.follow_up_questions == ()
    assert answer.citations
    assert_markers_resolve(answer)


def test_management_answer_markers_resolve_too(assistant: Assistant) -> None:
    answer = assistant.ask(KYPHO_ASYMPTOMATIC_PERIPHERAL)
    assert answer.recommendation is not None
    assert_markers_resolve(answer)


@pytest.mark.parametrize(
    ("question", "sides"),
    [
        (
            "What is the incidence of pulmonary cement embolism?",
            {"krueger-2009", "wang-2012", "josr-2021", "butscheidt-2018"},
        ),
        (
            "Should pulmonary cement embolism be anticoagulated?",
            {"krueger-2009", "siniscalchi-2022", "waler-2020", "clinical-pearl-2021"},
        ),
    ],
)
def test_disagreement_topics_cite_both_sides(
    assistant: Assistant, question: str, sides: set[str]
) -> None:
    answer = assistant.ask(question)
    cited = {c.source_id for c in answer.citations}
    assert len(cited) >= 2
    assert sides <= cited
    (note,) = [s for s in answer.sentences if s.role == "note"]
    assert {c.split("#")[0] for c in note.cites} >= sides
    assert_markers_resolve(answer)


def test_a_vignette_gets_no_disagreement_note_about_another_cell(assistant: Assistant) -> None:
    answer = assistant.ask("Asymptomatic peripheral cement emboli after PKP: anticoagulate?")
    assert answer.recommendation is not None
    assert answer.recommendation.tier == "surveillance"
    assert not [s for s in answer.sentences if s.role == "note"]


# --- conversation and safety ---------------------------------------------------------------------


def test_follow_up_turn_upgrades_surveillance_to_anticoagulation(assistant: Assistant) -> None:
    first = "asymptomatic peripheral PCE after kyphoplasty"
    answer1 = assistant.ask(first)
    assert answer1.recommendation is not None
    assert answer1.recommendation.tier == "surveillance"

    history = [
        {"role": "user", "content": first},
        {"role": "assistant", "content": answer1.text},
    ]
    answer2 = assistant.ask("she is now short of breath", history=history)
    assert answer2.in_scope
    assert answer2.recommendation is not None
    assert answer2.recommendation.tier == "anticoagulation"
    origins = {(e.finding, e.value): e.origin for e in answer2.findings.evidence}
    assert origins[("symptomatic", "yes")] == "text"
    assert origins[("location", "peripheral")] == "history"


def test_plain_string_history_is_accepted(assistant: Assistant) -> None:
    answer = assistant.ask(
        "she is now short of breath", history=["asymptomatic peripheral PCE after kyphoplasty"]
    )
    assert answer.recommendation is not None
    assert answer.recommendation.tier == "anticoagulation"


# Prompt injection through every surface: tests/test_bad_input.py.


# --- LangChain Runnable --------------------------------------------------------------------------


def test_runnable_invoke_accepts_a_string_and_a_mapping(assistant: Assistant) -> None:
    by_text = assistant.invoke(KYPHO_ASYMPTOMATIC_PERIPHERAL)
    by_dict = assistant.invoke(
        {
            "question": "PCE after vertebroplasty: management?",
            "findings": {"symptomatic": True, "location": "central"},
        }
    )
    assert isinstance(by_text, Answer) and isinstance(by_dict, Answer)
    assert by_text.recommendation is not None and by_dict.recommendation is not None
    assert by_text.recommendation.tier == "surveillance"
    assert by_dict.recommendation.tier == "surgical_embolectomy"


def test_runnable_batch_and_stream_return_answers(assistant: Assistant) -> None:
    answers = assistant.batch([KYPHO_ASYMPTOMATIC_PERIPHERAL, "What is PMMA cement?"])
    assert len(answers) == 2 and all(isinstance(a, Answer) for a in answers)
    chunks = list(assistant.stream({"question": KYPHO_ASYMPTOMATIC_PERIPHERAL}))
    assert chunks and all(isinstance(c, Answer) for c in chunks)


def test_runnable_rejects_unknown_input_keys_and_types(assistant: Assistant) -> None:
    with pytest.raises(InputError, match="unknown input keys: tier"):
        assistant.invoke({"question": "PCE?", "tier": "surgical_embolectomy"})
    with pytest.raises(InputError, match="question string"):
        assistant.invoke(42)


# --- audit ---------------------------------------------------------------------------------------


def test_every_ask_is_audited_in_and_out_of_scope(assistant: Assistant) -> None:
    assert assistant.audit is not None
    before = audit_count(assistant)
    answers = [
        assistant.ask(KYPHO_ASYMPTOMATIC_PERIPHERAL, user="dr-a"),
        assistant.ask("How do I treat fat embolism after a femur fracture?"),
        assistant.invoke("What is PMMA cement?"),
    ]
    assert audit_count(assistant) == before + 3
    rows = {r["id"]: r for r in assistant.audit.rows("ask")}
    first = rows[answers[0].id]
    assert first["question"] == answers[0].question
    assert first["tier"] == "surveillance" and first["user"] == "dr-a"
    assert first["in_scope"] == 1 and rows[answers[1].id]["in_scope"] == 0
    assert rows[answers[2].id]["surface"] == "langchain"
    # A change of top_k or a threshold shows in the trail: each row carries the settings hash.
    assert json.loads(first["versions"])["settings"] == assistant.settings.fingerprint()
    assert answers[0].versions.settings == assistant.settings.fingerprint()


def test_record_feedback_joins_the_answer_id(assistant: Assistant) -> None:
    assert assistant.audit is not None
    answer = assistant.ask(KYPHO_ASYMPTOMATIC_PERIPHERAL)
    event = assistant.record_feedback(answer.id, "helpful", "clear")
    assert event is not None
    row = next(r for r in assistant.audit.rows("feedback") if r["id"] == event)
    assert (row["ref"], row["outcome"], row["comment"]) == (answer.id, "helpful", "clear")


def test_assistant_without_audit_still_answers(tmp_path: Path) -> None:
    bare = Assistant.from_settings(
        Settings(data_dir=tmp_path / "data"), embedder=HashEmbedder(), audit=False
    )
    assert bare.audit is None
    assert bare.ask(KYPHO_ASYMPTOMATIC_PERIPHERAL).recommendation is not None
    assert bare.record_feedback("x", "helpful") is None


def test_a_question_about_a_named_source_is_answered_from_its_claims(assistant: Assistant) -> None:
    answer = assistant.ask("What did Krueger 2009 recommend?")
    assert answer.in_scope
    assert answer.recommendation is None  # asks what a paper said, not what to do
    claims = [s for s in answer.sentences if s.role == "claim"]
    assert claims and all(c.cites[0].startswith("krueger-2009#") for c in claims[:3])
    assert_markers_resolve(answer)


def test_claim_sentences_cite_their_own_claims_and_sources(assistant: Assistant) -> None:
    answer = assistant.ask("Symptomatic central cement embolus after vertebroplasty: next step?")
    assert answer.recommendation is not None
    assert answer.sentences[0].role == "tier"
    assert "consider surgical embolectomy" in answer.sentences[0].text
    by_claim = {c.passage_id: c for c in answer.citations}
    for sentence in answer.sentences[1:]:
        for cid in sentence.cites:
            assert by_claim[cid].source_id == cid.split("#")[0]
