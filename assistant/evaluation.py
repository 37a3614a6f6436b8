"""Evaluation: question sets in, per-retriever metrics, a report and a CI gate out.

Cases live in ``evals/questions/*.jsonl`` (one JSON object a line, validated by ``EvalCase``).
``run_eval`` sends every case through the public ``Assistant.ask`` once per retriever mode and
scores each ``Answer`` (``score_case``); ``summarise`` aggregates; ``gate_failures`` judges the test
split; ``evalreport`` writes Markdown, JSON, plots and a RAGAS export. Every metric is defined in
``evals/README.md``: tier label ``none`` = no recommendation (also what an abstention yields); the
retrieval ranking is the retrieved prefix of ``Answer.passages`` by first occurrence of each source.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from assistant.errors import AssistantError
from assistant.settings import REPO_ROOT, Settings
from assistant.types import TIERS, Answer, EscalationId, Location, Passage, Source, Tier

QUESTIONS_DIR = REPO_ROOT / "evals" / "questions"
MODES: tuple[str, ...] = ("bm25", "dense", "hybrid")
GATE_MODE = "hybrid"
NONE = "none"
ERROR = "error"
LABELS: tuple[str, ...] = (*TIERS, NONE)
KS = (1, 3, 5)
GATE = {"tier_accuracy": 1.0, "abstention_precision": 0.95, "abstention_recall": 0.95,
        "recall_at_5": 0.90, "citation_validity": 1.0}
# The per-case failure kind that explains each gate criterion, and which of those cases broke it.
GATE_CAUSES: dict[str, tuple[str, Callable[[CaseResult], bool]]] = {
    "tier_accuracy": ("tier", lambda r: True),
    "abstention_precision": ("abstention", lambda r: r.abstained and not r.must_abstain),
    "abstention_recall": ("abstention", lambda r: r.must_abstain and not r.abstained),
    "recall_at_5": ("retrieval", lambda r: True),
    "citation_validity": ("citations", lambda r: True),
}
MARKER_RE = re.compile(r"\[(\d+)\]")


class QuestionSetError(AssistantError):
    """A question set file is malformed; ``problems`` name the file, line and field."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(
            f"{len(problems)} problem(s) in the question sets:\n  - " + "\n  - ".join(problems)
        )


# --- cases ---------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Turn(_Strict):
    role: Literal["user", "assistant"]
    content: str = Field(min_length=1)


class CaseFindings(_Strict):
    """Explicit findings, as a form or the HTTP API would send them (they win over the text)."""

    symptomatic: bool | None = None
    location: Location | None = None
    hemodynamic_instability: bool | None = None
    intracardiac_cement: bool | None = None
    procedure: str | None = None


