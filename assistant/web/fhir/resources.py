"""Prefetch Bundles -> validated FHIR R4 resources, one entry at a time, with notes.

The models are fhir.resources' R4B package (R4 plus changes outside the resources read here; the
default package is R5, where ``Procedure.performedDateTime`` no longer exists). A Bundle is not
validated as a whole: one bad entry would reject all of them. Each entry is validated on its own,
and one that fails is skipped with a note naming it. Nothing the EHR sends makes the request fail.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.procedure import Procedure
from pydantic import ValidationError

__all__ = ["PREFETCH_TYPES", "Intake", "read_prefetch"]

log = logging.getLogger(__name__)

# The prefetch keys this service declares, and the one resource type each holds.
PREFETCH_TYPES: dict[str, str] = {
    "reports": "DiagnosticReport",
    "vitals": "Observation",
    "procedures": "Procedure",
}
MAX_PROBLEMS_SHOWN = 2


@dataclass
class Intake:
    """The valid resources of each kind, and what was skipped or missing, in words."""

    reports: list[DiagnosticReport] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    procedures: list[Procedure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def add(self, resource: Any) -> None:
        if isinstance(resource, DiagnosticReport):
            self.reports.append(resource)
        elif isinstance(resource, Observation):
            self.observations.append(resource)
        elif isinstance(resource, Procedure):
            self.procedures.append(resource)


def resource_name(raw: Mapping[str, Any]) -> str:
    kind = raw.get("resourceType")
    ident = raw.get("id")
    kind_text = kind if isinstance(kind, str) and kind else "resource"
    return f"{kind_text}/{ident}" if isinstance(ident, str) and ident else f"{kind_text} (no id)"


def _problems(exc: ValidationError) -> str:
    errors = exc.errors()
    shown = [
        ".".join(str(p) for p in e["loc"]) + ": " + str(e["msg"])
        for e in errors[:MAX_PROBLEMS_SHOWN]
    ]
    more = f" (+{len(errors) - len(shown)} more)" if len(errors) > len(shown) else ""
    return "; ".join(shown) + more


def _validate(raw: Any, expected: str, intake: Intake, where: str) -> None:
    if not isinstance(raw, Mapping):
        intake.notes.append(f"{where}: an entry without a resource object was skipped.")
        return
    name = resource_name(raw)
    if raw.get("resourceType") != expected:
        intake.notes.append(f"{name} in `{where}` is not a {expected}; skipped.")
        return
    try:
        resource = get_fhir_model_class(expected).model_validate(dict(raw))
    except ValidationError as exc:
        intake.notes.append(f"{name} is invalid FHIR R4 ({_problems(exc)}); skipped.")
        return
    except Exception:
        log.exception("FHIR validation raised on %s", name)
        intake.notes.append(f"{name} could not be read as FHIR R4 (invalid); skipped.")
        return
    intake.add(resource)


def read_bundle(key: str, payload: Any, intake: Intake) -> None:
    """Validate each entry of one searchset Bundle (or a bare resource) into ``intake``."""
    expected = PREFETCH_TYPES[key]
    if isinstance(payload, Mapping) and payload.get("resourceType") == expected:
        _validate(payload, expected, intake, key)  # a single resource instead of a Bundle
        return
    if not isinstance(payload, Mapping) or payload.get("resourceType") != "Bundle":
        intake.notes.append(f"The prefetch `{key}` is not a FHIR Bundle; it was not read.")
        return
    entries = payload.get("entry", [])
    if not isinstance(entries, list):
        intake.notes.append(f"The prefetch `{key}` has no list of entries; it was not read.")
        return
    seen: set[str] = set()
    for entry in entries:
        raw = entry.get("resource") if isinstance(entry, Mapping) else None
        if isinstance(raw, Mapping):
            name = resource_name(raw)
            if name in seen:  # listed twice (a panel member and a search match): read once
                continue
            seen.add(name)
        _validate(raw, expected, intake, key)


def read_prefetch(prefetch: Mapping[str, Any]) -> Intake:
    """Every declared key of the prefetch. A key that is absent or null is listed as missing (the
    caller may query it); one that is present but unreadable is noted, not queried again."""
    intake = Intake()
    for key in PREFETCH_TYPES:
        payload = prefetch.get(key)
        if payload is None:
            intake.missing.append(key)
            continue
        read_bundle(key, payload, intake)
    return intake
