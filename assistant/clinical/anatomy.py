"""Vessel and heart mentions as structure: each becomes a site with a level, a class and a side.

The vocabulary and the conventions are data (``knowledge/anatomy.yaml``, validated in
``clinical/lexicon.py``); this module only applies them:

1. Find the atoms of the vocabulary: a vessel level (trunk, main, lobar, segmental, ...), a plain
   branch, a lung lobe, a generic vessel noun, a heart chamber, a statement that the heart was
   not assessed, or a statement that the location is unknown. Overlapping atoms: the longest
   wins; atoms inside an exclusion drop.
2. Join atoms separated only by a linker ("of the", "'s", a space, a hyphen) into one site, so
   "lower lobar branch of the right pulmonary artery" or "LPA segmental branches" is ONE site.
3. A site's level is its most distal qualifier: a branch named through its main artery lies distal
   to that artery ("segmental branches of the LPA" is segmental, "the RPA's lower-lobe branch" is
   lobar, "a branch of the RPA" has no level: unclear); a lobe with an artery or branch is lobar;
   a lobe or a generic vessel alone names no site.

Whether a site holds cement, is negated or hedged is decided by the caller (clinical/findings.py),
which knows the clause and the ConText triggers. Spans are exact offsets into the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from assistant.clinical.lexicon import Anatomy

__all__ = ["Site", "find_sites"]

AtomKind = Literal["level", "branch", "lobe", "vessel", "heart", "heart_unassessed", "unclear"]
SiteKind = Literal["pulmonary", "heart", "unclear"]
UNCLEAR = "unclear"
LOBAR = "lobar"
UNASSESSED = "unassessed"  # the level of a heart site that says the heart was not assessed


@dataclass(frozen=True)
class Site:
    """One anatomical mention: where, what kind, and (for pulmonary sites) its level and class."""

    kind: SiteKind
    start: int
    end: int
    location_class: str = ""  # central / lobar / unclear / peripheral ('' for the heart)
    level: str = ""  # the level id that decided ('segmental'), 'branch' / 'lobe', or 'unassessed'
    side: str = ""  # right / left / both / ''
    qualifier: bool = False  # decided by a word that describes emboli, not by a vessel name


@dataclass(frozen=True)
class _Atom:
    kind: AtomKind
    start: int
    end: int
    level: str = ""


def find_sites(
    text: str, anatomy: Anatomy, excluded: Sequence[tuple[int, int]] = ()
) -> list[Site]:
    """Every site named in the text, in text order (no context applied yet)."""
    own = [(m.start(), m.end()) for p in anatomy.exclusions for m in p.finditer(text)]
    blocked = [*excluded, *own]
    atoms = _longest_first(
        a for a in _atoms(text, anatomy) if not any(a.start < e and s < a.end for s, e in blocked)
    )
    sites: list[Site] = []
    group: list[_Atom] = []
    for atom in atoms:
        if group and _joins(text, group[-1], atom, anatomy):
            group.append(atom)
            continue
        sites += _sites(text, group, anatomy)
        group = [atom]
    sites += _sites(text, group, anatomy)
    return sites


def _atoms(text: str, anatomy: Anatomy) -> Iterator[_Atom]:
    for level in anatomy.levels:
        for pattern in level.terms:
            for m in pattern.finditer(text):
                yield _Atom("level", m.start(), m.end(), level.id)
    groups: tuple[tuple[AtomKind, Sequence[re.Pattern[str]]], ...] = (
        ("branch", anatomy.branch),
        ("lobe", anatomy.lobe),
        ("vessel", anatomy.vessel),
        ("heart", anatomy.heart),
        ("heart_unassessed", anatomy.heart_unassessed),
        ("unclear", anatomy.unclear_statements),
    )
    for kind, patterns in groups:
        for pattern in patterns:
            for m in pattern.finditer(text):
                if m.end() > m.start():
                    yield _Atom(kind, m.start(), m.end())


def _longest_first(atoms: Iterator[_Atom]) -> list[_Atom]:
    kept: list[_Atom] = []
    for atom in sorted(atoms, key=lambda a: (a.start - a.end, a.start)):
        if not any(k.start < atom.end and atom.start < k.end for k in kept):
            kept.append(atom)
    return sorted(kept, key=lambda a: a.start)


def _joins(text: str, left: _Atom, right: _Atom, anatomy: Anatomy) -> bool:
    """Two atoms belong to one site when only a linker separates them (never across the heart)."""
    if {left.kind, right.kind} & {"heart", "heart_unassessed", "unclear"}:
        return False
    return anatomy.linker.fullmatch(text[left.end : right.start]) is not None


def _sites(text: str, group: list[_Atom], anatomy: Anatomy) -> list[Site]:
    if not group:
        return []
    start, end = group[0].start, group[-1].end
    side = _side(text[start:end], anatomy)
    kind = group[0].kind
    if kind == "heart":
        return [Site("heart", start, end, side=side)]
    if kind == "heart_unassessed":
        return [Site("heart", start, end, level=UNASSESSED, side=side)]
    if kind == "unclear":
        return [Site("unclear", start, end, location_class=UNCLEAR, level="statement")]
    decided = _classify(group, anatomy)
    if decided is None:
        return []
    location_class, level = decided
    qualifier = any(lv.id == level and lv.qualifier for lv in anatomy.levels)
    return [Site("pulmonary", start, end, location_class, level, side, qualifier)]


def _classify(group: list[_Atom], anatomy: Anatomy) -> tuple[str, str] | None:
    """(class, level) by the most distal qualifier; None when the atoms name no vessel level."""
    order = [lv.id for lv in anatomy.levels]
    classes = {lv.id: lv.location_class for lv in anatomy.levels}
    kinds = {a.kind for a in group}
    levels = [a.level for a in group if a.kind == "level"]
    with_vessel = bool(kinds & {"branch", "vessel"})
    if levels:
        distal = max(levels, key=order.index)
        if classes[distal] != "central":
            return classes[distal], distal
        # Named through a main artery: a branch of it lies distal to it.
        if "lobe" in kinds and with_vessel:
            return LOBAR, "lobe"
        if "branch" in kinds:
            return UNCLEAR, "branch"
        return classes[distal], distal
    if "lobe" in kinds and with_vessel:
        return LOBAR, "lobe"
    if "branch" in kinds:
        return UNCLEAR, "branch"
    return None


def _side(span: str, anatomy: Anatomy) -> str:
    found = [side for side, terms in anatomy.sides.items() if any(p.search(span) for p in terms)]
    if "both" in found or {"right", "left"} <= set(found):
        return "both"
    return found[0] if found else ""
