"""The patient's record -> Findings, every value traced to the resource (and span) it came from.

- Radiology reports (chest imaging, final/amended/corrected) go through the SAME extractor as chat
  text: conclusion first, then each text/plain ``presentedForm`` (plain or base64). Several reports
  are read like a conversation, oldest first: the latest report that speaks about a finding wins
  (findings conventions, "Time"), with the extractor's own rules for central emboli.
- Vital signs: per vital, the latest value within the window, with its UCUM unit checked, judged
  by the lexicon's numeric rule (a documented tool convention; no threshold lives here). A value
  that meets a rule is a measured finding, as 'SpO2 86 %' is in text: it supports "yes", and an
  asserted "asymptomatic" of the reports against it is a conflict (ask), never a silent choice.
- The procedure from its CPT code (SNOMED CT only where confirmed) or its text, with the days since.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.procedure import Procedure

from assistant.clinical.findings import extract_findings, resolve_findings
from assistant.clinical.lexicon import Lexicon, NumericRule
from assistant.types import Conflict, Evidence, FindingName, Findings
from assistant.web.fhir.codes import EhrCodes, Vital
from assistant.web.fhir.resources import Intake

__all__ = ["ProcedureSeen", "Reading", "ReportSeen", "VitalSeen", "iso", "read_record"]

# A vital timed a little after "now" is clock skew between the EHR and this server, not the future.
CLOCK_SKEW = timedelta(minutes=5)
YES_NO: tuple[FindingName, ...] = ("symptomatic", "hemodynamic_instability")


@dataclass(frozen=True)
class VitalSeen:
    """The latest fresh value of one vital sign, whether or not it met its rule."""

    vital: Vital
    value: Decimal
    code: str
    resource: str
    when: datetime
    rule: NumericRule | None
    fires: bool

    def describe(self) -> str:
        return f"{self.vital.short} {_number(self.value)} {self.vital.ucum} (LOINC {self.code})"


@dataclass(frozen=True)
class ReportSeen:
    resource: str
    title: str
    when: str | None


@dataclass(frozen=True)
class ProcedureSeen:
    name: str
    resource: str
    when: str | None
    days_since: int | None
    evidence: Evidence


@dataclass
class Reading:
    findings: Findings
    notes: list[str] = field(default_factory=list)
    reports: list[ReportSeen] = field(default_factory=list)  # newest first
    vitals: list[VitalSeen] = field(default_factory=list)
    procedure: ProcedureSeen | None = None

    @property
    def imaging_finding(self) -> bool:
        """Did any report state pulmonary or cardiac cement (or a site to ask about)?"""
        f = self.findings
        from_report = any(
            e.resource and e.resource.startswith("DiagnosticReport/")
            for e in f.evidence
            if e.finding in ("location", "intracardiac_cement")
        )
        return from_report or f.unclear_location is not None or any(
            c.finding == "location" for c in f.conflicts
        )


# --- small readers -------------------------------------------------------------------------------


def _number(value: Decimal) -> str:
    return format(value.normalize(), "f") if value == value.to_integral() else str(value)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _instant(*candidates: Any) -> datetime | date | None:
    """The first usable time among FHIR dateTime, instant and Period values (a Period: its end,
    else its start)."""
    for value in candidates:
        if value is None:
            continue
        if hasattr(value, "start") or hasattr(value, "end"):  # a Period
            value = getattr(value, "end", None) or getattr(value, "start", None)
            if value is None:
                continue
        if isinstance(value, datetime):
            return _aware(value)
        if isinstance(value, date):
            return value
    return None


def iso(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat()


def _name(resource: Any) -> str:
    return f"{resource.get_resource_type()}/{resource.id or '(no id)'}"


def _codings(concept: Any) -> list[Any]:
    return list(getattr(concept, "coding", None) or []) if concept is not None else []


def _concept_texts(concept: Any) -> list[str]:
    texts = [getattr(concept, "text", None)] + [c.display for c in _codings(concept)]
    return [t for t in texts if isinstance(t, str) and t.strip()]


# --- reports -------------------------------------------------------------------------------------


def _attachment_text(attachment: Any) -> str | None:
    media, _, params = (attachment.contentType or "").partition(";")
    if media.strip().lower() != "text/plain" or attachment.data is None:
        return None  # a PDF, or a URL only: not fetched
    charset = "utf-8"
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    raw = attachment.data if isinstance(attachment.data, bytes) else str(attachment.data).encode()
    try:
        return raw.decode(charset, errors="replace")
    except LookupError:  # an unknown charset name
        return raw.decode("utf-8", errors="replace")


def report_text(report: DiagnosticReport) -> str:
    """Conclusion first, then the text of each text/plain presentedForm, in order."""
    parts = [report.conclusion] if report.conclusion and report.conclusion.strip() else []
    parts += [t for t in map(_attachment_text, report.presentedForm or []) if t and t.strip()]
    return "\n\n".join(parts)


def _is_chest_imaging(report: DiagnosticReport, codes: EhrCodes) -> bool:
    known = {c.code for c in codes.imaging.codes}
    if any(c.system == codes.systems.loinc and c.code in known for c in _codings(report.code)):
        return True
    return any(codes.imaging.text.search(t) for t in _concept_texts(report.code))


def _report_date(report: DiagnosticReport) -> datetime | date | None:
    return _instant(report.effectiveDateTime, report.effectivePeriod, report.issued)


def _sort_key(when: datetime | date | None) -> datetime:
    if isinstance(when, datetime):
        return when
    if isinstance(when, date):
        return datetime(when.year, when.month, when.day, tzinfo=UTC)
    return datetime.min.replace(tzinfo=UTC)


def _read_reports(
    reports: Sequence[DiagnosticReport], codes: EhrCodes, lexicon: Lexicon, reading: Reading
) -> Findings:
    allowed = codes.statuses["DiagnosticReport"]
    chosen: list[tuple[DiagnosticReport, str, datetime | date | None]] = []
    other: list[str] = []
    for report in reports:
        name = _name(report)
        if not _is_chest_imaging(report, codes):
            other.append(name)  # an MR spine or an ultrasound: not where PCE is reported
            continue
        if report.status not in allowed:
            reading.notes.append(f"{name}: status {report.status}; not read (only final reports).")
            continue
        text = report_text(report)
        if not text:
            reading.notes.append(f"{name}: no conclusion or plain-text report to read.")
            continue
        chosen.append((report, text, _report_date(report)))
    if other:
        reading.notes.append("Not chest imaging, not read: " + ", ".join(other) + ".")
    chosen.sort(key=lambda item: _sort_key(item[2]))  # oldest first, as a conversation
    for report, _, when in reversed(chosen):
        title = (_concept_texts(report.code) or ["report"])[0]
        reading.reports.append(ReportSeen(_name(report), title, iso(when)))
    if not chosen:
        return Findings()
    *older, newest = chosen
    merged = resolve_findings(newest[1], lexicon, history=[text for _, text, _ in older])

    def trace(e: Evidence) -> Evidence:
        report, _, when = newest if e.origin == "text" else older[e.turn or 0]
        return e.model_copy(
            update={"origin": "text", "turn": None, "resource": _name(report),
                    "resource_date": iso(when)}
        )

    return merged.model_copy(
        update={
            "evidence": tuple(map(trace, merged.evidence)),
            "conflicts": tuple(
                c.model_copy(update={"evidence": tuple(map(trace, c.evidence))})
                for c in merged.conflicts
            ),
            # What a later statement (or a later report) superseded, traced like the rest.
            "overridden": tuple(map(trace, merged.overridden)),
            "asks_management": False,
        }
    )


# --- vital signs ---------------------------------------------------------------------------------


def _quantities(obs: Observation) -> Iterator[tuple[str, str, Any]]:
    """(system, code, Quantity or None) of the Observation itself and of each component."""
    for coding in _codings(obs.code):
        yield coding.system or "", coding.code or "", obs.valueQuantity
    for component in obs.component or []:
        for coding in _codings(component.code):
            yield coding.system or "", coding.code or "", component.valueQuantity


def _read_vitals(
    observations: Sequence[Observation],
    codes: EhrCodes,
    lexicon: Lexicon,
    now: datetime,
    window: timedelta,
    reading: Reading,
) -> None:
    allowed = codes.statuses["Observation"]
    latest: dict[str, VitalSeen] = {}
    stale: list[str] = []
    for obs in observations:
        name = _name(obs)
        found = [
            (vital, code, quantity)
            for system, code, quantity in _quantities(obs)
            if system == codes.systems.loinc and (vital := codes.vital_for(code)) is not None
        ]
        if not found:
            continue  # a panel that only groups members, or another kind of Observation
        if obs.status not in allowed:
            reading.notes.append(f"{name}: status {obs.status}; not read.")
            continue
        when = _instant(obs.effectiveDateTime, obs.effectivePeriod, obs.effectiveInstant)
        if not isinstance(when, datetime):
            reading.notes.append(
                f"{name}: no time of measurement (date only or none); not read, since the window "
                "is in hours."
            )
            continue
        if when < now - window:
            stale.append(name)
            continue
        if when > now + CLOCK_SKEW:
            reading.notes.append(f"{name}: measured after now ({iso(when)}); not read.")
            continue
        for vital, code, quantity in found:
            if quantity is None or quantity.value is None:
                reading.notes.append(f"{name}: {vital.name} has no numeric value; not read.")
                continue
            if quantity.system != codes.systems.ucum or quantity.code != vital.ucum:
                got = quantity.code or quantity.unit or "no unit"
                reading.notes.append(
                    f"{name}: {vital.name} unit is '{got}', not the UCUM unit '{vital.ucum}'; "
                    "ignored."
                )
                continue
            rule = codes.rule(vital, lexicon)
            value = Decimal(quantity.value)
            if rule is not None and not rule.plausible[0] <= float(value) <= rule.plausible[1]:
                reading.notes.append(
                    f"{name}: {vital.name} {_number(value)} {vital.ucum} is outside the plausible "
                    "range; ignored."
                )
                continue
            seen = VitalSeen(
                vital, value, code, name, when, rule, rule is not None and rule.fires(float(value))
            )
            if vital.name not in latest or when > latest[vital.name].when:
                latest[vital.name] = seen
    if stale:
        hours = window.total_seconds() / 3600
        reading.notes.append(
            f"Stale vital signs (older than {_number(Decimal(str(hours)))} h) ignored: "
            + ", ".join(stale) + "."
        )
    reading.vitals = sorted(latest.values(), key=lambda v: [x.name for x in codes.vitals].index(
        v.vital.name))


def _measured_evidence(vitals: Iterable[VitalSeen]) -> list[Evidence]:
    return [
        Evidence(
            finding=v.rule.finding,
            value="yes",
            text=v.describe(),
            origin="ehr",
            resource=v.resource,
            resource_date=iso(v.when),
        )
        for v in vitals
        if v.fires and v.rule is not None
    ]


def _firm_no(e: Evidence) -> bool:
    """An asserted 'asymptomatic' / 'haemodynamically stable', not a negated single symptom."""
    return e.value == "no" and not e.negated


def _combine(text: Findings, measured: Sequence[Evidence]) -> Findings:
    """Add measured values to the reports' findings with the extractor's own decision rule."""
    values: dict[str, Any] = {name: getattr(text, name) for name in YES_NO}
    evidence = list(text.evidence)
    conflicts = list(text.conflicts)
    for name in YES_NO:
        yes = [e for e in measured if e.finding == name]
        if not yes:
            continue
        if any(c.finding == name for c in conflicts):  # still a conflict; show the value too
            conflicts = [
                c.model_copy(update={"evidence": (*c.evidence, *yes)}) if c.finding == name else c
                for c in conflicts
            ]
            continue
        firm = [e for e in evidence if e.finding == name and _firm_no(e)]
        if firm:
            values[name] = None
            evidence = [e for e in evidence if e.finding != name]
            conflicts.append(Conflict(finding=name, evidence=(*firm, *yes)))
        else:  # a negated single symptom ('no chest pain') does not stand against a measurement
            values[name] = True
            evidence = [e for e in evidence if e.finding != name or e.value == "yes"] + yes
    return text.model_copy(
        update={**values, "evidence": tuple(evidence), "conflicts": tuple(conflicts)}
    )


# --- the procedure -------------------------------------------------------------------------------


def _performed(procedure: Procedure) -> datetime | date | None:
    period = procedure.performedPeriod
    if period is not None:
        return _instant(period.start, period.end)
    return _instant(procedure.performedDateTime)


def _days_since(when: datetime | date | None, now: datetime) -> int | None:
    if isinstance(when, datetime):
        return math.floor((now - when) / timedelta(days=1))
    if isinstance(when, date):
        return (now.date() - when).days
    return None


def _recognise(procedure: Procedure, codes: EhrCodes, lexicon: Lexicon) -> tuple[str, str] | None:
    """(procedure name, how it was recognised: 'CPT 22511 "..."', 'code text "..."') or None."""
    routes = (("cpt", "CPT"), ("snomed", "SNOMED CT"))
    for coding in _codings(procedure.code):
        for key, label in routes:
            table = codes.procedures.by_system(key)
            if coding.system == getattr(codes.systems, key) and coding.code in table:
                shown = f' "{coding.display}"' if coding.display else ""
                return table[coding.code], f"{label} {coding.code}{shown}"
    labelled = {codes.systems.cpt: "CPT", codes.systems.snomed: "SNOMED CT"}
    candidates: list[tuple[str, str]] = []
    if procedure.code is not None and procedure.code.text:
        candidates.append((procedure.code.text, "code text"))
    for coding in _codings(procedure.code):
        if coding.display:
            system = labelled.get(coding.system or "", coding.system or "coding")
            candidates.append((coding.display, f"{system} {coding.code or ''} display".strip()))
    for text, where in candidates:
        name = extract_findings(text, lexicon).procedure
        if name:
            return name, f'{where} "{text}"'
    return None


def _read_procedures(
    procedures: Sequence[Procedure],
    codes: EhrCodes,
    lexicon: Lexicon,
    now: datetime,
    reading: Reading,
) -> ProcedureSeen | None:
    allowed = codes.statuses["Procedure"]
    best: tuple[datetime, ProcedureSeen] | None = None
    for procedure in procedures:
        recognised = _recognise(procedure, codes, lexicon)
        if recognised is None:
            continue
        label, how = recognised
        name = _name(procedure)
        if procedure.status not in allowed:
            reading.notes.append(f"{name}: {label} with status {procedure.status}; not read.")
            continue
        when = _performed(procedure)
        seen = ProcedureSeen(
            name=label,
            resource=name,
            when=iso(when),
            days_since=_days_since(when, now),
            evidence=Evidence(
                finding="procedure",
                value=label,
                text=how,  # the route and the words: a structured resource, not a text span
                origin="ehr",
                resource=name,
                resource_date=iso(when),
            ),
        )
        if best is None or _sort_key(when) > best[0]:
            best = (_sort_key(when), seen)
    return best[1] if best else None


# --- the record ----------------------------------------------------------------------------------


def read_record(
    intake: Intake,
    lexicon: Lexicon,
    codes: EhrCodes,
    *,
    now: datetime,
    window: timedelta,
) -> Reading:
    """Everything the record says about PCE, with a note for everything skipped."""
    now = _aware(now)
    reading = Reading(findings=Findings(), notes=list(intake.notes))
    text = _read_reports(intake.reports, codes, lexicon, reading)
    _read_vitals(intake.observations, codes, lexicon, now, window, reading)
    # Unstable with symptoms not stated counts as symptomatic: the rules table derives that.
    findings = _combine(text, _measured_evidence(reading.vitals))
    reading.procedure = _read_procedures(intake.procedures, codes, lexicon, now, reading)
    if reading.procedure is not None:
        findings = findings.model_copy(
            update={
                "procedure": reading.procedure.name,
                "evidence": (
                    *(e for e in findings.evidence if e.finding != "procedure"),
                    reading.procedure.evidence,
                ),
            }
        )
    reading.findings = findings
    return reading
