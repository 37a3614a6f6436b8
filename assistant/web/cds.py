"""CDS Hooks 2.0: discovery, the PCE management service (patient-view), and card feedback.

Findings come from the patient's FHIR R4 record: the chest imaging ``DiagnosticReport``s (read by
the same extractor as chat text), LOINC vital-sign ``Observation``s and the vertebroplasty or
kyphoplasty ``Procedure``, prefetched by the EHR under ``reports``, ``vitals`` and ``procedures``
or, where the EHR sends none, queried from its ``fhirServer`` (allow-listed servers only).
``context.findings`` (this service's extension) may state findings as data; they win.

One card, when the record states a finding about PCE: the tier's indicator (info: surveillance or
needs information; warning: anticoagulation; critical: surgical embolectomy or any escalation),
the basis with every finding traced to its resource, span and date, what was skipped and why, the
cited sources, and a link that opens the web UI with the findings filled in.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from assistant import present
from assistant.clinical.findings import resolve_findings
from assistant.types import ExplicitFindings, FindingName, Findings, Recommendation
from assistant.web.fhir.client import FhirFetchError, fetch, is_allowed, query_for
from assistant.web.fhir.codes import EhrCodes, load_ehr_codes
from assistant.web.fhir.record import Reading, iso, read_record
from assistant.web.fhir.resources import Intake, read_bundle, read_prefetch

if TYPE_CHECKING:
    from assistant.assistant import Assistant

SERVICE_ID = "pce-management"
FINDING_SYSTEM = "https://pce-assistant.example/findings"
SUMMARY_MAX = 139  # CDS Hooks: "<140 characters"
INDICATOR = {
    "surveillance": "info",
    "needs_information": "info",
    "anticoagulation": "warning",
    "surgical_embolectomy": "critical",
}
OVERRIDE_SYSTEM = FINDING_SYSTEM + "/override"
OVERRIDE_REASONS = [
    ("findings-incorrect", "Findings used are incorrect"),
    ("clinical-judgement", "Different management by clinical judgement"),
    ("specialist-advice", "Following specialist advice"),
]
# The findings the web UI reads from its query string (the link card's URL contract).
PREFILL: tuple[FindingName, ...] = (
    "symptomatic", "location", "hemodynamic_instability", "intracardiac_cement",
)  # fmt: skip
Clock = Callable[[], datetime]


# --- the wire format (CDS Hooks 2.0), typed for OpenAPI ------------------------------------------


class Coding(BaseModel):
    model_config = ConfigDict(extra="allow")

    system: str | None = None
    code: str | None = None
    display: str | None = None


class FhirAuthorization(BaseModel):
    model_config = ConfigDict(extra="allow")

    access_token: str = Field(description="Bearer token for fhirServer; never logged.")
    token_type: str = "Bearer"
    expires_in: int | None = Field(default=None, strict=True)
    scope: str | None = None
    subject: str | None = None


class HookContext(BaseModel):
    """patient-view context; ``findings`` is this service's extension (findings as data)."""

    model_config = ConfigDict(extra="allow")

    userId: str | None = None  # noqa: N815 - CDS Hooks field names
    patientId: str | None = None  # noqa: N815
    encounterId: str | None = None  # noqa: N815
    findings: ExplicitFindings | None = Field(
        default=None, description="Findings stated as data; they win over the record."
    )


class HookRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    hook: str = Field(min_length=1, description="'patient-view'.")
    hookInstance: str = Field(min_length=1, max_length=200)  # noqa: N815
    fhirServer: str | None = Field(default=None, max_length=2000)  # noqa: N815
    fhirAuthorization: FhirAuthorization | None = None  # noqa: N815
    context: HookContext = Field(default_factory=HookContext)
    prefetch: dict[str, Any] | None = Field(
        default=None,
        description="FHIR Bundles under the keys the discovery declares: reports, vitals, "
        "procedures. Absent or null keys are queried from fhirServer, if allowed.",
    )


class CardSource(BaseModel):
    label: str
    url: str | None = None
    topic: Coding | None = None


class Link(BaseModel):
    label: str
    url: str
    type: Literal["absolute", "smart"]
    appContext: str | None = None  # noqa: N815


class Suggestion(BaseModel):
    model_config = ConfigDict(extra="allow")

    label: str
    uuid: str | None = None
    isRecommended: bool | None = None  # noqa: N815


