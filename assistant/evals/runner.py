"""Evaluation: question sets in, per-retriever metrics, a report and a CI gate out.

Cases live in ``evals/questions/*.jsonl`` (one JSON object a line, validated by ``EvalCase``).
``run_eval`` sends every case through the public ``Assistant.ask`` once per retriever mode and
scores each ``Answer`` (``score_case``); ``summarise`` aggregates; ``gate_failures`` judges the test
split; ``evalreport`` writes Markdown, JSON, plots and a RAGAS export. Every metric is defined in
``evals/README.md``: tier label ``none`` = no recommendation (also what an abstention yields); the
retrieval ranking is the retrieved prefix of ``Answer.passages`` by first occurrence of each source.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from assistant.errors import AssistantError
from assistant.evals.answer_metrics import (
    attribution_problems,
    displayed_sentences,
    evidence_sentences,
    lead_ok,
    population_conflicts,
    stock_answers,
    stock_share,
)
from assistant.evals.cases import (
    NONE,
    EvalCase,
    check_relevance,
    relevant_sources,
)
from assistant.evals.metrics import (
    citation_problems,
    confusion_matrix,
    is_wrong_definite,
    missing_key_facts,
    ndcg_at_k,
    percentile,
    precision_recall,
    recall_at_k,
    reciprocal_rank,
    retrieved,
    unique,
    wrong_definite_tiers,
)
from assistant.settings import Settings
from assistant.types import Answer, Passage

MODES: tuple[str, ...] = ("bm25", "dense", "hybrid")
GATE_MODE = "hybrid"
ERROR = "error"
KS = (1, 3, 5)
GATE = {
    "tier_accuracy": 1.0,
    "abstention_precision": 0.95,
    "abstention_recall": 0.95,
    "recall_at_5": 0.90,
    "citation_validity": 1.0,
}
# The per-case failure kind that explains each gate criterion, and which of those cases broke it.
GATE_CAUSES: dict[str, tuple[str, Callable[[CaseResult], bool]]] = {
    "tier_accuracy": ("tier", lambda r: True),
    "abstention_precision": ("abstention", lambda r: r.abstained and not r.must_abstain),
    "abstention_recall": ("abstention", lambda r: r.must_abstain and not r.abstained),
    "recall_at_5": ("retrieval", lambda r: True),
    "citation_validity": ("citations", lambda r: True),
}
# The narrative's gate (issue 10), judged like GATE on the test split: (comparison, threshold,
# failure kind that explains it).
ANSWER_GATE: dict[str, tuple[str, float, str]] = {
    "lead_knowledge": (">=", 0.90, "lead"),
    "population_conflicts": ("<=", 0, "population"),
    "attribution": (">=", 1.0, "attribution"),
}
KNOWLEDGE_SET = "knowledge"
VIGNETTE_SET = "management"


# --- results -------------------------------------------------------------------------------------


class CaseResult(BaseModel):
    id: str
    set: str
    split: str
    tags: list[str]
    question: str
    expected: str
    predicted: str
    rule_id: str | None = None
    expected_escalations: list[str]
    predicted_escalations: list[str]
    must_abstain: bool
    abstained: bool
    relevant: list[str]
    ranking: list[str] = Field(description="Retrieved source ids, first occurrence, in order.")
    cited: list[str]
    recall: dict[int, float] = Field(default_factory=dict)
    rr: float | None = None
    ndcg5: float | None = None
    citation_problems: list[str]
    key_facts: list[str]
    key_facts_missing: list[str]
    latency_ms: float
    failures: dict[str, str] = Field(description="Failure kind -> why.")
    response: str = ""
    reference: str = ""
    contexts: list[str] = Field(default_factory=list, exclude=True)
    # The narrative (answer_metrics): see _score_narrative.
    lead: bool | None = None
    population_conflicts: list[str] = Field(default_factory=list)
    attribution_problems: list[str] = Field(default_factory=list)
    evidence: list[str] = Field(default_factory=list, description="Evidence sentences, normalised.")
    stock: bool | None = None

    @property
    def escalation_ok(self) -> bool:
        return sorted(self.expected_escalations) == sorted(self.predicted_escalations)


def score_case(
    case: EvalCase,
    answer: Answer | None,
    relevant: Sequence[str],
    known: Mapping[str, Passage],
    error: str = "",
) -> CaseResult:
    rec = answer.recommendation if answer else None
    predicted = ERROR if answer is None else (rec.tier if rec else NONE)
    escalations: list[str] = [e.id for e in rec.escalations] if rec else []
    passages = retrieved(answer) if answer else []
    ranking = unique(p.source_id for p in passages)
    cited = unique(c.source_id for c in answer.citations) if answer else []
    problems = citation_problems(answer, known) if answer else []
    missing = missing_key_facts(answer.text if answer else "", case.key_facts)
    abstained = answer is not None and not answer.in_scope
    result = CaseResult(
        id=case.id,
        set=case.set,
        split=case.split,
        tags=list(case.tags),
        question=case.question,
        expected=case.expected_label,
        predicted=predicted,
        rule_id=rec.rule_id if rec else None,
        expected_escalations=list(case.expected_escalations),
        predicted_escalations=escalations,
        must_abstain=case.must_abstain,
        abstained=abstained,
        relevant=list(relevant),
        ranking=ranking,
        cited=cited,
        citation_problems=problems,
        key_facts=list(case.key_facts),
        key_facts_missing=missing,
        latency_ms=answer.latency_ms if answer else 0.0,
        failures={},
        response=answer.text if answer else "",
        reference="; ".join(case.key_facts),
        contexts=[p.text for p in passages],
    )
    if relevant:
        result.recall = {k: recall_at_k(ranking, relevant, k) for k in KS}
        result.rr = reciprocal_rank(ranking, relevant)
        result.ndcg5 = ndcg_at_k(ranking, relevant, 5)
    f = result.failures
    if error:
        f["error"] = error
    if predicted != case.expected_label:
        f["tier"] = f"expected {case.expected_label}, got {predicted}"
    if case.expected_tier and not result.escalation_ok:
        f["escalations"] = f"expected {sorted(case.expected_escalations)}, got {escalations}"
    if abstained != case.must_abstain:
        f["abstention"] = "answered; should abstain" if case.must_abstain else "abstained wrongly"
    if relevant and result.recall[5] < 1.0:
        lost = [s for s in relevant if s not in ranking[:5]]
        f["retrieval"] = (
            f"recall@5 {result.recall[5]:.2f}; not in top 5: {', '.join(lost)}; "
            f"retrieved: {', '.join(ranking[:5]) or 'nothing'}"
        )
    if problems:
        f["citations"] = "; ".join(problems)
    if missing:
        f["key_facts"] = "missing " + ", ".join(repr(m) for m in missing)
    if answer is not None and answer.in_scope:
        _score_narrative(result, case, answer, known)
    return result


def _score_narrative(
    result: CaseResult, case: EvalCase, answer: Answer, known: Mapping[str, Passage]
) -> None:
    """Lead, population conflicts, attribution and the evidence sentences (for stock)."""
    result.lead = lead_ok(answer.text, case.key_facts)
    result.population_conflicts = population_conflicts(answer, known)
    result.attribution_problems = attribution_problems(answer, known)
    # The templated sentences (this patient's tier, the tool's location convention) are meant
    # to recur; only the evidence counts for stock.
    tier = [s.text for s in answer.sentences if s.role in ("tier", "convention")]
    result.evidence = evidence_sentences(answer.text, exclude=tier)
    f = result.failures
    if result.lead is False:
        f["lead"] = "no key fact in the first two sentences: " + " ".join(
            displayed_sentences(answer.text)[:2]
        )[:300]
    if result.population_conflicts:
        f["population"] = "; ".join(result.population_conflicts)
    if result.attribution_problems:
        f["attribution"] = "; ".join(result.attribution_problems)


def mark_stock(results: Sequence[CaseResult]) -> None:
    """Flag the answers that share a sentence with 3 or more other answers of the run."""
    answered = [r for r in results if r.evidence]
    for r, flag in zip(answered, stock_answers([r.evidence for r in answered]), strict=True):
        r.stock = flag


class Metrics(BaseModel):
    n: int
    tier_accuracy: float | None
    tier_accuracy_tiered: float | None
    tiered_n: int
    needs_information_precision: float | None
    needs_information_recall: float | None
    escalation_accuracy: float | None
    escalation_n: int
    abstention_precision: float | None
    abstention_recall: float | None
    abstain_n: int
    recall_at_1: float | None
    recall_at_3: float | None
    recall_at_5: float | None
    mrr: float | None
    ndcg_at_5: float | None
    retrieval_n: int
    citation_validity: float | None
    citation_n: int
    citation_hit_rate: float | None
    key_fact_coverage: float | None
    key_fact_cases_complete: float | None
    key_fact_n: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    confusion: dict[str, dict[str, int]]
    narrative: NarrativeMetrics | None = None
    wrong_definite_tiers: int = Field(
        default=0, description="Cases given a definite tier other than the expected one."
    )


class NarrativeMetrics(BaseModel):
    """The narrative's metrics (answer_metrics), over in-scope answers."""

    lead_knowledge: float | None = Field(description="Knowledge set: key fact in 2 sentences.")
    lead_knowledge_n: int
    lead_all: float | None = Field(description="Every case with key facts.")
    lead_all_n: int
    population_conflicts: int = Field(description="Claim sentences contradicting findings.")
    population_conflict_cases: int
    attribution: float | None = Field(description="Share of answers with exact attribution.")
    attribution_n: int
    stock_sentences: float | None = Field(
        description="Share of answers sharing a sentence with 3+ other answers."
    )
    stock_knowledge: float | None = Field(
        default=None,
        description="The same within the knowledge set's answers: no boilerplate openers.",
    )
    stock_knowledge_n: int = 0
    stock_vignettes: float | None = Field(
        default=None,
        description="The same within the vignettes (management set); a table cell's evidence "
        "recurs there by design.",
    )
    stock_vignettes_n: int = 0
    sentences_mean: float | None


