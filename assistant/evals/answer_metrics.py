"""Metrics of the narrative itself (issue 10): lead, population conflicts, attribution, stock.

Pure functions over ``Answer`` objects, kept apart from the retrieval and tier metrics of
``metrics.py``. Each is defined in evals/README.md:

- **lead**: a key fact of the expected answer is in the first two sentences of the text;
- **population conflicts**: claim sentences whose claim population contradicts the findings;
- **attribution**: every claim sentence cites its own claim, and every citation's source is
  that claim's source (structural: read from ``Answer.sentences`` and the claims);
- **stock sentences**: the share of answers that share a sentence with 3 or more other answers.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from assistant.answer.lexical import split_sentences
from assistant.evals.metrics import missing_key_facts
from assistant.types import Answer, Passage

LEAD_SENTENCES = 2
STOCK_OTHERS = 3
MARKERS_RE = re.compile(r"\s*\[\d+\]")


AFTER_MARKER_RE = re.compile(r"(?<=\])\s+(?=[A-Z(])")


def displayed_sentences(text: str) -> list[str]:
    """The sentences as shown, each with its markers ("Fact. [1] Next fact. [2]")."""
    return [
        sentence
        for chunk in AFTER_MARKER_RE.split(text.strip())
        for sentence in split_sentences(chunk)
    ]


def sentences_of(text: str) -> list[str]:
    """The displayed sentences of the narrative's first paragraph, in order (a 'sources
    disagree' note is its own paragraph)."""
    return displayed_sentences(text.split("\n\n", 1)[0])


def lead_ok(text: str, key_facts: Sequence[str]) -> bool | None:
    """A key fact in the first LEAD_SENTENCES sentences (None when the case lists none)."""
    if not key_facts:
        return None
    lead = " ".join(displayed_sentences(text)[:LEAD_SENTENCES])
    return len(missing_key_facts(lead, key_facts)) < len(key_facts)


def population_conflicts(answer: Answer, known: Mapping[str, Passage]) -> list[str]:
    """Claim sentences whose claim's population contradicts the answer's findings."""
    found: list[str] = []
    for sentence in answer.sentences:
        if sentence.role != "claim":
            continue
        for cid in sentence.cites:
            claim = known.get(cid)
            if claim is None or claim.population is None:
                continue
            clash = claim.population.conflicts(answer.findings)
            if clash:
                found.append(f"{cid} is about {', '.join(clash)} other than the patient's")
    return found


def attribution_problems(answer: Answer, known: Mapping[str, Passage]) -> list[str]:
    """Every cited id is a known claim; each citation's source is its claim's source; a claim
    sentence contains its claim's text; every citation's marker is shown."""
    by_claim = {c.passage_id: c for c in answer.citations}
    problems: list[str] = []
    for sentence in answer.sentences:
        for cid in sentence.cites:
            claim = known.get(cid)
            citation = by_claim.get(cid)
            if claim is None:
                problems.append(f"{cid} is not a claim of the knowledge base")
                continue
            if citation is None:
                problems.append(f"{cid} is cited in a sentence but has no citation")
                continue
            if citation.source_id != claim.source_id:
                problems.append(
                    f"[{citation.n}] {cid} is cited as {citation.source_id}, "
                    f"but it comes from {claim.source_id}"
                )
            # A case claim is introduced ("In a published case (...), the ..."): compare
            # without the case of its first letter.
            if sentence.role == "claim" and claim.text[1:] not in sentence.text:
                problems.append(f"[{citation.n}] the sentence does not state claim {cid}")
            if f"[{citation.n}]" not in answer.text:
                problems.append(f"[{citation.n}] {cid}: marker not in the text")
    return problems


def _normal(sentence: str) -> str:
    return " ".join(MARKERS_RE.sub("", sentence).split()).casefold()


def evidence_sentences(text: str, exclude: Iterable[str] = ()) -> list[str]:
    """The narrative's sentences that carry evidence, normalised (markers stripped): the first
    paragraph without the excluded ones (the templated tier sentence)."""
    skip = {_normal(part) for s in exclude for part in displayed_sentences(s)}
    return [n for n in (_normal(s) for s in sentences_of(text)) if n and n not in skip]


def stock_answers(answers: Sequence[Sequence[str]]) -> list[bool]:
    """For each answer (its evidence sentences): does it share a sentence with at least
    STOCK_OTHERS other answers?"""
    counts: Counter[str] = Counter(s for sentences in answers for s in set(sentences))
    return [any(counts[s] > STOCK_OTHERS for s in set(sentences)) for sentences in answers]


def stock_share(answers: Sequence[Sequence[str]]) -> float | None:
    with_text = [a for a in answers if a]
    if not with_text:
        return None
    flags = stock_answers(with_text)
    return sum(flags) / len(flags)
