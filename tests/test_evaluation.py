"""The evaluation runner: case validation, metric functions, scoring, the gate and the report.

Unit tests: fake Answers built by hand, and a HashEmbedder assistant for the end-to-end run.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from assistant import cli
from assistant.evals import runner as evaluation
from assistant.evals.answer_metrics import (
    attribution_problems,
    evidence_sentences,
    lead_ok,
    population_conflicts,
    stock_answers,
    stock_share,
)
from assistant.evals.cases import (
    EvalCase,
    QuestionSetError,
    check_relevance,
    load_cases,
    relevant_sources,
)
from assistant.evals.metrics import (
    confusion_matrix,
    missing_key_facts,
    ndcg_at_k,
    percentile,
    precision_recall,
    recall_at_k,
    reciprocal_rank,
    retrieved,
    wrong_definite_tiers,
)
from assistant.evals.report import write_ragas, write_report
from assistant.evals.runner import (
    MODES,
    CaseResult,
    EvalRun,
    gate_failures,
    run_eval,
    score_case,
    summarise,
)
from assistant.knowledge.sources import load_knowledge
from assistant.retrieval.embeddings import HashEmbedder
from assistant.settings import Settings
from assistant.types import (
    TIERS,
    Answer,
    Citation,
    Escalation,
    Findings,
    NarrativeSentence,
    Passage,
    Population,
    Recommendation,
    Versions,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

VERSIONS = Versions(app="9.9.9", knowledge="kn-abc123", rules="2099.1 (r-def456)",
                    model="fake-model (000000000000)", index="pce-test")


def write_set(directory: Path, name: str, *rows: dict[str, Any] | str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.jsonl"
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def case(**overrides: Any) -> dict[str, Any]:
    return {"id": "c1", "question": "Asymptomatic peripheral cement emboli - anticoagulate?",
            "expected_tier": "surveillance", "split": "test", **overrides}


# --- case validation ---------------------------------------------------------------------------


def test_load_cases_lists_every_problem_of_every_set_with_file_line_and_field(
    tmp_path: Path,
) -> None:
    no_tier = case(id="c4")
    del no_tier["expected_tier"]
    write_set(tmp_path, "b", case())
    write_set(
        tmp_path, "mgmt",
        "{not json",
        case(id="c2", expected_teir="surveillance"),
        case(id="c3", expected_tier="thrombolysis"),
        no_tier,
        case(id="c5", findings={"location": "lobar"}),
        "[1]",
        case(id="c7", must_abstain=True),
        case(id="c8", expected_tier=None, expected_escalations=["hemodynamic_instability"]),
        case(),
    )
    with pytest.raises(QuestionSetError) as err:
        load_cases(tmp_path)
    assert [p.split(" (")[0].split(";")[0] for p in err.value.problems] == [
        "mgmt.jsonl:1: not valid JSON",
        "mgmt.jsonl:2: expected_teir: unknown field",
        "mgmt.jsonl:3: expected_tier: unknown value 'thrombolysis'",
        "mgmt.jsonl:4: expected_tier: required field is missing",
        "mgmt.jsonl:5: findings.location: must be one of: central, peripheral, unknown",
        "mgmt.jsonl:6: each line must be one JSON object",
        "mgmt.jsonl:7: a case that must abstain cannot expect a tier or escalations",
        "mgmt.jsonl:8: expected_escalations need an expected_tier",
        "mgmt.jsonl:9: id: duplicate id 'c1'",
    ]
    assert "(did you mean 'expected_tier'?)" in err.value.problems[1]
    assert err.value.problems[-1].endswith("(first in b.jsonl:1)")


def test_load_cases_selects_sets_and_split_and_names_the_set(tmp_path: Path) -> None:
    write_set(tmp_path, "a", case(), case(id="c2", split="dev"))
    write_set(tmp_path, "b", case(id="c3"))
    assert [c.id for c in load_cases(tmp_path, ["a"], "dev")] == ["c2"]
    assert [(c.id, c.set) for c in load_cases(tmp_path, split="test")] == [("c1", "a"),
                                                                           ("c3", "b")]
    with pytest.raises(QuestionSetError, match="no question set 'zzz'"):
        load_cases(tmp_path, ["zzz"])


def test_relevant_dois_resolve_to_source_ids_and_unknown_ids_fail() -> None:
    sources = load_knowledge(REPO_ROOT / "knowledge").sources
    ok = EvalCase.model_validate(case(expected_tier=None, relevant_dois=["10.3174/AJNR.A2368"],
                                      relevant_source_ids=["choe-2004"]))
    assert relevant_sources(ok, sources) == ["choe-2004", "luetmer-2011"]
    bad = EvalCase.model_validate(case(relevant_source_ids=["luetmer-2012"]))
    with pytest.raises(QuestionSetError, match="unknown source id 'luetmer-2012'"):
        check_relevance([bad], sources)


# --- the shipped question sets -----------------------------------------------------------------


def test_shipped_question_sets_are_valid_and_cover_every_source_row_and_escalation() -> None:
    cases = load_cases()
    knowledge = load_knowledge(REPO_ROOT / "knowledge")
    check_relevance(cases, knowledge.sources)
    assert len(cases) >= 150
    dev = sum(c.split == "dev" for c in cases) / len(cases)
    assert 0.25 <= dev <= 0.35
    covered = {s for c in cases for s in relevant_sources(c, knowledge.sources)}
    assert covered == set(knowledge.sources)
    rules = yaml.safe_load((REPO_ROOT / "knowledge" / "rules.yaml").read_text())
    tags = {t for c in cases for t in c.tags}
    assert {f"row:{r['id']}" for r in rules["rows"]} <= tags
    assert {f"escalation:{e['id']}" for e in rules["escalations"]} <= tags
    assert {c.expected_tier for c in cases} >= set(TIERS)
    assert {e for c in cases if c.split == "test" for e in c.expected_escalations} == {
        "hemodynamic_instability", "intracardiac_cement"}
    assert sum(c.must_abstain for c in cases) >= 25


def test_shipped_questions_are_not_copied_from_the_test_fixtures() -> None:
    vignettes = yaml.safe_load((REPO_ROOT / "tests" / "fixtures" / "vignettes.yaml").read_text())
    fixture_questions = {v["question"].strip().lower() for v in vignettes}
    assert not [c.id for c in load_cases() if c.question.strip().lower() in fixture_questions]


# --- metric functions --------------------------------------------------------------------------


def test_recall_at_k_counts_the_share_of_relevant_sources_in_the_top_k() -> None:
    ranking = ["a", "b", "c", "d", "e"]
    assert recall_at_k(ranking, {"c"}, 1) == 0.0
    assert recall_at_k(ranking, {"c"}, 3) == 1.0
    assert recall_at_k(ranking, {"a", "e"}, 3) == 0.5
    assert recall_at_k(ranking, {"a", "z"}, 5) == 0.5
    assert recall_at_k([], {"a"}, 5) == 0.0


def test_reciprocal_rank_is_one_over_the_first_relevant_rank() -> None:
    assert reciprocal_rank(["a", "b", "c"], {"a"}) == 1.0
    assert reciprocal_rank(["a", "b", "c"], {"c", "b"}) == 0.5
    assert reciprocal_rank(["a", "b"], {"z"}) == 0.0


def test_ndcg_at_k_uses_binary_gains_and_the_ideal_ordering() -> None:
    assert ndcg_at_k(["a", "b"], {"a"}, 5) == 1.0
    assert ndcg_at_k(["x", "a"], {"a"}, 5) == pytest.approx(1 / math.log2(3))
    # two relevant, found at ranks 1 and 3: (1 + 1/2) / (1 + 1/log2(3))
    expected = (1 + 0.5) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["a", "x", "b"], {"a", "b"}, 5) == pytest.approx(expected)
    assert ndcg_at_k(["x", "y", "z", "w", "v", "a"], {"a"}, 5) == 0.0


def test_precision_recall_of_abstention() -> None:
    # (must abstain, abstained): 2 true positives, 1 false positive, 1 false negative, 1 TN
    pairs = [(True, True), (True, True), (False, True), (True, False), (False, False)]
    assert precision_recall(pairs) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert precision_recall([(False, False)]) == (None, None)
    assert precision_recall([(True, False)]) == (None, 0.0)


def test_confusion_matrix_counts_expected_by_predicted_and_adds_unknown_labels() -> None:
    m = confusion_matrix([("surveillance", "surveillance"), ("surveillance", "none"),
                          ("none", "error")])
    assert m["surveillance"]["surveillance"] == 1
    assert m["surveillance"]["none"] == 1
    assert m["none"]["error"] == 1
    assert set(m) == {*TIERS, "none", "error"}
    assert sum(sum(row.values()) for row in m.values()) == 3


def test_percentile_interpolates_and_handles_no_values() -> None:
    assert percentile([10.0, 20.0, 30.0, 40.0], 50) == 25.0
    assert percentile([5.0], 95) == 5.0
    assert percentile(list(map(float, range(1, 101))), 95) == pytest.approx(95.05)
    assert percentile([], 50) is None


def test_key_facts_match_ignoring_case_dashes_and_spacing() -> None:
    text = "Heparin, then six\u00a0months of a coumarin; range 3.5–23%."
    assert missing_key_facts(text, ["Six months", "3.5-23%", "coumarin"]) == []
    assert missing_key_facts(text, ["warfarin"]) == ["warfarin"]


# --- scoring one answer ------------------------------------------------------------------------


def passage(pid: str, ranked: bool = True) -> Passage:
    source = pid.split("#")[0]
    return Passage(id=pid, source_id=source, section_id=pid, section="S", text=f"Text of {pid}.",
                   title=source, evidence_type="case report",
                   ranks={"bm25": 1} if ranked else {})


def cite(n: int, pid: str, source: str | None = None) -> Citation:
    return Citation(n=n, source_id=source or pid.split("#")[0], title="t", passage_id=pid,
                    section="S", snippet="s", evidence_type="case report")


def recommendation(tier: str, escalations: tuple[str, ...] = ()) -> Recommendation:
    return Recommendation(
        tier=tier, label=tier, rule_id=f"rule-{tier}", rules_version="1", actions=("a",),
        rationale="r",
        escalations=tuple(Escalation(id=e, label=e, actions=(), rationale="", citations=())
                          for e in escalations),
    )


KNOWN = {p.id: p for p in map(passage, ["a#1", "b#1", "c#1", "d#1"])}


def answer(**fields: Any) -> Answer:
    base: dict[str, Any] = {"question": "q", "in_scope": True, "text": "", "versions": VERSIONS,
                            "latency_ms": 12.0}
    return Answer(**{**base, **fields})


# --- the narrative's metrics ---------------------------------------------------------------------


def claim(pid: str, **fields: Any) -> Passage:
    return passage(pid).model_copy(update={"kind": "claim", **fields})


def test_lead_needs_a_key_fact_in_the_first_two_sentences() -> None:
    text = "First point here. [1] Second point. [2] Third has 6 months. [3]"
    assert lead_ok(text, ["second point"]) is True
    assert lead_ok(text, ["6 months"]) is False
    assert lead_ok(text, ["nowhere", "first point"]) is True
    assert lead_ok(text, []) is None


def test_population_conflicts_count_claims_about_another_group() -> None:
    known = {"a#1": claim("a#1", population=Population(symptomatic="no", location="peripheral")),
             "b#1": claim("b#1", population=Population(location="peripheral"))}
    ans = answer(
        text="Text of a#1. [1] Text of b#1. [2]",
        citations=(cite(1, "a#1"), cite(2, "b#1")),
        findings=Findings(symptomatic=True, location="peripheral"),
        sentences=(NarrativeSentence(text="Text of a#1.", role="claim", cites=("a#1",)),
                   NarrativeSentence(text="Text of b#1.", role="claim", cites=("b#1",))),
    )
    assert population_conflicts(ans, known) == ["a#1 is about symptomatic other than the patient's"]
    unknown = ans.model_copy(update={"findings": Findings()})
    assert population_conflicts(unknown, known) == []


def test_attribution_checks_each_sentence_cites_its_own_claim_and_source() -> None:
    known = {"a#1": claim("a#1"), "b#1": claim("b#1")}
    good = answer(
        text="In a published case (A 2020), text of a#1. [1]",
        citations=(cite(1, "a#1"),),
        sentences=(NarrativeSentence(text="In a published case (A 2020), text of a#1.",
                                     role="claim", cites=("a#1",)),),
    )
    assert attribution_problems(good, known) == []
    wrong_source = good.model_copy(update={"citations": (cite(1, "a#1", source="b"),)})
    assert attribution_problems(wrong_source, known) == [
        "[1] a#1 is cited as b, but it comes from a"]
    wrong_text = good.model_copy(update={"sentences": (
        NarrativeSentence(text="Something else.", role="claim", cites=("a#1",)),)})
    assert attribution_problems(wrong_text, known) == [
        "[1] the sentence does not state claim a#1"]


def test_stock_sentences_flag_answers_sharing_a_sentence_with_three_others() -> None:
    shared = "the same opener."
    answers = [[shared, f"point {i}."] for i in range(4)] + [["a different answer."]]
    assert stock_answers(answers) == [True, True, True, True, False]
    assert stock_share(answers) == pytest.approx(4 / 5)
    assert stock_share([[shared]] * 3 + [["other."]]) == 0.0  # 3 answers: only 2 others
    assert evidence_sentences("For a patient, the table gives: x. Fact one. [1]\n\nNote. [2]",
                              exclude=["For a patient, the table gives: x."]) == ["fact one."]
    # A templated text of several sentences (the tool's location convention) is left out whole.
    assert evidence_sentences("Central = trunk. Lobar is asked. Fact one. [1]",
                              exclude=["Central = trunk. Lobar is asked."]) == ["fact one."]


def test_stock_is_also_reported_within_the_knowledge_set_and_within_the_vignettes() -> None:
    def result(cid: str, set_name: str, evidence: list[str]) -> evaluation.CaseResult:
        return evaluation.CaseResult(
            id=cid, set=set_name, split="test", tags=[], question="q", expected="none",
            predicted="none", expected_escalations=[], predicted_escalations=[],
            must_abstain=False, abstained=False, relevant=[], ranking=[], cited=[],
            citation_problems=[], key_facts=[], key_facts_missing=[], latency_ms=1.0,
            failures={}, evidence=evidence)

    cell = "the cell's evidence."
    vignettes = [result(f"v{i}", "management", [cell]) for i in range(4)]
    knowledge = [result(f"k{i}", "knowledge", [f"fact {i}."]) for i in range(4)]
    knowledge.append(result("k-echo", "knowledge", [cell]))  # shares only with vignettes
    summary = evaluation.summarise_narrative([*vignettes, *knowledge])
    assert summary.stock_vignettes == 1.0 and summary.stock_vignettes_n == 4
    assert summary.stock_knowledge == 0.0 and summary.stock_knowledge_n == 5
    assert summary.stock_sentences == pytest.approx(5 / 9)  # over all answers together


def test_retrieved_ranking_stops_at_the_extra_cited_passages() -> None:
    ans = answer(passages=(passage("b#1"), passage("a#1"), passage("b#1"),
                           passage("c#1", ranked=False)))
    assert [p.id for p in retrieved(ans)] == ["b#1", "a#1", "b#1"]


def test_score_case_passes_a_correct_cited_answer() -> None:
    c = EvalCase.model_validate(case(expected_tier="anticoagulation",
                                     expected_escalations=["intracardiac_cement"],
                                     relevant_source_ids=["a"], key_facts=["6 months"]))
    ans = answer(
        text="Heparin then 6 months of coumarin [1]. Extra [2].",
        citations=(cite(1, "a#1"), cite(2, "c#1")),
        passages=(passage("b#1"), passage("a#1"), passage("c#1", ranked=False)),
        recommendation=recommendation("anticoagulation", ("intracardiac_cement",)),
    )
    r = score_case(c, ans, ["a"], KNOWN)
    assert r.failures == {}
    assert (r.expected, r.predicted, r.ranking, r.cited) == (
        "anticoagulation", "anticoagulation", ["b", "a"], ["a", "c"])
    assert r.recall == {1: 0.0, 3: 1.0, 5: 1.0}
    assert r.rr == 0.5


def test_score_case_names_every_kind_of_failure() -> None:
    c = EvalCase.model_validate(case(expected_tier="surgical_embolectomy",
                                     expected_escalations=["hemodynamic_instability"],
                                     relevant_source_ids=["d"], key_facts=["embolectomy"]))
    ans = answer(
        text="Something [1] and [3].",
        citations=(cite(1, "a#1", source="b"), cite(2, "zz#9")),
        passages=(passage("a#1"), passage("b#1")),
        recommendation=recommendation("anticoagulation"),
    )
    r = score_case(c, ans, ["d"], KNOWN)
    assert set(r.failures) == {"tier", "escalations", "retrieval", "citations", "key_facts",
                               "lead"}
    assert "expected surgical_embolectomy, got anticoagulation" in r.failures["tier"]
    problems = r.failures["citations"]
    assert "belongs to a, not b" in problems
    assert "zz#9 is not a knowledge passage" in problems
    assert "not among the answer's passages" in problems
    assert "marker [3] has no citation" in problems


def test_score_case_checks_abstention_both_ways() -> None:
    oos = EvalCase.model_validate(case(expected_tier=None, must_abstain=True))
    answered = score_case(oos, answer(), [], KNOWN)
    assert answered.failures == {"abstention": "answered; should abstain"}
    kn = EvalCase.model_validate(case(expected_tier=None))
    abstained = score_case(kn, answer(in_scope=False), [], KNOWN)
    assert abstained.failures == {"abstention": "abstained wrongly"}


def test_a_product_error_is_scored_as_a_failed_case() -> None:
    r = score_case(EvalCase.model_validate(case()), None, [], KNOWN, error="boom")
    assert r.predicted == "error"
    assert r.failures["error"] == "boom"


# --- aggregates, gate and report ---------------------------------------------------------------


def result(cid: str, expected: str, predicted: str, *, split: str = "test",
           must_abstain: bool = False, abstained: bool = False,
           relevant: tuple[str, ...] = (), ranking: tuple[str, ...] = (),
           latency: float = 10.0, set_name: str = "tiny",
           key_facts: tuple[str, ...] = ()) -> CaseResult:
    c = EvalCase.model_validate(case(id=cid, split=split, must_abstain=must_abstain, set=set_name,
                                     expected_tier=None if expected == "none" else expected,
                                     relevant_source_ids=list(relevant),
                                     key_facts=list(key_facts)))
    rec = None if predicted == "none" else recommendation(predicted)
    ans = answer(in_scope=not abstained, recommendation=rec, latency_ms=latency,
                 passages=tuple(passage(f"{s}#1") for s in ranking),
                 citations=(cite(1, f"{ranking[0]}#1"),) if ranking else (),
                 text="Text of a#1. [1]" if ranking else "")
    known = {**KNOWN, **{f"{s}#1": passage(f"{s}#1") for s in ranking}}
    return score_case(c, ans, list(relevant), known)


def tiny_results() -> list[CaseResult]:
    return [
        result("m1", "surveillance", "surveillance", latency=10),
        result("m2", "anticoagulation", "needs_information", latency=20),
        result("m3", "needs_information", "needs_information", split="dev", latency=30),
        result("k1", "none", "none", relevant=("a",), ranking=("b", "a"), latency=40,
               set_name="knowledge", key_facts=("Text of",)),
        result("o1", "none", "none", must_abstain=True, abstained=True, latency=50),
        result("o2", "none", "none", must_abstain=True, abstained=False, latency=60),
    ]


def test_summarise_computes_every_metric_on_a_tiny_run() -> None:
    m = summarise(tiny_results())
    assert m.n == 6
    assert m.tier_accuracy == pytest.approx(5 / 6)
    assert m.tier_accuracy_tiered == pytest.approx(2 / 3)
    assert (m.needs_information_precision, m.needs_information_recall) == (0.5, 1.0)
    assert (m.abstention_precision, m.abstention_recall) == (1.0, 0.5)
    assert (m.recall_at_1, m.recall_at_3, m.mrr) == (0.0, 1.0, 0.5)
    assert m.citation_validity == 1.0 and m.citation_hit_rate == 0.0
    assert m.latency_p50_ms == 35.0
    assert m.confusion["anticoagulation"]["needs_information"] == 1


def tiny_run() -> EvalRun:
    results = tiny_results()
    mode = evaluation._summarise_mode("hybrid", "fp", results)
    return EvalRun(created="2099-01-02T03:04:05+00:00", versions=VERSIONS.model_dump(),
                   split="all", sets=["tiny"], counts={"tiny": {"dev": 1, "test": 5, "total": 6}},
                   modes={"hybrid": mode, "bm25": evaluation._summarise_mode("bm25", "fp",
                                                                             results)})


def test_gate_fails_on_the_test_split_and_lists_the_cases_that_broke_it() -> None:
    failures = "\n".join(gate_failures(tiny_run()))
    assert "hybrid tier_accuracy = 0.800 < 1.0 (test split)" in failures
    assert "m2: tier: expected anticoagulation, got needs_information" in failures
    assert "hybrid abstention_recall = 0.500 < 0.95" in failures
    assert "o2: abstention: answered; should abstain" in failures
    assert "abstention_precision" not in failures  # 1.0 on the test split
    assert "m3" not in failures  # dev case


def test_gate_passes_when_every_threshold_is_met() -> None:
    run = tiny_run()
    good = [r for r in run.modes["hybrid"].cases if not r.failures]
    run.modes["hybrid"] = evaluation._summarise_mode("hybrid", "fp", good)
    assert gate_failures(run) == []


def test_report_writes_markdown_json_cases_and_plots_stamped_with_versions(
    tmp_path: Path,
) -> None:
    out = tmp_path / "reports"
    written = write_report(tiny_run(), out) + write_ragas(tiny_run(), out)
    names = {p.name for p in written}
    assert {"latest.md", "latest.json", "cases.jsonl", "confusion-hybrid.png",
            "recall-at-k.png", "latency.png", "ragas-hybrid.jsonl", "ragas-bm25.jsonl"} <= names
    for p in written:
        assert p.is_file() and p.stat().st_size > 0
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "latest.md").read_text()
    for stamp in ("9.9.9", "kn-abc123", "2099.1 (r-def456)", "fake-model", "2099-01-02"):
        assert stamp in md
    assert "| m2 | tiny/test |" in md and "FAIL `tier_accuracy`" in md
    summary = json.loads((out / "latest.json").read_text())
    assert summary["versions"]["rules"] == "2099.1 (r-def456)"
    assert summary["created"] == "2099-01-02T03:04:05+00:00"
    assert summary["modes"]["hybrid"]["failed_cases"]["m2"]["tier"].startswith("expected")
    assert summary["gate"]["failures"]
    row = json.loads((out / "ragas-hybrid.jsonl").read_text().splitlines()[3])
    assert set(row) == {"user_input", "retrieved_contexts", "response", "reference"}
    assert row["retrieved_contexts"] == ["Text of b#1.", "Text of a#1."]


# --- end to end with a hash embedder -----------------------------------------------------------


E2E = [
    case(id="e-surv", question="Asymptomatic, subsegmental cement emboli after PVP. Treat?"),
    case(id="e-se", question="Dyspnoeic, cement embolus in the pulmonary trunk after kyphoplasty. "
         "Next step?", expected_tier="surgical_embolectomy"),
    case(id="e-form", question="Cement embolism after vertebroplasty: what do you advise?",
         findings={"symptomatic": True, "location": "peripheral"},
         expected_tier="anticoagulation", split="dev"),
    case(id="e-kn", question="What did Luetmer find about PCE incidence on chest CT?",
         expected_tier=None, relevant_source_ids=["luetmer-2011"]),
    case(id="e-oos", question="What is the dose of co-amoxiclav for a chest infection?",
         expected_tier=None, must_abstain=True),
]


def test_run_eval_scores_every_case_once_per_retriever(settings: Settings) -> None:
    cases = [EvalCase.model_validate({**c, "set": "e2e"}) for c in E2E]
    run = run_eval(settings, cases, MODES, embedder=HashEmbedder(), progress=False)
    assert list(run.modes) == list(MODES)
    assert run.versions["model"].startswith("hash-")
    assert run.counts["total"] == {"dev": 1, "test": 4, "total": 5}
    for mode in run.modes.values():
        by_id = {r.id: r for r in mode.cases}
        assert [by_id[i].predicted for i in ("e-surv", "e-se", "e-form")] == [
            "surveillance", "surgical_embolectomy", "anticoagulation"]
        assert by_id["e-kn"].ranking and by_id["e-kn"].recall
        assert mode.metrics.citation_validity == 1.0


def test_cli_gate_exits_1_and_prints_the_broken_cases(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("assistant.retrieval.embeddings.embedder_from_settings",
                        lambda *a, **k: HashEmbedder())
    monkeypatch.setattr(cli, "_settings", lambda args: settings)
    questions = tmp_path / "questions"
    write_set(questions, "tiny", case(id="ok"),
              case(id="wrong", question="Symptomatic central cement embolus: plan?"))
    args = argparse.Namespace(sets=None, retriever="hybrid", split="all",
                              out=str(tmp_path / "out"), ragas=True, gate=True,
                              questions=str(questions))
    assert cli.cmd_eval(args) == 1
    err = capsys.readouterr().err
    assert "GATE FAILED" in err
    assert "wrong: tier: expected surveillance, got surgical_embolectomy" in err
    assert (tmp_path / "out" / "latest.md").is_file()
    assert (tmp_path / "out" / "ragas-hybrid.jsonl").is_file()
    args.gate, args.split = True, "dev"
    assert cli.cmd_eval(args) == 2


# --- the wrong-definite-tier gate (issue 11) -----------------------------------------------------


def test_wrong_definite_tiers_counts_only_a_definite_tier_other_than_the_expected_one() -> None:
    pairs = [
        ("surveillance", "anticoagulation"),  # wrong definite
        ("needs_information", "surgical_embolectomy"),  # wrong definite: it should have asked
        ("none", "surveillance"),  # wrong definite: no card was due
        ("anticoagulation", "needs_information"),  # asked: not counted
        ("anticoagulation", "none"),  # no card: not counted
        ("surveillance", "surveillance"),
    ]
    assert wrong_definite_tiers(pairs) == 3
    assert summarise([result("w", "surveillance", "anticoagulation")]).wrong_definite_tiers == 1


def test_gate_fails_on_one_wrong_definite_tier_and_names_the_case() -> None:
    results = [
        result("w1", "needs_information", "anticoagulation"),
        result("ok", "surveillance", "surveillance"),
        result("d1", "surveillance", "anticoagulation", split="dev"),
    ]
    run = EvalRun(created="2099-01-02T03:04:05+00:00", versions=VERSIONS.model_dump(),
                  split="all", sets=["tiny"], counts={"tiny": {"dev": 1, "test": 2, "total": 3}},
                  modes={"hybrid": evaluation._summarise_mode("hybrid", "fp", results)})
    failures = "\n".join(gate_failures(run))
    assert "hybrid wrong_definite_tiers = 1 > 0 (test split)" in failures
    assert "w1: tier: expected needs_information, got anticoagulation" in failures
    assert "d1" not in failures  # dev split