class Card(BaseModel):
    uuid: str = Field(description="The audit event id; feedback names the card by it.")
    summary: str = Field(min_length=1, max_length=SUMMARY_MAX)
    detail: str = Field(description="GitHub-flavoured Markdown.")
    indicator: Literal["info", "warning", "critical"]
    source: CardSource
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None  # noqa: N815
    overrideReasons: list[Coding] | None = None  # noqa: N815
    links: list[Link] | None = None

    @model_validator(mode="after")
    def _selection(self) -> Card:
        if self.suggestions and self.selectionBehavior is None:
            raise ValueError("selectionBehavior is required when a card has suggestions")
        return self


class CdsResponse(BaseModel):
    cards: list[Card]


class ServiceInfo(BaseModel):
    hook: str
    id: str
    title: str
    description: str
    prefetch: dict[str, str]
    usageRequirements: str | None = None  # noqa: N815


class Discovery(BaseModel):
    services: list[ServiceInfo]


class OverrideReason(BaseModel):
    model_config = ConfigDict(extra="allow")

    reason: Coding | None = None
    userComment: str | None = Field(default=None, max_length=4000)  # noqa: N815


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    card: str = Field(min_length=1, max_length=200)
    outcome: Literal["accepted", "overridden"]
    overrideReason: OverrideReason | None = None  # noqa: N815
    outcomeTimestamp: str | None = None  # noqa: N815


class CdsFeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feedback: list[FeedbackItem] = Field(min_length=1, max_length=100)


class FeedbackRecorded(BaseModel):
    recorded: int = Field(description="How many feedback items were written to the audit trail.")


# --- discovery -----------------------------------------------------------------------------------


def prefetch_templates(codes: EhrCodes) -> dict[str, str]:
    """The three FHIR queries (the EHR fills in the patient); the service applies the window."""
    loinc = codes.systems.loinc
    vitals = ",".join(f"{loinc}|{code}" for code in codes.vital_codes())
    patient = "{{context.patientId}}"
    return {
        "reports": f"DiagnosticReport?patient={patient}"
        f"&category={loinc}|{codes.imaging.category.code}&_sort=-date&_count=20",
        "vitals": f"Observation?patient={patient}&code={vitals}&_sort=-date&_count=100",
        "procedures": f"Procedure?patient={patient}&_sort=-date&_count=20",
    }


def discovery(codes: EhrCodes) -> Discovery:
    return Discovery(
        services=[
            ServiceInfo(
                hook="patient-view",
                id=SERVICE_ID,
                title="Pulmonary cement embolism management",
                description="Management tier for pulmonary cement embolism after vertebroplasty "
                "or kyphoplasty from a cited decision table, read from the patient's chest "
                "imaging reports, vital signs and procedure; every finding is traced to its "
                "resource.",
                prefetch=prefetch_templates(codes),
                usageRequirements="Prefetch `reports`, `vitals` and `procedures` (FHIR R4 "
                "searchset Bundles), or send fhirServer and fhirAuthorization for an allow-listed "
                "server. Optional: context.findings {symptomatic, location, "
                "hemodynamic_instability, intracardiac_cement} states findings as data.",
            )
        ]
    )


# --- the card ------------------------------------------------------------------------------------


def _value(raw: object) -> str:
    """A finding as the UI's query string spells it."""
    if raw is None:
        return "unknown"
    return "yes" if raw is True else "no" if raw is False else str(raw)


def record_view(record: Reading | None, notes: Sequence[str] = ()) -> present.RecordView:
    """What the service read from the record, as data for the presentation layer."""
    if record is None:
        return present.RecordView(notes=tuple(notes))
    p = record.procedure
    return present.RecordView(
        procedure=present.ProcedureView(
            name=p.name, resource=p.resource, when=p.when, days_since=p.days_since
        )
        if p is not None
        else None,
        reports=tuple(
            present.ReportView(resource=r.resource, title=r.title, when=r.when)
            for r in record.reports
        ),
        vitals=tuple(
            present.VitalView(
                description=v.describe(),
                resource=v.resource,
                when=iso(v.when),
                threshold="none" if v.rule is None else "met" if v.fires else "within",
                convention=v.rule.convention if v.rule is not None else None,
            )
            for v in record.vitals
        ),
        notes=tuple(notes),
    )