def summarise_narrative(results: Sequence[CaseResult]) -> NarrativeMetrics:
    knowledge = [r for r in results if r.set == KNOWLEDGE_SET and r.lead is not None]
    with_facts = [r for r in results if r.lead is not None]
    cited = [r for r in results if r.cited or r.attribution_problems]
    answered = [r for r in results if r.evidence]
    return NarrativeMetrics(
        lead_knowledge=_mean([float(bool(r.lead)) for r in knowledge]),
        lead_knowledge_n=len(knowledge),
        lead_all=_mean([float(bool(r.lead)) for r in with_facts]),
        lead_all_n=len(with_facts),
        population_conflicts=sum(len(r.population_conflicts) for r in results),
        population_conflict_cases=sum(bool(r.population_conflicts) for r in results),
        attribution=_mean([float(not r.attribution_problems) for r in cited]),
        attribution_n=len(cited),
        stock_sentences=stock_share([r.evidence for r in answered]),
        stock_knowledge=stock_share([r.evidence for r in answered if r.set == KNOWLEDGE_SET]),
        stock_knowledge_n=sum(r.set == KNOWLEDGE_SET for r in answered),
        stock_vignettes=stock_share([r.evidence for r in answered if r.set == VIGNETTE_SET]),
        stock_vignettes_n=sum(r.set == VIGNETTE_SET for r in answered),
        sentences_mean=_mean([float(len(r.evidence)) for r in answered]),
    )


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(results: Sequence[CaseResult]) -> Metrics:
    tiered = [r for r in results if r.expected != NONE]
    ni_p, ni_r = precision_recall(
        (r.expected == "needs_information", r.predicted == "needs_information") for r in results
    )
    ab_p, ab_r = precision_recall((r.must_abstain, r.abstained) for r in results)
    ret = [r for r in results if r.relevant]
    cites = [r for r in results if r.cited or r.citation_problems]
    facts = [r for r in results if r.key_facts]
    total_facts = sum(len(r.key_facts) for r in facts)
    latencies = [r.latency_ms for r in results if r.predicted != ERROR]
    return Metrics(
        n=len(results),
        tier_accuracy=_mean([float(r.expected == r.predicted) for r in results]),
        tier_accuracy_tiered=_mean([float(r.expected == r.predicted) for r in tiered]),
        tiered_n=len(tiered),
        needs_information_precision=ni_p,
        needs_information_recall=ni_r,
        escalation_accuracy=_mean([float(r.escalation_ok) for r in tiered]),
        escalation_n=len(tiered),
        abstention_precision=ab_p,
        abstention_recall=ab_r,
        abstain_n=sum(r.must_abstain for r in results),
        recall_at_1=_mean([r.recall[1] for r in ret]),
        recall_at_3=_mean([r.recall[3] for r in ret]),
        recall_at_5=_mean([r.recall[5] for r in ret]),
        mrr=_mean([r.rr or 0.0 for r in ret]),
        ndcg_at_5=_mean([r.ndcg5 or 0.0 for r in ret]),
        retrieval_n=len(ret),
        citation_validity=_mean([float(not r.citation_problems) for r in cites]),
        citation_n=len(cites),
        citation_hit_rate=_mean([float(bool(set(r.cited) & set(r.relevant))) for r in ret]),
        key_fact_coverage=(
            sum(len(r.key_facts) - len(r.key_facts_missing) for r in facts) / total_facts
            if total_facts
            else None
        ),
        key_fact_cases_complete=_mean([float(not r.key_facts_missing) for r in facts]),
        key_fact_n=len(facts),
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        confusion=confusion_matrix((r.expected, r.predicted) for r in results),
        narrative=summarise_narrative(results),
        wrong_definite_tiers=wrong_definite_tiers((r.expected, r.predicted) for r in results),
    )


