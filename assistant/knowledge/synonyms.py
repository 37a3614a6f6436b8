"""Abbreviations clinicians type and the words the claims use (``knowledge/synonyms.yaml``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from assistant.knowledge.validate import validate


class SynonymsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    expansions: dict[str, str] = Field(description="Abbreviation (as typed) -> words it means.")


@dataclass(frozen=True)
class Synonyms:
    pattern: re.Pattern[str] | None
    expansions: dict[str, str]

    def expand(self, text: str) -> str:
        """The text followed by the expansions of the abbreviations it uses (case-sensitive for
        all-capital abbreviations, so 'RA' is not 'ra')."""
        if self.pattern is None:
            return text
        found = dict.fromkeys(self.expansions[m.group(1).lower() if m.group(1).lower()
                                             in self.expansions else m.group(1)]
                              for m in self.pattern.finditer(text))
        return f"{text} {' '.join(found)}" if found else text


def load_synonyms(path: Path) -> Synonyms:
    if not path.is_file():
        return Synonyms(None, {})
    data = validate(path, SynonymsFile)
    table: dict[str, str] = {}
    alternatives = []
    for word, expansion in data.expansions.items():
        key = word if word.isupper() or any(c.isupper() for c in word[1:]) else word.lower()
        table[key] = expansion
        flags = "" if key is word and word != word.lower() else "(?i:"
        body = re.escape(word)
        alternatives.append(f"{flags}{body})" if flags else body)
    pattern = re.compile(r"(?<![\w/-])(" + "|".join(alternatives) + r")(?![\w/-])")
    return Synonyms(pattern, table)
