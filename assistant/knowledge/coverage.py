"""Coverage of the evidence dossier (``knowledge/coverage.yaml``).

Every verified dossier fact (F1..Fn, the universe declared in the file) is the ``facts`` of at
least one claim or an exclusion listed with its reason (unverified, out of scope, duplicate).
Checked at load, so a fact cannot silently drop out of the knowledge base.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from assistant.errors import KnowledgeError
from assistant.knowledge.validate import validate
from assistant.types import Claim

FACT = r"F[1-9]\d*"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Exclusion(_Strict):
    fact: str = Field(pattern=rf"^{FACT}$")
    reason: Literal["unverified", "out-of-scope", "duplicate"]
    note: str = Field(min_length=1)
    of: str | None = Field(default=None, pattern=rf"^{FACT}$", description="For a duplicate.")


class PartialExclusion(_Strict):
    fact: str = Field(pattern=rf"^{FACT}$")
    excluded_part: str = Field(min_length=1)
    reason: Literal["unverified", "out-of-scope"]


class UnverifiedItem(_Strict):
    item: str = Field(min_length=1)
    note: str = Field(min_length=1)


class SeedOnly(_Strict):
    """A claim that rests on a seed document (the source's own page) and on no dossier fact."""

    claim: str = Field(min_length=3, description="Global claim id, '<source id>#<claim id>'.")
    basis: str = Field(min_length=1, description="Which seed text states it.")


class CoverageFile(_Strict):
    facts: str = Field(
        pattern=rf"^F1-{FACT}$", description="The dossier's fact ids, e.g. 'F1-F80'."
    )
    excluded: list[Exclusion] = Field(default_factory=list)
    partial: list[PartialExclusion] = Field(default_factory=list)
    unverified_items: list[UnverifiedItem] = Field(default_factory=list)
    seed_only: list[SeedOnly] = Field(default_factory=list)


@dataclass(frozen=True)
class Coverage:
    universe: tuple[str, ...]
    claimed: frozenset[str]
    excluded: Mapping[str, Exclusion]

    def uncovered(self) -> list[str]:
        return [f for f in self.universe if f not in self.claimed and f not in self.excluded]


def fact_number(fact: str) -> int:
    return int(fact[1:])


def load_coverage(path: Path, claims: Mapping[str, Claim]) -> Coverage:
    data = validate(path, CoverageFile)
    last = fact_number(data.facts.split("-", 1)[1])
    universe = tuple(f"F{i}" for i in range(1, last + 1))
    claimed = {f for c in claims.values() for f in c.facts}
    outside = sorted((f for f in claimed if fact_number(f) > last), key=fact_number)
    if outside:
        owner = next(c.id for c in claims.values() if outside[0] in c.facts)
        raise KnowledgeError(path, "facts", f"claim '{owner}' declares {outside[0]}, outside "
                             f"{data.facts}")
    excluded: dict[str, Exclusion] = {}
    for e in data.excluded:
        where = f"excluded[{e.fact}]"
        if fact_number(e.fact) > last:
            raise KnowledgeError(path, where, f"{e.fact} is outside {data.facts}")
        if e.fact in excluded:
            raise KnowledgeError(path, where, "listed twice")
        if e.fact in claimed:
            raise KnowledgeError(path, where, f"{e.fact} is excluded but a claim declares it")
        if e.reason == "duplicate" and e.of is None:
            raise KnowledgeError(path, where, "a duplicate must name the fact it repeats in 'of'")
        excluded[e.fact] = e
    for p in data.partial:
        if p.fact not in claimed:
            raise KnowledgeError(path, f"partial[{p.fact}]", "is not declared by any claim")
    _check_seed_only(path, data.seed_only, claims)
    coverage = Coverage(universe, frozenset(claimed), excluded)
    missing = coverage.uncovered()
    if missing:
        raise KnowledgeError(
            path, "excluded", f"{', '.join(missing)}: neither declared by a claim nor excluded "
            "with a reason"
        )
    return coverage


def _check_seed_only(path: Path, listed: list[SeedOnly], claims: Mapping[str, Claim]) -> None:
    """A claim that declares no dossier fact must say which seed text it rests on, and only
    such claims are listed (a claim with a fact is traced through the dossier)."""
    named = {s.claim for s in listed}
    for s in listed:
        if s.claim not in claims:
            raise KnowledgeError(path, f"seed_only[{s.claim}]", "does not resolve to a claim")
        if claims[s.claim].facts:
            raise KnowledgeError(path, f"seed_only[{s.claim}]", "declares dossier facts; it is "
                                 "not seed-only")
    for cid, claim in claims.items():
        if not claim.facts and cid not in named:
            raise KnowledgeError(path, "seed_only", f"claim '{cid}' declares no dossier fact; "
                                 "list it under seed_only with the seed text it rests on")


def dossier_facts(text: str) -> list[str]:
    """The fact ids ``[Fn]`` the evidence dossier defines, in order."""
    return list(dict.fromkeys(re.findall(rf"\[({FACT})\]", text)))
