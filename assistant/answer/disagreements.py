"""Topics where sources disagree (``knowledge/disagreements.yaml``): both sides, cited."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from assistant.data import load_yaml
from assistant.errors import RulesError

PLACEHOLDER_RE = re.compile(r"\{([a-z0-9-]+#[a-z0-9-]+)\}")


class Topic(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    triggers: list[str]
    note: str

    @property
    def section_ids(self) -> list[str]:
        return PLACEHOLDER_RE.findall(self.note)


class Disagreements(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    topics: list[Topic]

    def matching(self, question: str) -> list[Topic]:
        return [
            t for t in self.topics if any(re.search(p, question, re.IGNORECASE) for p in t.triggers)
        ]


def load_disagreements(path: Path, known_claims: set[str]) -> Disagreements:
    """Every placeholder must name an existing knowledge claim; every trigger must compile."""
    try:
        data = Disagreements.model_validate(load_yaml(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise RulesError([str(exc)], path) from exc
    problems: list[str] = []
    for topic in data.topics:
        for pattern in topic.triggers:
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.append(f"topic '{topic.id}': trigger {pattern!r} is not a regex: {exc}")
        problems += [
            f"topic '{topic.id}': citation '{sid}' does not resolve to a knowledge claim"
            for sid in topic.section_ids
            if sid not in known_claims
        ]
    if problems:
        raise RulesError(problems, path)
    return data
