"""Route a question to its kind(s) of question (``knowledge/key_points.yaml``).

Two signals, both from data: the kind's lexicon cues (regexes written for the class of question)
and the question's word overlap with the kind's profile -- its label, its topics' labels and
descriptions, and the texts of its key claims (idf-weighted, so rare words count most). A kind
whose cues match ranks above one found by similarity alone; ties go to more cue hits, then to
similarity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from assistant.answer.lexical import Idf, terms
from assistant.knowledge.keypoints import KeyPoints, QuestionKind

# Below this share of the question's idf weight, similarity alone does not route a question.
MIN_SIMILARITY = 0.25


@dataclass(frozen=True)
class Route:
    kind: QuestionKind
    cues: int
    similarity: float

    @property
    def sort_key(self) -> tuple[int, int, float]:
        return (int(self.cues > 0), self.cues, self.similarity)


class Router:
    def __init__(
        self,
        key_points: KeyPoints,
        claim_texts: Mapping[str, str],
        topic_texts: Mapping[str, str],
        idf: Idf,
    ) -> None:
        self.kinds = key_points.kinds
        self.idf = idf
        self.profiles: dict[str, set[str]] = {}
        for kind in self.kinds:
            words = [kind.label, *(topic_texts.get(t, "") for t in kind.topics)]
            words += [claim_texts.get(c, "") for c in kind.key_points]
            self.profiles[kind.id] = set(terms(" ".join(words)))

    def route(self, question: str) -> list[Route]:
        """The kinds this question belongs to, best first (empty: no kind fits)."""
        q = set(terms(question))
        routes = []
        for kind in self.kinds:
            hits = kind.cue_hits(question)
            similarity = self.idf.coverage(q, self.profiles[kind.id])
            if hits or similarity >= MIN_SIMILARITY:
                routes.append(Route(kind, hits, similarity))
        return sorted(routes, key=lambda r: r.sort_key, reverse=True)


def kinds_of(routes: Sequence[Route]) -> list[str]:
    return [r.kind.id for r in routes]
