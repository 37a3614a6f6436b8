"""Small FHIR R4 resources and CDS Hooks requests for tests (valid unless a test breaks them).

The fixtures under tests/fixtures/fhir are whole EHR records; these builders make the one resource
a test is about, so the test shows what it varies.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

from assistant.data import load_yaml

FHIR_FIXTURES = Path(__file__).parent / "fixtures" / "fhir"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CPT = "http://www.ama-assn.org/go/cpt"
SNOMED = "http://snomed.info/sct"
PATIENT = "pat-1"


def manifest() -> list[dict[str, Any]]:
    return list(load_yaml((FHIR_FIXTURES / "manifest.yaml").read_text(encoding="utf-8")))


def fixture_request(name: str) -> dict[str, Any]:
    return dict(json.loads((FHIR_FIXTURES / name).read_text(encoding="utf-8")))


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }


def report(
    ident: str,
    conclusion: str | None = None,
    *,
    text: str | None = None,
    when: str = "2026-03-14T08:00:00Z",
    code: tuple[str, str] = ("36147-7", "CTA Pulmonary arteries W contrast IV"),
    status: str = "final",
    content_type: str = "text/plain",
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": ident,
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": code[0], "display": code[1]}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": when,
    }
    if conclusion is not None:
        resource["conclusion"] = conclusion
    if text is not None:
        data = base64.b64encode(text.encode("utf-8")).decode("ascii")
        resource["presentedForm"] = [{"contentType": content_type, "data": data}]
    return resource


def vital(
    ident: str,
    loinc: str,
    value: float | str | None,
    unit: str | None,
    *,
    when: str = "2026-03-14T09:00:00Z",
    status: str = "final",
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": ident,
        "status": status,
        "category": [{"coding": [{"code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": when,
    }
    if value is not None:
        quantity: dict[str, Any] = {"value": value}
        if unit is not None:
            quantity |= {"system": UCUM, "code": unit, "unit": unit}
        resource["valueQuantity"] = quantity
    return resource


def procedure(
    ident: str,
    *,
    coding: tuple[str, str, str | None] | None = ("22511", CPT, None),
    text: str | None = None,
    when: str = "2026-03-11T09:30:00Z",
    status: str = "completed",
) -> dict[str, Any]:
    code: dict[str, Any] = {}
    if coding is not None:
        number, system, display = coding
        code["coding"] = [
            {"system": system, "code": number} | ({"display": display} if display else {})
        ]
    if text is not None:
        code["text"] = text
    return {
        "resourceType": "Procedure",
        "id": ident,
        "status": status,
        "code": code,
        "subject": {"reference": f"Patient/{PATIENT}"},
        "performedDateTime": when,
    }


def hook(
    prefetch: dict[str, Any] | None = None,
    findings: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": "Practitioner/123", "patientId": PATIENT}
    if findings is not None:
        context["findings"] = findings
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": context,
        **extra,
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body