class EvalCase(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Unique across all sets.")
    question: str = Field(min_length=1)
    findings: CaseFindings | None = None
    history: tuple[Turn, ...] = Field(default=(), description="Earlier turns, oldest first.")
    expected_tier: Tier | None = Field(description="null: no recommendation expected.")
    expected_escalations: tuple[EscalationId, ...] = ()
    relevant_source_ids: tuple[str, ...] = ()
    relevant_dois: tuple[str, ...] = ()
    must_abstain: bool = False
    key_facts: tuple[str, ...] = Field(default=(), description="Phrases a correct text contains.")
    tags: tuple[str, ...] = ()
    split: Literal["dev", "test"]
    set: str = Field(default="", description="Question set (file stem); set by the loader.")

    @model_validator(mode="after")
    def _consistent(self) -> EvalCase:
        if self.must_abstain and (self.expected_tier or self.expected_escalations):
            raise ValueError("a case that must abstain cannot expect a tier or escalations")
        if self.expected_escalations and self.expected_tier is None:
            raise ValueError("expected_escalations need an expected_tier")
        if any(not f.strip() for f in self.key_facts):
            raise ValueError("key_facts must not be blank")
        return self

    @property
    def expected_label(self) -> str:
        return self.expected_tier or NONE


def load_cases(
    directory: Path = QUESTIONS_DIR, sets: Sequence[str] | None = None, split: str = "all"
) -> list[EvalCase]:
    """Every case of the named sets (default: all), validated; errors name file and line."""
    available = {p.stem: p for p in sorted(directory.glob("*.jsonl"))}
    unknown = sorted(set(sets or ()) - set(available))
    if unknown or not available:
        raise QuestionSetError(
            [f"no question set {name!r} in {directory} (available: {', '.join(available)})"
             for name in unknown or ["*"]]
        )
    problems: list[str] = []
    cases: list[EvalCase] = []
    seen: dict[str, str] = {}
    for name, path in available.items():
        if sets and name not in sets:
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{where}: not valid JSON ({exc.msg})")
                continue
            if not isinstance(raw, dict):
                problems.append(f"{where}: a case must be a JSON object")
                continue
            try:
                case = EvalCase.model_validate({**raw, "set": name})
            except ValidationError as exc:
                problems += [f"{where}: {'.'.join(map(str, e['loc'])) or 'case'}: {e['msg']}"
                             for e in exc.errors()]
                continue
            if case.id in seen:
                problems.append(f"{where}: duplicate id {case.id!r} (first in {seen[case.id]})")
            seen.setdefault(case.id, where)
            cases.append(case)
    if problems:
        raise QuestionSetError(problems)
    return [c for c in cases if split == "all" or c.split == split]


def relevant_sources(case: EvalCase, sources: Mapping[str, Source]) -> list[str]:
    by_doi = {s.doi.lower(): s.id for s in sources.values() if s.doi}
    ids = [*case.relevant_source_ids, *(by_doi.get(d.lower(), d) for d in case.relevant_dois)]
    return list(dict.fromkeys(ids))


def check_relevance(cases: Iterable[EvalCase], sources: Mapping[str, Source]) -> None:
    """Relevant ids and DOIs must name real sources: a typo would silently lower recall."""
    by_doi = {s.doi.lower() for s in sources.values() if s.doi}
    problems = [f"case {c.id}: unknown source id {sid!r}"
                for c in cases for sid in c.relevant_source_ids if sid not in sources]
    problems += [f"case {c.id}: no source has DOI {doi!r}"
                 for c in cases for doi in c.relevant_dois if doi.lower() not in by_doi]
    if problems:
        raise QuestionSetError(problems)


# --- metric functions (pure) ---------------------------------------------------------------------


def unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def recall_at_k(ranking: Sequence[str], relevant: Iterable[str], k: int) -> float:
    rel = set(relevant)
    return len(rel & set(ranking[:k])) / len(rel) if rel else 0.0


def reciprocal_rank(ranking: Sequence[str], relevant: Iterable[str]) -> float:
    rel = set(relevant)
    return next((1.0 / i for i, sid in enumerate(ranking, start=1) if sid in rel), 0.0)


def ndcg_at_k(ranking: Sequence[str], relevant: Iterable[str], k: int) -> float:
    rel = set(relevant)
    dcg = sum(1.0 / math.log2(i + 1) for i, sid in enumerate(ranking[:k], start=1) if sid in rel)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(rel), k) + 1))
    return dcg / ideal if ideal else 0.0


def precision_recall(pairs: Iterable[tuple[bool, bool]]) -> tuple[float | None, float | None]:
    """(expected, predicted) pairs -> (precision, recall); None where nothing to divide by."""
    counts = Counter(pairs)
    tp, fp, fn = counts[(True, True)], counts[(False, True)], counts[(True, False)]
    return (tp / (tp + fp) if tp + fp else None, tp / (tp + fn) if tp + fn else None)


def confusion_matrix(
    pairs: Iterable[tuple[str, str]], labels: Sequence[str] = LABELS
) -> dict[str, dict[str, int]]:
    """(expected, predicted) pairs -> {expected: {predicted: count}}; unknown labels are added."""
    pairs = list(pairs)
    names = unique([*labels, *(x for pair in pairs for x in pair)])
    matrix = {e: dict.fromkeys(names, 0) for e in names}
    for expected, predicted in pairs:
        matrix[expected][predicted] += 1
    return matrix


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _normalise(text: str) -> str:
    text = re.sub(r"[‐-―−]", "-", text.replace("\u00a0", " "))
    return re.sub(r"\s+", " ", text).casefold()


def missing_key_facts(text: str, facts: Iterable[str]) -> list[str]:
    haystack = _normalise(text)
    return [f for f in facts if _normalise(f) not in haystack]


def retrieved(answer: Answer) -> list[Passage]:
    """The retrieval ranking: the leading passages that carry a retriever rank."""
    ranked: list[Passage] = []
    for p in answer.passages:
        if not p.ranks:
            break
        ranked.append(p)
    return ranked


