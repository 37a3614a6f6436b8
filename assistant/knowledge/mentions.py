"""Which curated sources a question names ("What did Krueger 2009 recommend?", "the Waler case").

A source is named by its first author's surname (capitalised, as written in a citation) or by
an alias (``claimcheck.ALIASES``: "Clinical Pearl", "VERTOS", "ACEP Now"); a year next to the
name picks between sources of one author (Venmans 2008 / 2010, Kim 2009 / 2018).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from assistant.knowledge.claimcheck import ALIASES, surname
from assistant.types import Source

YEAR_RE = re.compile(r"\b(?:19|20)\d\d\b")


@dataclass(frozen=True)
class _Name:
    pattern: re.Pattern[str]
    source_id: str
    year: int | None
    needs_year: bool = False  # a journal names a source only together with its year


class SourceMentions:
    def __init__(self, names: Iterable[_Name]) -> None:
        self.names = tuple(names)

    @classmethod
    def of(cls, sources: Iterable[Source]) -> SourceMentions:
        names: list[_Name] = []
        for source in sources:
            if source.user_supplied:
                continue
            words = [surname(source.authors[0])] if source.authors else []
            for word in [*words, *ALIASES.get(source.id, ())]:
                # Surnames are matched as capitalised words ("Kim", not "kim"); aliases too.
                pattern = re.compile(rf"(?<![\w'-]){re.escape(word)}(?![\w-])")
                names.append(_Name(pattern, source.id, source.year))
            if source.journal and source.year:
                # "the Spine 2004 case", "World Neurosurg 2017", "AJNR 2011": the journal (or
                # its leading acronym) followed by the year.
                forms = {source.journal}
                head = source.journal.split()[0]
                if len(head) >= 3 and head.isupper():
                    forms.add(head)
                for form in forms:
                    pattern = re.compile(rf"(?<![\w-]){re.escape(form)}(?![\w-])", re.IGNORECASE)
                    names.append(_Name(pattern, source.id, source.year, needs_year=True))
        return cls(names)

    def find(self, text: str) -> list[str]:
        """Ids of the sources the text names, in order of first mention; a year next to a name
        (before or after it) keeps only the sources of that year."""
        hits: list[tuple[int, str]] = []
        for name in self.names:
            for found in name.pattern.finditer(text):
                window = text[max(0, found.start() - 12) : found.end() + 12]
                years = [int(y) for y in YEAR_RE.findall(window)]
                if years and name.year is not None and name.year not in years:
                    continue
                if name.needs_year and name.year not in years:
                    continue
                hits.append((found.start(), name.source_id))
                break
        return list(dict.fromkeys(sid for _, sid in sorted(hits)))


def source_label(source: Source) -> str:
    """How a sentence names a source: 'Waler 2020', 'Orthop Surg 2012' (no confirmed authors),
    'Adams, ACEP Now' (no year); '' when nothing identifies it but its citation."""
    who = surname(source.authors[0]) if source.authors else (source.journal or "")
    if not who:
        return str(source.year) if source.year else ""
    if source.year:
        return f"{who} {source.year}"
    return f"{who}, {source.journal}" if source.authors and source.journal else who


def naming_words(source: Source) -> list[str]:
    """The words a question may use to name a source: first author, aliases, year."""
    words = [surname(source.authors[0])] if source.authors else []
    words += list(ALIASES.get(source.id, ()))
    return words + ([str(source.year)] if source.year else [])