def ui_link(base: str, findings: Findings, text: present.Presentation | None = None) -> str:
    """The web UI with this case filled in (the query-parameter contract of the UI)."""
    conflicted = {c.finding for c in findings.conflicts}
    params = {"question": present.cds_link_question(findings, text)} | {
        name: "unknown" if name in conflicted else _value(getattr(findings, name))
        for name in PREFILL
    }
    return f"{base.rstrip('/')}/?{urlencode(params)}"


def make_card(
    rec: Recommendation,
    findings: Findings,
    card_id: str,
    *,
    ui_base: str | None = None,
    notes: Sequence[str] = (),
    record: Reading | None = None,
    text: present.Presentation | None = None,
) -> Card:
    critical = rec.tier == "surgical_embolectomy" or bool(rec.escalations)
    read = record_view(record, notes)
    summary = present.cds_summary(rec, findings, text, read)
    if len(summary) > SUMMARY_MAX:
        summary = summary[: SUMMARY_MAX - 1].rstrip() + "…"
    first = rec.citations[0] if rec.citations else None
    # Only absolute http(s) source pages become links, as in the detail.
    cited = (*rec.citations, *(x for e in rec.escalations for x in e.citations))
    sources = dict.fromkeys(u for c in cited if (u := present.safe_url(c.url)))
    links = [Link(label="Open in PCE Assistant (findings filled in)",
                  url=ui_link(ui_base, findings, text), type="absolute")] if ui_base else []
    links += [Link(label=f"Source {i}", url=u, type="absolute") for i, u in enumerate(sources, 1)]
    return Card(
        uuid=card_id,
        summary=summary,
        indicator="critical" if critical else INDICATOR[rec.tier],  # type: ignore[arg-type]
        detail=present.cds_detail(rec, findings, text, read),
        source=CardSource(
            label=f"PCE Assistant decision table {rec.rules_version}"
            + (f"; {first.title[:60]}" if first else ""),
            url=present.safe_url(first.url) if first else None,
            topic=Coding(system=FINDING_SYSTEM + "/tier", code=rec.tier, display=rec.label),
        ),
        overrideReasons=[
            Coding(system=OVERRIDE_SYSTEM, code=code, display=display)
            for code, display in OVERRIDE_REASONS
        ],
        links=links,
    )


def unread_card(problem: str) -> Card:
    """The EHR's FHIR server could not be read: say so, and decide nothing."""
    return Card(
        uuid=uuid.uuid4().hex,
        summary="PCE Assistant could not read the patient's record from the EHR; no "
        "recommendation.",
        indicator="warning",
        detail=present.cds_unread_detail(problem),
        source=CardSource(label="PCE Assistant"),
    )


# --- reading the request -------------------------------------------------------------------------


def _missing_note(key: str, why: str) -> str:
    what = {"reports": "imaging reports", "vitals": "vital signs", "procedures": "procedures"}
    return f"No `{key}` ({what[key]}) in the request: {why}."


def gather(
    body: HookRequest, templates: dict[str, str], allowed: Sequence[str], timeout_s: float
) -> Intake:
    """The prefetch, completed from the FHIR server where allowed; raises FhirFetchError."""
    intake = read_prefetch(body.prefetch or {})
    missing, intake.missing = intake.missing, []
    if not missing:
        return intake
    server, patient = body.fhirServer, body.context.patientId
    if not server:
        intake.notes += [_missing_note(k, "no fhirServer to query either") for k in missing]
    elif not is_allowed(server, allowed):
        intake.notes += [
            _missing_note(k, "this service is not set up to query that fhirServer "
                             "(PCE_FHIR_SERVERS)")
            for k in missing
        ]
    elif not patient:
        intake.notes += [_missing_note(k, "no context.patientId to query by") for k in missing]
    else:
        token = body.fhirAuthorization.access_token if body.fhirAuthorization else None
        fetched = fetch(
            server,
            {k: query_for(templates[k], patient) for k in missing},
            token=token,
            timeout_s=timeout_s,
        )
        for key, payload in fetched.items():
            read_bundle(key, payload, intake)
    return intake