class ModeResult(BaseModel):
    mode: str
    settings_fingerprint: str
    metrics: Metrics
    by_split: dict[str, Metrics]
    cases: list[CaseResult]


class EvalRun(BaseModel):
    created: str
    versions: dict[str, str]
    split: str
    sets: list[str]
    counts: dict[str, dict[str, int]] = Field(description="Cases per set and split.")
    modes: dict[str, ModeResult]


def _summarise_mode(mode: str, fingerprint: str, results: list[CaseResult]) -> ModeResult:
    mark_stock(results)
    splits = sorted({r.split for r in results})
    return ModeResult(
        mode=mode,
        settings_fingerprint=fingerprint,
        metrics=summarise(results),
        by_split={s: summarise([r for r in results if r.split == s]) for s in splits},
        cases=results,
    )


def case_counts(cases: Sequence[EvalCase]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for c in cases:
        row = counts.setdefault(c.set, {"dev": 0, "test": 0, "total": 0})
        row[c.split] += 1
        row["total"] += 1
    counts["total"] = {k: sum(r[k] for r in counts.values()) for k in ("dev", "test", "total")}
    return counts


# --- running -------------------------------------------------------------------------------------


def run_eval(
    settings: Settings,
    cases: Sequence[EvalCase],
    retriever_modes: Sequence[str] = MODES,
    *,
    embedder: Any = None,
    progress: bool = True,
    split: str = "all",
) -> EvalRun:
    """Ask every case once per retriever mode (one Assistant per mode, one shared model)."""
    from tqdm import tqdm

    from assistant.assistant import Assistant
    from assistant.retrieval.embeddings import embedder_from_settings

    embedder = embedder or embedder_from_settings(
        settings.embedding_model_dir, settings.embedding_sha256, settings.embedding_model_name
    )
    assistants: dict[str, Any] = {}
    results: dict[str, list[CaseResult]] = {}
    bar = tqdm(
        total=len(cases) * len(retriever_modes),
        unit="ask",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.1 if sys.stderr.isatty() else 15.0,
    )  # keep CI logs short
    with bar:
        for mode in retriever_modes:
            bar.set_description(f"loading {mode}")
            assistant = Assistant.from_settings(
                settings, embedder=embedder, retriever=mode, audit=False
            )
            assistant.warm_up()  # model load and first query stay out of the latency figures
            assistants[mode], results[mode] = assistant, []
        corpus = assistants[retriever_modes[0]].components.corpus
        check_relevance(cases, corpus.sources)
        known = {p.id: p for p in corpus.passages}
        bar.set_description("eval " + "+".join(retriever_modes))
        # Modes interleave per case, so load drift during the run hits every mode alike.
        for case in cases:
            relevant = relevant_sources(case, corpus.sources)
            for mode, assistant in assistants.items():
                try:
                    answer = assistant.ask(
                        case.question,
                        findings=case.findings,
                        history=[t.model_dump() for t in case.history] or None,
                        surface="eval",
                    )
                    results[mode].append(score_case(case, answer, relevant, known))
                except AssistantError as exc:  # a valid case the product rejects is a finding
                    results[mode].append(score_case(case, None, relevant, known, error=str(exc)))
                bar.update()
    versions = assistants[retriever_modes[0]].versions.model_dump()
    modes = {
        mode: _summarise_mode(
            mode, settings.model_copy(update={"retriever": mode}).fingerprint(), results[mode]
        )
        for mode in retriever_modes
    }
    return EvalRun(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        versions=versions,
        split=split,
        sets=sorted({c.set for c in cases}),
        counts=case_counts(cases),
        modes=modes,
    )


def gate_mode(run: EvalRun) -> str:
    return GATE_MODE if GATE_MODE in run.modes else next(iter(run.modes))


def gate_failures(run: EvalRun) -> list[str]:
    """Broken CI thresholds on the test split, each with the cases that broke it."""
    mode = gate_mode(run)
    metrics = run.modes[mode].by_split.get("test")
    if metrics is None:
        return [f"no test-split cases were run ({mode}); the gate judges the test split"]
    cases = [r for r in run.modes[mode].cases if r.split == "test"]
    lines: list[str] = []
    for name, threshold in GATE.items():
        value = getattr(metrics, name)
        if value is not None and value >= threshold:
            continue
        shown = "n/a" if value is None else f"{value:.3f}"
        lines.append(f"{mode} {name} = {shown} < {threshold} (test split)")
        kind, broke = GATE_CAUSES[name]
        lines += [
            f"    {r.id}: {kind}: {r.failures[kind]}"
            for r in cases
            if kind in r.failures and broke(r)
        ]
    return lines + max_gate_failures(mode, metrics, cases) + narrative_gate_failures(run)


def narrative_gate_failures(run: EvalRun) -> list[str]:
    """Broken narrative thresholds (ANSWER_GATE) on the test split, with the cases."""
    mode = gate_mode(run)
    metrics = run.modes[mode].by_split.get("test")
    if metrics is None or metrics.narrative is None:
        return []
    cases = [r for r in run.modes[mode].cases if r.split == "test"]
    lines: list[str] = []
    for name, (op, threshold, kind) in ANSWER_GATE.items():
        value = getattr(metrics.narrative, name)
        ok = value is not None and (value >= threshold if op == ">=" else value <= threshold)
        if ok:
            continue
        shown = "n/a" if value is None else f"{value:.3f}"
        lines.append(f"{mode} {name} = {shown}, needs {op} {threshold} (test split)")
        lines += [f"    {r.id}: {kind}: {r.failures[kind]}" for r in cases if kind in r.failures
                  and (kind != "lead" or r.set == KNOWLEDGE_SET)]
    return lines


# Counts that must not EXCEED a maximum on the test split (GATE above holds minimums).
GATE_MAX = {"wrong_definite_tiers": 0}


def max_gate_failures(mode: str, metrics: Metrics, cases: Sequence[CaseResult]) -> list[str]:
    """The wrong-definite-tier gate: any definite tier other than the expected one fails CI."""
    lines: list[str] = []
    for name, limit in GATE_MAX.items():
        value = getattr(metrics, name)
        if value <= limit:
            continue
        lines.append(f"{mode} {name} = {value} > {limit} (test split)")
        lines += [
            f"    {r.id}: tier: {r.failures.get('tier', '')}"
            for r in cases
            if is_wrong_definite(r.expected, r.predicted)
        ]
    return lines
