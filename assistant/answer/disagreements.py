"""Topics where sources disagree (``knowledge/disagreements.yaml``): both sides, cited."""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from assistant.data import Regex, load_model, suggest
from assistant.errors import RulesError

PLACEHOLDER_RE = re.compile(r"\{([a-z0-9-]+#[a-z0-9-]+)\}")


class Topic(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    triggers: list[Regex]
    note: str

    @property
    def section_ids(self) -> list[str]:
        return PLACEHOLDER_RE.findall(self.note)

    @field_validator("note")
    @classmethod
    def _citations_resolve(cls, note: str, info: ValidationInfo) -> str:
        known: Collection[str] = (info.context or {}).get("citations", ())
        missing = [sid for sid in PLACEHOLDER_RE.findall(note) if sid not in known]
        if missing:
            raise ValueError("; ".join(
                f"citation '{sid}' does not resolve to a knowledge section"
                f"{suggest(sid, [k for k in known if k.startswith(sid.split('#')[0] + '#')])}"
                for sid in missing
            ))
        return note


class Disagreements(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    topics: list[Topic]

    def matching(self, question: str) -> list[Topic]:
        return [
            t for t in self.topics if any(re.search(p, question, re.IGNORECASE) for p in t.triggers)
        ]


def load_disagreements(path: Path, known_sections: Collection[str]) -> Disagreements:
    """Every placeholder must name an existing knowledge section; every trigger must compile."""
    return load_model(path, Disagreements, error=RulesError, what="disagreements",
                      context={"citations": known_sections})
