"""Rules a claim's text must follow, so it reads right on its own next to claims of other papers.

- it states a fact, not what a document does ("the introduction describes ...");
- it does not open with a pronoun that has nothing to refer to ("They ...", "This ...");
- it names no other study's author or year unless the claim declares it (``via`` when the
  source relays that study, ``compares`` when it compares with it): a fact belongs to its paper.

The same rules as the knowledge authors' checker (claims-format.md); each returns problems as
text so the loader can name the file and the claim.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from assistant.types import Claim, Source

MAX_WORDS = 60
PRONOUNS = frozenset(
    "they it this these those such he she his her its their both".split()
)
FIRST_WORD_RE = re.compile(r"[A-Za-z']+")
# "the abstract discusses ...", "begins by noting ...", "the paper explains why ...".
DOCUMENT_REFERENCE = (
    re.compile(
        r"\b(?:the|this|its|their)\s+(?:introduction|abstract|paper|article|report|review|"
        r"pearl|study|table|excerpt|text|summary|page|authors?)\s+(?:also\s+)?"
        r"(?:describe|discuss|explain|mention|note|state|say|summari[sz]e|cite|list|"
        r"begin|stress|present|relay|give|report|point|argue|conclude|suggest)s?\b",
        re.IGNORECASE,
    ),
    re.compile(r"\bbegins?\s+by\b", re.IGNORECASE),
    re.compile(
        r"\b(?:stored copy|full text|could not be (?:read|identified|confirmed)|"
        r"was not available|not available here|only the abstract)\b",
        re.IGNORECASE,
    ),
    re.compile(r"\b(?:in|of) (?:the|this) (?:abstract|introduction|excerpt)\b", re.IGNORECASE),
)
YEAR_RE = re.compile(r"\b(?:19[5-9]\d|20[0-3]\d)\b")
# Names that identify a source without an author surname (as in the authors' checker).
ALIASES: Mapping[str, tuple[str, ...]] = {
    "clinical-pearl-2021": ("Clinical Pearl", "Emergency Medicine News", "EM News"),
    "venmans-2010": ("VERTOS",),
    "adams-acep-now": ("ACEP Now",),
}


def surname(author: str) -> str:
    """'Ribeiro Neto ML' -> 'Ribeiro Neto'; "D'Errico S" -> "D'Errico"; 'Adams' -> 'Adams'."""
    parts = author.split()
    while (
        len(parts) > 1 and re.fullmatch(r"[A-Z][A-Za-z]{0,3}", parts[-1]) and parts[-1].isupper()
    ):
        parts.pop()
    return " ".join(parts)


def text_problems(text: str) -> list[str]:
    """Problems of one claim's text on its own: length, a leading pronoun, document talk."""
    words = text.split()
    problems: list[str] = []
    if not words:
        return ["text is empty"]
    if len(words) > MAX_WORDS:
        problems.append(f"text has {len(words)} words; one fact a claim, at most {MAX_WORDS}")
    first = FIRST_WORD_RE.match(text)
    if first and first.group(0).lower() in PRONOUNS:
        problems.append(
            f"text starts with the pronoun '{first.group(0)}', which refers to nothing when the "
            "claim is read on its own; name who or what"
        )
    for pattern in DOCUMENT_REFERENCE:
        found = pattern.search(text)
        if found:
            problems.append(
                f"text refers to a document ('{found.group(0)}') instead of stating the fact"
            )
            break
    return problems


@dataclass(frozen=True)
class Names:
    """Author surnames and aliases of every source, to catch a claim naming another study."""

    owners: Mapping[str, frozenset[str]]  # name -> ids of the sources it identifies
    by_source: Mapping[str, frozenset[str]]  # source id -> its own names
    years: Mapping[str, int | None]

    @classmethod
    def of(cls, sources: Iterable[Source]) -> Names:
        owners: dict[str, set[str]] = {}
        own: dict[str, frozenset[str]] = {}
        years: dict[str, int | None] = {}
        for source in sources:
            names = {surname(a) for a in source.authors} | set(ALIASES.get(source.id, ()))
            own[source.id] = frozenset(names)
            years[source.id] = source.year
            for name in names:
                owners.setdefault(name, set()).add(source.id)
        return cls({k: frozenset(v) for k, v in owners.items()}, own, years)


def attribution_problems(claim: Claim, source: Source, names: Names) -> list[str]:
    """Another study's author or year in the text, not declared by ``via`` or ``compares``."""
    problems = [
        f"compares with unknown source '{other}'" for other in claim.compares
        if other not in names.by_source
    ]
    allowed = set(names.by_source.get(source.id, ()))
    years = {source.year}
    for other in claim.compares:
        allowed |= names.by_source.get(other, frozenset())
        years.add(names.years.get(other))
    if claim.via:
        allowed |= set(re.findall(r"[A-Z][A-Za-z'\-]+", claim.via))
        allowed |= {name for name in names.owners if name in claim.via}
        years |= {int(y) for y in YEAR_RE.findall(claim.via)}
    for name, owners in sorted(names.owners.items()):
        if name in allowed or source.id in owners:
            continue
        if re.search(rf"(?<![A-Za-z]){re.escape(name)}(?![A-Za-z])", claim.text):
            problems.append(
                f"text names '{name}' (source {', '.join(sorted(owners))}) without 'via' or "
                "'compares': a fact belongs to the paper it comes from"
            )
    for year in YEAR_RE.findall(claim.text):
        if int(year) not in years:
            problems.append(
                f"text names the year {year} of another study without 'via' or 'compares'"
            )
    return problems