def _with_explicit(
    findings: Findings, stated: ExplicitFindings | None, assistant: Assistant
) -> Findings:
    """context.findings win, finding by finding, over what the record says; what the record
    said otherwise is kept as overridden (as ``resolve_findings`` does for the findings panel)."""
    if stated is None or stated.is_empty():
        return findings
    form = resolve_findings("", assistant.lexicon, explicit=stated)
    names = set(stated.stated())
    values = {n: getattr(form, n) for n in names}
    if "location" in names:
        values["unclear_location"] = None
    said = (
        *findings.evidence,
        *findings.overridden,
        *(e for c in findings.conflicts for e in c.evidence),
    )
    shown = {n: {e.value for e in form.evidence if e.finding == n} for n in names}
    superseded = [e for e in said if e.finding in names and e.value not in shown[e.finding]]
    return findings.model_copy(
        update={
            **values,
            "evidence": (
                *(e for e in findings.evidence if e.finding not in names),
                *(e for e in form.evidence if e.finding in names),
            ),
            "conflicts": tuple(c for c in findings.conflicts if c.finding not in names),
            "overridden": tuple(
                dict.fromkeys(
                    [*(e for e in findings.overridden if e.finding not in names), *superseded]
                )
            ),
        }
    )


def register(
    app: FastAPI,
    assistant: Assistant,
    auth: list[Any],
    *,
    errors: dict[int | str, dict[str, Any]],
    clock: Clock | None = None,
) -> None:
    settings = assistant.settings
    codes = load_ehr_codes(settings.knowledge_dir / "ehr_codes.yaml", assistant.lexicon)
    templates = prefetch_templates(codes)
    now = clock or (lambda: datetime.now(UTC))
    window = timedelta(hours=settings.vitals_window_hours)
    services = discovery(codes)
    text = present.presentation_for(settings.knowledge_dir)

    @app.get(
        "/cds-services", tags=["cds-hooks"], response_model=Discovery,
        response_model_exclude_none=True, operation_id="cdsDiscovery", responses=errors,
    )  # fmt: skip
    def cds_discovery() -> Discovery:
        return services

    @app.post(
        f"/cds-services/{SERVICE_ID}", dependencies=auth, tags=["cds-hooks"],
        response_model=CdsResponse, response_model_exclude_none=True,
        operation_id="cdsPceManagement", responses=errors,
    )  # fmt: skip
    def cds_service(body: HookRequest, request: Request) -> CdsResponse:
        try:
            intake = gather(body, templates, settings.fhir_servers, settings.fhir_timeout_s)
        except FhirFetchError as exc:
            return CdsResponse(cards=[unread_card(str(exc))])
        reading = read_record(intake, assistant.lexicon, codes, now=now(), window=window)
        stated = body.context.findings
        findings = _with_explicit(reading.findings, stated, assistant)
        about_pce = reading.imaging_finding or reading.procedure is not None or (
            stated is not None and not stated.is_empty()
        )
        if not (findings.has_clinical_finding() and about_pce):
            return CdsResponse(cards=[])  # nothing to decide on: a silent service, per the spec
        rec, event_id = assistant.recommend_findings(
            findings, user=body.context.userId, surface="cds"
        )
        # The card uuid is the audit event id, so feedback on the card joins its record.
        base = settings.public_url or str(request.base_url)
        card = make_card(
            rec, findings, event_id, ui_base=base, notes=reading.notes, record=reading, text=text
        )
        return CdsResponse(cards=[card])

    @app.post(
        f"/cds-services/{SERVICE_ID}/feedback", dependencies=auth, tags=["cds-hooks"],
        response_model=FeedbackRecorded, operation_id="cdsFeedback", responses=errors,
    )  # fmt: skip
    def cds_feedback(body: CdsFeedbackRequest) -> FeedbackRecorded:
        recorded = 0
        for item in body.feedback:
            reason = item.overrideReason
            coded = reason.reason if reason else None
            why = ": ".join(x for x in (coded.code, coded.display) if x) if coded else None
            comment = " — ".join(x for x in (why, reason.userComment if reason else None) if x)
            if assistant.record_feedback(item.card, item.outcome, comment or None, surface="cds"):
                recorded += 1
        if recorded == 0:
            raise HTTPException(status_code=503, detail="Feedback could not be recorded.")
        return FeedbackRecorded(recorded=recorded)
