"""Compose the narrative: the sentences that answer the question, each with its [n] marker.

Extractive by default, so every sentence shown is a sentence of a cited knowledge passage.
Citations are numbered in order of first use; a marker always resolves to a retrieved passage.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from assistant.answer.disagreements import PLACEHOLDER_RE, Topic
from assistant.types import Citation, Passage

WORD_RE = re.compile(r"[a-z0-9]+")
# Split after . ! ? followed by a capital or digit; "e.g." "vs." "et al." do not end sentences.
SENTENCE_RE = re.compile(
    r"(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bvs\.)(?<!\bal\.)(?<!\bDr\.)(?<=[.!?])\s+(?=[A-Z0-9(])"
)
STOPWORDS = frozenset(
    "a an and are as at be by can do does for from has have how i in is it its of on or should "
    "that the their there these this to was we were what when where which who why will with "
    "after about after any my our your me you there than then them they into out up".split()
)
# Sentences about the provenance of our notes (what could be read) answer no clinical question.
META_RE = re.compile(
    r"\b(only the abstract|abstract[- ]level|at abstract level|stored (copy|text)|"
    r"knowledge base|only a short abstract|read at|read from its|"
    r"could not be (?:identified|read|found))\b",
    re.IGNORECASE,
)
# A question asking "how often / how long / how much" is answered by a sentence with a number.
QUANTITY_RE = re.compile(
    r"\b(how (often|common|frequent|long|many|much|soon|late)|incidence|rate|percent|dose|"
    r"duration|months?|volume|risk|odds|proportion|figures?)\b|%",
    re.IGNORECASE,
)
NUMBER_RE = re.compile(r"\d")
NUMBER_BONUS = 1.0
ANAPHORA_RE = re.compile(r"(?:They|These|This|It|Such|Those|Both|Its|Their|He|She)\b")
MAX_SENTENCES = 4
# Retrieval rank still matters when words tie: the top passage gets a head start.
RANK_PRIOR = 1.5
SNIPPET_CHARS = 300


def terms(text: str) -> list[str]:
    # A 6-letter stem folds plurals and verb forms (embolism/emboli, anticoagulate/-ation).
    return [w[:6] for w in WORD_RE.findall(text.lower()) if w not in STOPWORDS]


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_RE.split(text.strip()) if s.strip()]


@dataclass(frozen=True)
class Composition:
    text: str
    citations: tuple[Citation, ...]


class Composer:
    def __init__(self, passages: Sequence[Passage]) -> None:
        df: dict[str, int] = {}
        for p in passages:
            for t in set(terms(p.text)):
                df[t] = df.get(t, 0) + 1
        n = max(len(passages), 1)
        self.idf = {t: math.log(1 + n / c) for t, c in df.items()}
        self.default_idf = math.log(1 + n)
        self.by_section = {p.id: p for p in passages}

    def _score(self, q_terms: set[str], sentence: str) -> float:
        s_terms = set(terms(sentence))
        overlap = sum(self.idf.get(t, self.default_idf) for t in q_terms & s_terms)
        return overlap / (1.0 + 0.02 * len(s_terms))

    def pick(
        self, question: str, passages: Sequence[Passage], reserved: int = 0
    ) -> list[tuple[Passage, str]]:
        """The best sentences across passages, at most two per passage, in reading order.

        The first ``reserved`` passages (the evidence behind a recommendation) each get a slot.
        """
        q_terms = set(terms(question))
        wants_number = bool(QUANTITY_RE.search(question))
        scored: list[tuple[float, int, int, Passage, str]] = []
        for rank, passage in enumerate(passages):
            for pos, sentence in enumerate(split_sentences(passage.text)):
                if META_RE.search(sentence):
                    continue
                score = self._score(q_terms, sentence) + RANK_PRIOR / (rank + 1)
                if wants_number and NUMBER_RE.search(sentence):
                    score += NUMBER_BONUS
                if ANAPHORA_RE.match(sentence):  # "They could be..." means little on its own
                    score *= 0.5
                scored.append((score, rank, pos, passage, sentence))
        scored.sort(key=lambda x: -x[0])
        chosen: list[tuple[float, int, int, Passage, str]] = []
        for rank in range(min(reserved, len(passages))):
            best = next((x for x in scored if x[1] == rank), None)
            if best is not None:
                chosen.append(best)
        per_passage = {x[3].id: 1 for x in chosen}
        for item in scored:
            if len(chosen) >= MAX_SENTENCES:
                break
            pid = item[3].id
            if item in chosen or per_passage.get(pid, 0) >= 2:
                continue
            chosen.append(item)
            per_passage[pid] = per_passage.get(pid, 0) + 1
        chosen.sort(key=lambda x: (x[1], x[2]))
        return [(p, sentence) for _, _, _, p, sentence in chosen]

    def compose(
        self,
        question: str,
        passages: Sequence[Passage],
        topics: Sequence[Topic] = (),
        reserved: int = 0,
    ) -> Composition:
        numbers: dict[str, int] = {}
        snippets: dict[str, list[str]] = {}
        used: dict[str, Passage] = {}

        def marker(passage: Passage, snippet: str) -> str:
            if passage.id not in numbers:
                numbers[passage.id] = len(numbers) + 1
                used[passage.id] = passage
            snippets.setdefault(passage.id, []).append(snippet)
            return f"[{numbers[passage.id]}]"

        parts = [f"{s} {marker(p, s)}" for p, s in self.pick(question, passages, reserved)]
        text = " ".join(parts)
        for topic in topics:

            def replace(m: re.Match[str]) -> str:
                passage = self.by_section.get(m.group(1))
                return marker(passage, passage.text) if passage else ""

            note = re.sub(r"\s+", " ", PLACEHOLDER_RE.sub(replace, topic.note)).strip()
            text = f"{text}\n\n{note}" if text else note
        citations = tuple(
            Citation(
                n=numbers[pid],
                source_id=p.source_id,
                title=p.title,
                year=p.year,
                doi=p.doi,
                pmid=p.pmid,
                url=p.url,
                passage_id=p.id,
                section=p.section,
                snippet=_snippet(snippets[pid]),
                evidence_type=p.evidence_type,
            )
            for pid, p in used.items()
        )
        return Composition(text=text, citations=citations)

    def passages_by_id(self, ids: Sequence[str]) -> list[Passage]:
        return [self.by_section[i] for i in dict.fromkeys(ids) if i in self.by_section]

    def passages_for(self, topics: Sequence[Topic]) -> list[Passage]:
        """The passages a disagreement note cites: they join what the answer retrieved."""
        return self.passages_by_id([sid for t in topics for sid in t.section_ids])


def _snippet(parts: list[str]) -> str:
    text = " … ".join(dict.fromkeys(parts))
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1].rstrip() + "…"
