"""Evaluation metric functions: pure, each defined in evals/README.md."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from assistant.evals.cases import LABELS
from assistant.types import Answer, Passage

MARKER_RE = re.compile(r"\[(\d+)\]")


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
            problems.append(
                f"[{c.n}] {c.passage_id} belongs to {passage.source_id}, not {c.source_id}"
            )
        if c.passage_id not in shown:
            problems.append(f"[{c.n}] {c.passage_id} is not among the answer's passages")
    numbers = {c.n for c in answer.citations}
    problems += [
        f"marker [{n}] has no citation"
        for n in sorted({int(m) for m in MARKER_RE.findall(answer.text)} - numbers)
    ]
    if not answer.in_scope and answer.citations:
        problems.append("an abstention cites sources")
    return problems


# --- the worst error, counted on its own (issue 11) ----------------------------------------------

DEFINITE_TIERS = ("surveillance", "anticoagulation", "surgical_embolectomy")


def is_wrong_definite(expected: str, predicted: str) -> bool:
    """A definite tier that is not the expected label: the worst error this product can make
    (asking - needs_information - or giving no card is never counted here)."""
    return predicted in DEFINITE_TIERS and predicted != expected


def wrong_definite_tiers(pairs: Iterable[tuple[str, str]]) -> int:
    """(expected, predicted) tier labels -> how many cases got a wrong definite tier."""
    return sum(is_wrong_definite(expected, predicted) for expected, predicted in pairs)
