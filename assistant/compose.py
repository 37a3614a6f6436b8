"""Compose the narrative: the sentences that answer the question, each with its [n] marker.

Extractive by default, so every sentence shown is a sentence of a cited knowledge passage.
Citations are numbered in order of first use; a marker always resolves to a retrieved passage.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from assistant.disagreements import PLACEHOLDER_RE, Topic
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
# Sentences about the provenance of our notes answer no clinical question.
META_RE = re.compile(r"\b(abstract|stored (copy|text)|knowledge base|read at)\b", re.IGNORECASE)
MAX_SENTENCES = 4
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
        penalty = 0.5 if META_RE.search(sentence) else 1.0
        return penalty * overlap / (1.0 + 0.02 * len(s_terms))

    def pick(self, question: str, passages: Sequence[Passage]) -> list[tuple[Passage, str]]:
        q_terms = set(terms(question))
        picked: list[tuple[Passage, str]] = []
        for rank, passage in enumerate(passages):
            scored = [(self._score(q_terms, s), s) for s in split_sentences(passage.text)]
            if not scored:
                continue
            score, best = max(scored, key=lambda x: x[0])
            if score > 0 or rank == 0:
                picked.append((passage, best))
            if len(picked) == MAX_SENTENCES:
                break
        return picked

    def compose(
        self, question: str, passages: Sequence[Passage], topics: Sequence[Topic] = ()
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

        parts = [f"{s} {marker(p, s)}" for p, s in self.pick(question, passages)]
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

    def passages_for(self, topics: Sequence[Topic]) -> list[Passage]:
        """The passages a disagreement note cites: they join what the answer retrieved."""
        ids = [sid for t in topics for sid in t.section_ids]
        return [self.by_section[i] for i in dict.fromkeys(ids) if i in self.by_section]


def _snippet(parts: list[str]) -> str:
    text = " … ".join(dict.fromkeys(parts))
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1].rstrip() + "…"
