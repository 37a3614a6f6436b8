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

from assistant.clinical.findings import resolve_findings
from assistant.present.render import md_text
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
    if raw is None:
        return "unknown"
    return "yes" if raw is True else "no" if raw is False else str(raw)


def _when(iso: str | None) -> str:
    if not iso:
        return ""
    return iso.replace("T", " ").replace("Z", " UTC").replace(":00 UTC", " UTC")


def _evidence_line(finding: str, value: str, e: Any) -> str:
    if e.origin == "explicit":
        where = "stated in context.findings"
    else:
        quoted = e.text if e.origin == "ehr" else f"“{e.text}”"
        place = " · ".join(x for x in (e.resource, _when(e.resource_date)) if x)
        where = md_text(quoted) + (f" — {md_text(place)}" if place else "")
    return f"- {finding} = **{md_text(value)}**: {where}"


def _distinct(evidence: Sequence[Any]) -> list[Any]:
    """One line per span and resource (a conclusion and its report text repeat each other)."""
    seen: set[tuple[str, str, str | None]] = set()
    kept = []
    for e in evidence:
        key = (e.value, e.text.casefold(), e.resource)
        if key not in seen:
            seen.add(key)
            kept.append(e)
    return kept


def _citation_link(c: Any) -> str:
    label = md_text(f"{c.title} ({c.year or 'n.d.'})")
    return f"[{label}]({c.url})" if c.url else label


def card_detail(
    rec: Recommendation,
    findings: Findings,
    notes: Sequence[str] = (),
    record: Reading | None = None,
) -> str:
    """The card's Markdown: tier, actions, escalations, what is missing, the basis (each finding
    with its resource, span and date), conventions, data notes, sources. The one renderer of the
    CDS detail; it reads only these inputs, so the presentation layer can take it over."""
    lines = [
        f"**{md_text(rec.label)}** (`{rec.tier}`; rule `{rec.rule_id}`; decision table "
        f"{md_text(rec.rules_version)})"
    ]
    if record is not None and record.procedure is not None:
        p = record.procedure
        days = "" if p.days_since is None else f"{p.days_since} day(s) before this card, "
        lines += ["", f"Procedure: {md_text(p.name)}, {days}{_when(p.when) or 'undated'} "
                      f"({md_text(p.resource)})."]
    lines += [""] + [f"- {md_text(a)}" for a in rec.actions]
    for esc in rec.escalations:
        lines += ["", f"**Escalation: {md_text(esc.label)}**"]
        lines += [f"- {md_text(a)}" for a in esc.actions]
    if rec.missing:
        lines += ["", "**Missing findings**"]
        lines += [
            f"- {md_text(m.question)} "
            + md_text("; ".join(f"if {k}: {v}" for k, v in m.outcomes.items()))
            for m in rec.missing
        ]
    lines += ["", "**Basis: each finding and where it was read**"]
    conflicted = {c.finding: c for c in findings.conflicts}
    for name in (*PREFILL, "procedure"):
        raw = getattr(findings, name)
        if name in conflicted:
            lines += [_evidence_line(name, f"conflict ({e.value})", e)
                      for e in _distinct(conflicted[name].evidence)]
            continue
        if name == "location" and findings.unclear_location:
            raw = f"unclear ({findings.unclear_location})"
        evidence = _distinct([e for e in findings.evidence if e.finding == name])
        if raw is None or not evidence:
            lines.append(f"- {name} = not stated in the record")
            continue
        lines += [_evidence_line(name, _value(raw) if name != "location" else str(raw), e)
                  for e in evidence]
    if record is not None and (record.reports or record.vitals):
        lines += ["", "**Data read**"]
        lines += [
            f"- {md_text(r.resource)}: {md_text(r.title)}, {_when(r.when) or 'undated'}"
            for r in record.reports
        ]
        lines += [
            f"- {md_text(v.describe())} — {md_text(v.resource)} · {_when(iso(v.when))}"
            + (" (no threshold in this tool)" if v.rule is None
               else " (meets the tool's threshold)" if v.fires
               else " (within the tool's threshold; asserts nothing)")
            for v in record.vitals
        ]
    conventions = sorted(
        {v.rule.convention for v in (record.vitals if record else []) if v.rule and v.fires}
    )
    if rec.caveats or conventions:
        lines += ["", "**Caveats**"] + [f"- {md_text(c)}" for c in (*rec.caveats, *conventions)]
    if notes:
        lines += ["", "**Data notes (skipped or missing)**"] + [f"- {md_text(n)}" for n in notes]
    citations = list(dict.fromkeys((*rec.citations, *(c for e in rec.escalations
                                                      for c in e.citations))))
    lines += ["", "**Sources**"] + [f"- {_citation_link(c)} — {md_text(c.section)}"
                                     for c in citations]
    lines += ["", "_Decision support only; it does not replace clinical judgement._"]
    return "\n".join(lines)


def ui_link(base: str, findings: Findings) -> str:
    """The web UI with this case filled in (the query-parameter contract of the UI)."""
    procedure = findings.procedure or "vertebroplasty or kyphoplasty"
    question = f"Pulmonary cement embolism after {procedure}: what management is recommended?"
    if findings.unclear_location:
        question += f" Emboli location reported as {findings.unclear_location}."
    conflicted = {c.finding for c in findings.conflicts}
    params = {"question": question} | {
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
) -> Card:
    critical = rec.tier == "surgical_embolectomy" or bool(rec.escalations)
    procedure = record.procedure if record else None
    head = "PCE"
    if procedure is not None:
        head += f" after {procedure.name}"
        if procedure.days_since is not None:
            head += f" (day {procedure.days_since})"
    summary = f"{head}: {rec.label}"
    if rec.escalations:
        summary += " + " + ", ".join(e.label for e in rec.escalations)
    if len(summary) > SUMMARY_MAX:
        summary = summary[: SUMMARY_MAX - 1].rstrip() + "…"
    first = rec.citations[0] if rec.citations else None
    sources = dict.fromkeys(
        c.url for c in (*rec.citations, *(x for e in rec.escalations for x in e.citations)) if c.url
    )
    links = [Link(label="Open in PCE Assistant (findings filled in)",
                  url=ui_link(ui_base, findings), type="absolute")] if ui_base else []
    links += [Link(label=f"Source {i}", url=u, type="absolute") for i, u in enumerate(sources, 1)]
    return Card(
        uuid=card_id,
        summary=summary,
        indicator="critical" if critical else INDICATOR[rec.tier],  # type: ignore[arg-type]
        detail=card_detail(rec, findings, notes, record),
        source=CardSource(
            label=f"PCE Assistant decision table {rec.rules_version}"
            + (f"; {first.title[:60]}" if first else ""),
            url=first.url if first and first.url else None,
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
        detail="The EHR sent no prefetch, and querying its FHIR server failed:\n\n"
        f"- {md_text(problem)}\n\nNo findings were read, so no management tier is given. "
        "Retry, or open PCE Assistant and enter the findings.",
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
    """context.findings win, finding by finding, over what the record says."""
    if stated is None or stated.is_empty():
        return findings
    form = resolve_findings("", assistant.lexicon, explicit=stated)
    names = set(stated.stated())
    values = {n: getattr(form, n) for n in names}
    if "location" in names:
        values["unclear_location"] = None
    return findings.model_copy(
        update={
            **values,
            "evidence": (
                *(e for e in findings.evidence if e.finding not in names),
                *(e for e in form.evidence if e.finding in names),
            ),
            "conflicts": tuple(c for c in findings.conflicts if c.finding not in names),
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
            rec, findings, event_id, ui_base=base, notes=reading.notes, record=reading
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
