"""The code table the FHIR intake reads (``knowledge/ehr_codes.yaml``), validated at load.

Thresholds are not in it: each vital names a numeric rule of the lexicon, which decides. A vital
that names a rule the lexicon does not have fails here, at start-up, not on a patient's request.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from assistant.clinical.lexicon import Lexicon, NumericRule
from assistant.data import load_model
from assistant.errors import RulesError

__all__ = ["EhrCodes", "Vital", "load_ehr_codes"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Systems(_Strict):
    loinc: str
    ucum: str
    cpt: str
    snomed: str


class CodeEntry(_Strict):
    code: str
    display: str
    source: str = Field(min_length=1, description="Where this code was confirmed.")


class Imaging(_Strict):
    category: CodeEntry
    codes: tuple[CodeEntry, ...]
    text: re.Pattern[str] = Field(description="Code text naming chest imaging (a local code).")

    @model_validator(mode="before")
    @classmethod
    def _compile(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("text"), str):
            try:
                data = {**data, "text": re.compile(data["text"], re.IGNORECASE)}
            except re.error as exc:
                raise ValueError(f"text: invalid regular expression: {exc}") from exc
        return data


class Vital(_Strict):
    name: str
    short: str
    loinc: tuple[str, ...] = Field(min_length=1)
    ucum: str = Field(description="The UCUM code the value must carry.")
    rule: str | None = Field(description="The lexicon's numeric rule id, or null (no threshold).")
    source: str = Field(min_length=1)


class ProcedureCodes(_Strict):
    cpt: tuple[str, ...] = ()
    snomed: tuple[str, ...] = ()
    source: str = Field(min_length=1)


class Procedures(_Strict):
    vertebroplasty: ProcedureCodes
    kyphoplasty: ProcedureCodes
    unconfirmed_snomed: tuple[str, ...] = Field(
        default=(), description="Concept ids seen in secondary sources only: never matched."
    )

    def by_system(self, system: str) -> dict[str, str]:
        """Code -> procedure name for 'cpt' or 'snomed'."""
        return {
            code: name
            for name in ("vertebroplasty", "kyphoplasty")
            for code in getattr(getattr(self, name), system)
        }


class EhrCodes(_Strict):
    version: int
    systems: Systems
    statuses: dict[str, tuple[str, ...]]
    imaging: Imaging
    vitals: tuple[Vital, ...]
    panels: tuple[CodeEntry, ...]
    procedures: Procedures

    @model_validator(mode="after")
    def _unique(self) -> EhrCodes:
        loinc = [code for vital in self.vitals for code in vital.loinc]
        twice = sorted({code for code in loinc if loinc.count(code) > 1})
        if twice:
            raise ValueError(f"vitals: LOINC code(s) listed twice: {', '.join(twice)}")
        for name in ("DiagnosticReport", "Observation", "Procedure"):
            if name not in self.statuses:
                raise ValueError(f"statuses: {name} is missing")
        return self

    def vital_for(self, loinc: str) -> Vital | None:
        return next((v for v in self.vitals if loinc in v.loinc), None)

    def vital_codes(self) -> list[str]:
        """Every LOINC code the vitals query asks for (the vitals and the panels)."""
        return [c for v in self.vitals for c in v.loinc] + [p.code for p in self.panels]

    def rule(self, vital: Vital, lexicon: Lexicon) -> NumericRule | None:
        return next((r for r in lexicon.numeric if r.id == vital.rule), None)


def load_ehr_codes(path: Path, lexicon: Lexicon) -> EhrCodes:
    """Load and check the table; a vital whose rule the lexicon lacks is an error."""
    codes = load_model(path, EhrCodes, error=RulesError, what="EHR code table")
    known = {rule.id for rule in lexicon.numeric}
    unknown = [f"vitals: {v.name}: rule {v.rule!r} is not a numeric rule of the lexicon "
               f"(known: {', '.join(sorted(known))})"
               for v in codes.vitals if v.rule is not None and v.rule not in known]
    if unknown:
        raise RulesError(unknown, path)
    return codes
