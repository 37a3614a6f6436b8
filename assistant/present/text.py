"""The words around a recommendation, read from ``knowledge/presentation.yaml``.

Tier names, finding labels and hints, the short location convention, captions and example
vignettes are data beside the rules table, not Python constants, so a reviewer checks every
clinical statement a face shows in ``knowledge/``. The tier and everything it carries (actions,
caveats, citations) still come from the rules table alone.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from assistant.data import load_model
from assistant.errors import KnowledgeError
from assistant.settings import Settings
from assistant.types import TIERS, FindingName

FILE_NAME = "presentation.yaml"
# The four findings the panel, the API and an EHR set, and the values each takes there.
PANEL_CHOICES: dict[str, tuple[str, ...]] = {
    "symptomatic": ("yes", "no", "unknown"),
    "location": ("central", "peripheral", "unknown"),
    "hemodynamic_instability": ("yes", "no", "unknown"),
    "intracardiac_cement": ("yes", "no", "unknown"),
}
PANEL_FIELDS: tuple[str, ...] = tuple(PANEL_CHOICES)
ALL_FINDINGS: tuple[FindingName, ...] = (
    "symptomatic",
    "location",
    "hemodynamic_instability",
    "intracardiac_cement",
    "procedure",
)
# The table inputs that decide the tier; the one-line summary names their values.
TIER_INPUTS: tuple[str, ...] = ("symptomatic", "location")


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TierText(_Data):
    name: str = Field(min_length=1, description="Display name; the rules rows' label, capitalised.")


class FindingText(_Data):
    label: str = Field(min_length=1, description="Full label (basis table).")
    short: str = Field(min_length=1, description="Short label (extracted-findings list).")
    panel_label: str | None = Field(default=None, description="Label of its findings-panel radio.")
    hint: str | None = Field(default=None, description="One line under the radio.")
    summary: dict[str, str] = Field(
        default_factory=dict,
        description="Table input value -> words for the one-line tier summary.",
    )


class Presentation(_Data):
    """Everything a face says around a recommendation that is not in the rules table."""

    version: int
    tiers: dict[str, TierText] = Field(description="Every tier id of the rules table.")
    findings: dict[str, FindingText] = Field(description="Every finding name of ExplicitFindings.")
    location_convention_short: str = Field(min_length=1)
    subtitle: str = Field(min_length=1)
    placeholder: str = Field(min_length=1)
    examples: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _complete(self) -> Self:
        for key, expected in (("tiers", TIERS), ("findings", ALL_FINDINGS)):
            names = set(getattr(self, key))
            if names - set(expected):
                unknown = ", ".join(sorted(names - set(expected)))
                raise ValueError(f"{key}: unknown {unknown}; use {', '.join(expected)}")
            if set(expected) - names:
                missing = ", ".join(t for t in expected if t not in names)
                raise ValueError(f"{key}: missing {missing}")
        for name in PANEL_FIELDS:
            if not (self.findings[name].panel_label and self.findings[name].hint):
                raise ValueError(f"findings.{name}: a panel finding needs panel_label and hint")
        for name in TIER_INPUTS:
            absent = set(PANEL_CHOICES[name]) - set(self.findings[name].summary)
            if absent:
                raise ValueError(f"findings.{name}.summary: missing {', '.join(sorted(absent))}")
        return self

    def tier_name(self, tier: str) -> str:
        return self.tiers[tier].name if tier in self.tiers else tier

    def label(self, finding: str) -> str:
        text = self.findings.get(finding)
        return text.label if text else finding

    def short(self, finding: str) -> str:
        text = self.findings.get(finding)
        return text.short if text else finding


def load_presentation(path: Path) -> Presentation:
    """Read and validate one presentation file; a problem names the file, line and field."""
    return load_model(path, Presentation, error=KnowledgeError, what="presentation file")


@lru_cache(maxsize=8)
def _cached(path: Path) -> Presentation:
    return load_presentation(path)


def presentation_for(knowledge_dir: Path) -> Presentation:
    """The presentation file of a knowledge directory, read once per process."""
    return _cached(Path(knowledge_dir).resolve() / FILE_NAME)


def default_presentation() -> Presentation:
    """For callers without settings at hand: the configured knowledge directory's file."""
    return presentation_for(Settings().knowledge_dir)
