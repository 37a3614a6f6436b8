"""Route a question to its kind(s) of question (``knowledge/key_points.yaml``).

Two signals, both from data: the kind's lexicon cues (regexes written for the class of question)
and the question's word overlap with the kind's profile -- its label, its topics' labels and
descriptions, and the texts of its key claims (idf-weighted, so rare words count most). A kind
whose cues match ranks above one found by similarity alone; ties go to more cue hits, then to the
kind whose cues match more of the question as typed (the more specific phrase), then to
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
    span: int = 0  # characters of the question its cues match

    @property
    def sort_key(self) -> tuple[int, int, int, int, float]:
        # Cued kinds first, a specific kind named by the typed words before a general one
        # ("what should we do if she becomes hypotensive?" is about the unstable patient), then
        # more cue hits; on a tie the
        # kind the question names by the longer phrase ("vs kyphoplasty" over "rates"), then
        # similarity.
        cued = self.cues > 0
        typed = cued and self.span > 0  # cued by words typed, not only by an expansion
        return (int(cued), int(typed and not self.kind.general), self.cues, self.span,
                self.similarity)


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

    def route(self, question: str, expanded: str | None = None) -> list[Route]:
        """The kinds this question belongs to, best first (empty: no kind fits).

        ``expanded``: the question with its abbreviations spelt out ("on the table" -> during
        the procedure), read by the cues and for word similarity; the tie-break by matched
        characters reads the question as typed, so an expansion ("asymptomatic" -> no
        symptoms) does not outweigh a word the clinician typed ("Krueger")."""
        full = expanded or question
        q = set(terms(full))
        routes = []
        for kind in self.kinds:
            hits = kind.cue_hits(full)
            similarity = self.idf.coverage(q, self.profiles[kind.id])
            if hits or similarity >= MIN_SIMILARITY:
                span = kind.cue_span(question) if hits else 0
                routes.append(Route(kind, hits, similarity, span))
        return sorted(routes, key=lambda r: r.sort_key, reverse=True)


def kinds_of(routes: Sequence[Route]) -> list[str]:
    return [r.kind.id for r in routes]
