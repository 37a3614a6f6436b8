"""CDS Hooks 2.0: discovery, the PCE management service, and card feedback.

Findings come from ``context.findings`` (this service's extension) and/or simple FHIR
Observations in ``prefetch.observations`` (a Bundle) or ``context.observations``. The card's
indicator follows the tier: info (surveillance / needs information), warning (anticoagulation),
critical (surgical embolectomy or any escalation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from assistant.errors import InputError
from assistant.types import Citation, Findings, Recommendation

if TYPE_CHECKING:
    from assistant.assistant import Assistant

SERVICE_ID = "pce-management"
FINDING_SYSTEM = "https://pce-assistant.example/findings"
INDICATOR = {
    "surveillance": "info",
    "needs_information": "info",
    "anticoagulation": "warning",
    "surgical_embolectomy": "critical",
}
OVERRIDE_REASONS = [
    {
        "system": FINDING_SYSTEM + "/override",
        "code": "findings-incorrect",
        "display": "Findings used are incorrect",
    },
    {
        "system": FINDING_SYSTEM + "/override",
        "code": "clinical-judgement",
        "display": "Different management by clinical judgement",
    },
    {
        "system": FINDING_SYSTEM + "/override",
        "code": "specialist-advice",
        "display": "Following specialist advice",
    },
]
# Observation codes (ours, or matched on code.text) -> finding name.
OBSERVATION_CODES = {
    "symptomatic": "symptomatic",
    "pce-symptomatic": "symptomatic",
    "location": "location",
    "pce-location": "location",
    "hemodynamic-instability": "hemodynamic_instability",
    "hemodynamic_instability": "hemodynamic_instability",
    "intracardiac-cement": "intracardiac_cement",
    "intracardiac_cement": "intracardiac_cement",
}


class HookRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    hook: str
    hookInstance: str  # noqa: N815 - CDS Hooks field name
    context: dict[str, Any] = Field(default_factory=dict)
    prefetch: dict[str, Any] | None = None
    fhirServer: str | None = None  # noqa: N815


class OverrideReason(BaseModel):
    model_config = ConfigDict(extra="allow")

    reason: dict[str, Any] | None = None
    userComment: str | None = Field(default=None, max_length=4000)  # noqa: N815


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    card: str = Field(min_length=1)
    outcome: Literal["accepted", "overridden"]
    overrideReason: OverrideReason | None = None  # noqa: N815
    outcomeTimestamp: str | None = None  # noqa: N815


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feedback: list[FeedbackItem] = Field(min_length=1)


def discovery() -> dict[str, Any]:
    return {
        "services": [
            {
                "hook": "patient-view",
                "id": SERVICE_ID,
                "title": "Pulmonary cement embolism management",
                "description": "Management tier for pulmonary cement embolism after "
                "vertebroplasty/kyphoplasty from a cited decision table, given symptom status "
                "and emboli location (context.findings or FHIR Observations).",
                "prefetch": {"observations": "Observation?patient={{context.patientId}}"},
                "usageRequirements": "Send context.findings {symptomatic, location, "
                "hemodynamic_instability, intracardiac_cement} or Observations coded in "
                f"{FINDING_SYSTEM}.",
            }
        ]
    }


def _observation_value(resource: Mapping[str, Any]) -> Any:
    if "valueBoolean" in resource:
        return resource["valueBoolean"]
    if "valueString" in resource:
        return resource["valueString"]
    concept = resource.get("valueCodeableConcept")
    if isinstance(concept, Mapping):
        codings = concept.get("coding") or []
        if codings and isinstance(codings[0], Mapping) and codings[0].get("code"):
            return codings[0]["code"]
        return concept.get("text")
    return None


def _observation_name(resource: Mapping[str, Any]) -> str | None:
    code = resource.get("code")
    if not isinstance(code, Mapping):
        return None
    candidates = [c.get("code") for c in code.get("coding") or [] if isinstance(c, Mapping)]
    candidates.append(code.get("text"))
    for candidate in candidates:
        key = str(candidate or "").strip().lower().replace(" ", "-")
        if key in OBSERVATION_CODES:
            return OBSERVATION_CODES[key]
    return None


def findings_from_observations(payload: Any) -> dict[str, Any]:
    """Read simple Observations (a Bundle or a list); ignore what we do not recognise."""
    if isinstance(payload, Mapping) and payload.get("resourceType") == "Bundle":
        resources = [
            e.get("resource") for e in payload.get("entry") or [] if isinstance(e, Mapping)
        ]
    elif isinstance(payload, Sequence) and not isinstance(payload, str):
        resources = list(payload)
    else:
        return {}
    found: dict[str, Any] = {}
    for resource in resources:
        if not isinstance(resource, Mapping) or resource.get("resourceType") != "Observation":
            continue
        if resource.get("status") in ("entered-in-error", "cancelled"):
            continue
        name = _observation_name(resource)
        value = _observation_value(resource)
        if name and value is not None:
            found[name] = value
    return found


def _link(c: Citation) -> str:
    label = f"{c.title} ({c.year or 'n.d.'})"
    return f"[{label}]({c.url})" if c.url else label


def card_detail(rec: Recommendation, findings: Findings) -> str:
    lines = [f"**{rec.label}** (`{rec.tier}`, rule `{rec.rule_id}`, rules {rec.rules_version})", ""]
    lines += [f"- {a}" for a in rec.actions]
    if rec.certainty is not None:
        lines += ["", f"_{rec.certainty.statement}_"]
    for esc in rec.escalations:
        lines += ["", f"**Escalation: {esc.label}**"] + [f"- {a}" for a in esc.actions]
    if rec.missing:
        lines += ["", "**Missing findings**"] + [
            f"- {m.question} " + "; ".join(f"if {k}: {v}" for k, v in m.outcomes.items())
            for m in rec.missing
        ]
    if rec.caveats:
        lines += ["", "**Caveats**"] + [f"- {c}" for c in rec.caveats]
    lines += ["", "**Basis (findings used)**"] + [
        f'- {ev.finding} = {ev.value} ({ev.origin}: "{ev.text}")' for ev in findings.evidence
    ]
    citations = list(rec.citations) + [c for e in rec.escalations for c in e.citations]
    lines += ["", "**Sources**"] + [f"- {_link(c)} — {c.section}" for c in citations]
    lines += ["", "_Decision support only; it does not replace clinical judgement._"]
    return "\n".join(lines)


def make_card(rec: Recommendation, findings: Findings, card_id: str) -> dict[str, Any]:
    critical = rec.tier == "surgical_embolectomy" or bool(rec.escalations)
    indicator = "critical" if critical else INDICATOR[rec.tier]
    summary = f"PCE: {rec.label}"
    if rec.escalations:
        summary += " + " + ", ".join(e.label for e in rec.escalations)
    if len(summary) >= 140:
        summary = summary[:136].rstrip() + "…"
    first = rec.citations[0] if rec.citations else None
    citations = list(
        dict.fromkeys(
            c.url
            for c in (*rec.citations, *[x for e in rec.escalations for x in e.citations])
            if c.url
        )
    )
    return {
        "uuid": card_id,
        "summary": summary,
        "indicator": indicator,
        "detail": card_detail(rec, findings),
        "source": {
            "label": f"PCE Assistant decision table {rec.rules_version}"
            + (f"; {first.title[:60]}" if first else ""),
            **({"url": first.url} if first and first.url else {}),
        },
        "overrideReasons": OVERRIDE_REASONS,
        "links": [
            {"label": f"Source {i}", "url": u, "type": "absolute"}
            for i, u in enumerate(citations, start=1)
        ],
    }


def register(app: FastAPI, assistant: Assistant, auth: list[Any]) -> None:
    @app.get("/cds-services", tags=["cds-hooks"])
    def services() -> dict[str, Any]:
        return discovery()

    @app.post(f"/cds-services/{SERVICE_ID}", dependencies=auth, tags=["cds-hooks"])
    def service(body: HookRequest) -> dict[str, Any]:
        explicit: dict[str, Any] = {}
        for source in (
            (body.prefetch or {}).get("observations"),
            body.context.get("observations"),
        ):
            explicit |= findings_from_observations(source)
        context_findings = body.context.get("findings") or {}
        if not isinstance(context_findings, Mapping):
            raise InputError("context.findings must be an object", field="context.findings")
        explicit |= dict(context_findings)
        if not explicit:
            return {"cards": []}  # nothing to decide on: a silent service, per the spec
        findings, rec, event_id = assistant.recommend_from(
            explicit, user=body.context.get("userId"), surface="cds"
        )
        # The card uuid is the audit event id, so feedback on the card joins its record.
        return {"cards": [make_card(rec, findings, event_id)]}

    @app.post(f"/cds-services/{SERVICE_ID}/feedback", dependencies=auth, tags=["cds-hooks"])
    def feedback(body: FeedbackRequest) -> dict[str, Any]:
        recorded = 0
        for item in body.feedback:
            reason = item.overrideReason
            display = (reason.reason or {}).get("display") if reason and reason.reason else None
            comment = " — ".join(x for x in (display, reason.userComment if reason else None) if x)
            if assistant.record_feedback(item.card, item.outcome, comment or None, surface="cds"):
                recorded += 1
        if recorded == 0 and body.feedback:
            raise HTTPException(status_code=503, detail="Feedback could not be recorded.")
        return {"recorded": recorded}