def citation_problems(answer: Answer, known: Mapping[str, Passage]) -> list[str]:
    shown = {p.id for p in answer.passages}
    problems: list[str] = []
    for c in answer.citations:
        passage = known.get(c.passage_id)
        if passage is None:
            problems.append(f"[{c.n}] {c.passage_id} is not a knowledge passage")
        elif passage.source_id != c.source_id:
            problems.append(f"[{c.n}] {c.passage_id} belongs to {passage.source_id}, "
                            f"not {c.source_id}")
        if c.passage_id not in shown:
            problems.append(f"[{c.n}] {c.passage_id} is not among the answer's passages")
    numbers = {c.n for c in answer.citations}
    problems += [f"marker [{n}] has no citation"
                 for n in sorted({int(m) for m in MARKER_RE.findall(answer.text)} - numbers)]
    if not answer.in_scope and answer.citations:
        problems.append("an abstention cites sources")
    return problems


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

    @property
    def escalation_ok(self) -> bool:
        return sorted(self.expected_escalations) == sorted(self.predicted_escalations)


def score_case(
    case: EvalCase, answer: Answer | None, relevant: Sequence[str],
    known: Mapping[str, Passage], error: str = "",
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
        id=case.id, set=case.set, split=case.split, tags=list(case.tags), question=case.question,
        expected=case.expected_label, predicted=predicted, rule_id=rec.rule_id if rec else None,
        expected_escalations=list(case.expected_escalations), predicted_escalations=escalations,
        must_abstain=case.must_abstain, abstained=abstained, relevant=list(relevant),
        ranking=ranking, cited=cited, citation_problems=problems, key_facts=list(case.key_facts),
        key_facts_missing=missing, latency_ms=answer.latency_ms if answer else 0.0, failures={},
        response=answer.text if answer else "", reference="; ".join(case.key_facts),
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
        f["retrieval"] = f"recall@5 {result.recall[5]:.2f}; not in top 5: {', '.join(lost)}; " \
                         f"retrieved: {', '.join(ranking[:5]) or 'nothing'}"
    if problems:
        f["citations"] = "; ".join(problems)
    if missing:
        f["key_facts"] = "missing " + ", ".join(repr(m) for m in missing)
    return result


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
            if total_facts else None
        ),
        key_fact_cases_complete=_mean([float(not r.key_facts_missing) for r in facts]),
        key_fact_n=len(facts),
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        confusion=confusion_matrix((r.expected, r.predicted) for r in results),
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
    splits = sorted({r.split for r in results})
    return ModeResult(
        mode=mode, settings_fingerprint=fingerprint, metrics=summarise(results),
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
    from assistant.embeddings import embedder_from_settings

    embedder = embedder or embedder_from_settings(
        settings.embedding_model_dir, settings.embedding_sha256, settings.embedding_model_name
    )
    assistants: dict[str, Any] = {}
    results: dict[str, list[CaseResult]] = {}
    bar = tqdm(total=len(cases) * len(retriever_modes), unit="ask", disable=not progress,
               file=sys.stderr, dynamic_ncols=True,
               mininterval=0.1 if sys.stderr.isatty() else 15.0)  # keep CI logs short
    with bar:
        for mode in retriever_modes:
            bar.set_description(f"loading {mode}")
            assistant = Assistant.from_settings(
                settings, embedder=embedder, retriever=mode, audit=False
            )
            assistant.warm_up()  # model load and first query stay out of the latency figures
            assistants[mode], results[mode] = assistant, []
        corpus = assistants[retriever_modes[0]].c.corpus
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
                        findings=case.findings.model_dump(exclude_none=True)
                        if case.findings else None,
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
        lines += [f"    {r.id}: {kind}: {r.failures[kind]}"
                  for r in cases if kind in r.failures and broke(r)]
    return lines


# --- CLI -----------------------------------------------------------------------------------------


def run_cli(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.evalreport import format_summary, write_ragas, write_report

    if args.gate and args.split == "dev":
        print("error: --gate judges the test split; use --split test or all", file=sys.stderr)
        return 2
    modes = MODES if args.retriever == "all" else (args.retriever,)
    questions = Path(getattr(args, "questions", None) or QUESTIONS_DIR)
    cases = load_cases(questions, args.sets, args.split)
    if not cases:
        print(f"error: no cases in split {args.split!r}", file=sys.stderr)
        return 2
    run = run_eval(settings, cases, modes, progress=True, split=args.split)
    out = Path(args.out)
    written = write_report(run, out)
    if args.ragas:
        written += write_ragas(run, out)
    print(format_summary(run))
    print("\nWrote " + ", ".join(str(p) for p in written))
    if not args.gate:
        return 0
    failures = gate_failures(run)
    if failures:
        print(f"\nGATE FAILED ({gate_mode(run)}, test split):", file=sys.stderr)
        print("\n".join(failures), file=sys.stderr)
        return 1
    print(f"\nGate passed ({gate_mode(run)}, test split).")
    return 0
