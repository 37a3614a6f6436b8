"""Question kinds (``knowledge/key_points.yaml``): routing cues and the claims put first.

For each kind of clinician question (route, timing, incidence, ... what a named source
recommended): case-insensitive regex cues, the topics it draws on, and the ordered claim ids a
reviewer would put first -- the "summary" of a clinical reference. ``cells`` gives, for each row
and escalation of the decision table, the ordered claims that are the evidence for that cell.
Verified at load: every cue compiles, every id resolves to a claim, every kind has key points.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from assistant.errors import KnowledgeError
from assistant.knowledge.validate import validate
from assistant.types import Claim

KebabId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KindEntry(_Strict):
    id: KebabId
    label: str = Field(min_length=1)
    cues: list[str] = Field(min_length=1, description="Case-insensitive Python regexes.")
    topics: list[KebabId] = Field(min_length=1)
    key_points: list[str] = Field(min_length=1, description="Ordered claim ids.")
    general: bool = Field(
        default=False,
        description="A general kind ('management in general'): routed first only when no "
        "specific kind is cued ('what should we do if she becomes hypotensive?' is about "
        "the unstable patient).",
    )
    convention: Literal["location"] | None = Field(
        default=None,
        description="A convention of the rules table that answers this kind of question "
        "(shown first, labelled as this tool's own): 'location' = what central and peripheral "
        "mean here.",
    )


class KeyPointsFile(_Strict):
    kinds: list[KindEntry] = Field(min_length=1)
    cells: dict[str, list[str]] = Field(description="Rule or escalation id -> ordered claim ids.")


@dataclass(frozen=True)
class QuestionKind:
    id: str
    label: str
    cues: tuple[re.Pattern[str], ...]
    topics: tuple[str, ...]
    key_points: tuple[str, ...]
    convention: str | None = None
    general: bool = False

    def cue_hits(self, question: str) -> int:
        return sum(1 for cue in self.cues if cue.search(question))

    def cue_span(self, question: str) -> int:
        """How many characters of the question the cues match (each cue's first match): a
        kind named by a longer, more specific phrase outranks one named by a single word."""
        return sum(len(m.group(0)) for cue in self.cues if (m := cue.search(question)))


@dataclass(frozen=True)
class KeyPoints:
    kinds: tuple[QuestionKind, ...]
    cells: Mapping[str, tuple[str, ...]]

    def kind(self, kind_id: str) -> QuestionKind | None:
        return next((k for k in self.kinds if k.id == kind_id), None)


def load_key_points(
    path: Path, claims: Mapping[str, Claim], topics: Iterable[str] | None = None
) -> KeyPoints:
    data = validate(path, KeyPointsFile)
    known_topics = set(topics) if topics is not None else None
    kinds: list[QuestionKind] = []
    seen: set[str] = set()
    for entry in data.kinds:
        where = f"kinds[{entry.id!r}]"
        if entry.id in seen:
            raise KnowledgeError(path, where, "duplicate kind id")
        seen.add(entry.id)
        cues = []
        for cue in entry.cues:
            try:
                cues.append(re.compile(cue, re.IGNORECASE))
            except re.error as exc:
                problem = f"{cue!r} is not a regex: {exc}"
                raise KnowledgeError(path, f"{where}.cues", problem) from exc
        for topic in entry.topics:
            if known_topics is not None and topic not in known_topics:
                raise KnowledgeError(path, f"{where}.topics", f"unknown topic '{topic}'")
        _check_ids(path, f"{where}.key_points", entry.key_points, claims)
        kinds.append(
            QuestionKind(entry.id, entry.label, tuple(cues), tuple(entry.topics),
                         tuple(entry.key_points), entry.convention, entry.general)
        )
    for cell, ids in data.cells.items():
        if not ids:
            raise KnowledgeError(path, f"cells.{cell}", "lists no claims")
        _check_ids(path, f"cells.{cell}", ids, claims)
    return KeyPoints(tuple(kinds), {k: tuple(v) for k, v in data.cells.items()})


def _check_ids(path: Path, where: str, ids: list[str], claims: Mapping[str, Claim]) -> None:
    for claim_id in ids:
        if claim_id not in claims:
            raise KnowledgeError(path, where, f"'{claim_id}' does not resolve to a claim")
    if len(set(ids)) != len(ids):
        raise KnowledgeError(path, where, "lists a claim twice")


def cell_problems(key_points: KeyPoints, rule_ids: Iterable[str]) -> list[str]:
    """``cells`` must name exactly the decision table's rows and escalations."""
    wanted = set(rule_ids)
    have = set(key_points.cells)
    return [f"cells: no claims for rule '{r}'" for r in sorted(wanted - have)] + [
        f"cells: '{c}' is not a rule or escalation id" for c in sorted(have - wanted)
    ]
