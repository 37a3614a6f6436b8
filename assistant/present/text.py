"""The words around a recommendation, read from ``knowledge/presentation.yaml``.

Tier names, finding labels and hints, the short location convention, captions, the words for who
graded a certainty of evidence, the sentence that shows an input the table derived, the words for a
statement a later one superseded, the CDS link card's question and example vignettes are data
beside the rules table, not Python constants, so a reviewer checks every clinical statement a face
shows in ``knowledge/``. The tier and everything
it carries (actions, caveats, citations) still come from the rules table alone.
"""

from __future__ import annotations

import typing
from functools import lru_cache
from pathlib import Path
from string import Formatter
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from assistant.data import load_model
from assistant.errors import KnowledgeError
from assistant.settings import Settings
from assistant.types import TIERS, Certainty, FindingName

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
# Who judged a certainty of evidence (assistant.types.Certainty.appraisal).
APPRAISALS: tuple[str, ...] = typing.get_args(Certainty.model_fields["appraisal"].annotation)


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(template) if name is not None}


def _template(*names: str) -> AfterValidator:
    """A sentence with exactly these ``{placeholders}`` (filled by the view, never by users)."""

    def check(value: str) -> str:
        try:
            found = _fields(value)
        except ValueError as exc:  # an unmatched brace
            raise ValueError(f"not a valid template: {exc}") from exc
        if found != set(names):
            want = ", ".join(f"{{{n}}}" for n in names) or "no placeholders"
            got = ", ".join(sorted(found)) or "none"
            raise ValueError(f"must use exactly {want} (found {got})")
        return value

    return AfterValidator(check)


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


class OverriddenText(_Data):
    """How a statement that was superseded is shown beside the span used."""

    label: str = Field(min_length=1, description="Opens the line ('Overrode').")
    later: str = Field(min_length=1, description="Why: a later statement superseded it.")
    explicit: str = Field(min_length=1, description="Why: a value set explicitly won over it.")


class CdsLinkText(_Data):
    """The question the CDS link card puts in the web UI's message box."""

    question: Annotated[str, _template("procedure")] = Field(min_length=1)
    procedure_unstated: str = Field(
        min_length=1, description="Fills {procedure} when the record names none."
    )
    unclear_location: Annotated[str, _template("term")] = Field(
        min_length=1, description="Added when a location term maps to neither class."
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
    certainty_appraisal: dict[str, str] = Field(
        description="rules.yaml certainty.appraisal value -> who judged the certainty."
    )
    derived: Annotated[str, _template("value", "because")] = Field(
        min_length=1, description="How a table input the rules table filled in is shown."
    )
    overridden: OverriddenText
    cds_link: CdsLinkText

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
        if set(self.certainty_appraisal) != set(APPRAISALS):
            raise ValueError(f"certainty_appraisal: give exactly {', '.join(APPRAISALS)}")
        return self

    def tier_name(self, tier: str) -> str:
        return self.tiers[tier].name if tier in self.tiers else tier

    def label(self, finding: str) -> str:
        text = self.findings.get(finding)
        return text.label if text else finding

    def short(self, finding: str) -> str:
        text = self.findings.get(finding)
        return text.short if text else finding

    def appraisal(self, appraisal: str) -> str:
        return self.certainty_appraisal.get(appraisal, appraisal)


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
