"""The CDS Hooks card's view: the recommendation card plus what the EHR record held.

The CDS service (``web/cds.py``) reads the patient's FHIR record; it hands this layer what it read
as plain data (``RecordView``: the procedure, the reports and vital signs read, the notes on what
was skipped), and ``cds_view`` builds everything the card's detail shows: each finding traced to
its resource, span and date, the inputs the table filled in, the data read with the tool's
thresholds, the conventions of the vitals that met them, and the sources, each passage once.
A statement a later one (or a later report) superseded is shown under its finding with its own
resource and date.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from assistant.present.text import PANEL_FIELDS, Presentation
from assistant.present.view import (
    CardView,
    CitationView,
    DerivedView,
    EvidenceView,
    OverriddenView,
    View,
    all_citations,
    card_view,
    evidence_view,
)
from assistant.types import Evidence, Findings, Recommendation

Threshold = Literal["none", "met", "within"]


class ProcedureView(View):
    """The vertebroplasty or kyphoplasty the record holds."""

    name: str
    resource: str
    when: str | None = None  # ISO 8601
    days_since: int | None = None


class ReportView(View):
    """A chest imaging report that was read."""

    resource: str
    title: str
    when: str | None = None


class VitalView(View):
    """The latest fresh value of one vital sign, and how the tool's threshold judged it."""

    description: str  # "SpO2 86 % (LOINC 59408-5)"
    resource: str
    when: str | None = None
    threshold: Threshold  # no threshold in this tool; met; within (asserts nothing)
    convention: str | None = None  # the lexicon's note on that threshold (a tool convention)


class RecordView(View):
    """What the service read from the record besides the findings, and what it skipped."""

    procedure: ProcedureView | None = None
    reports: tuple[ReportView, ...] = ()
    vitals: tuple[VitalView, ...] = ()
    notes: tuple[str, ...] = ()


class CdsFinding(View):
    """One finding of the basis: its value and every place it was read (or what filled it in)."""

    name: str
    value: str | None  # None: not stated; "yes", "central", "unclear (lobar)"
    conflict: bool = False
    evidence: tuple[EvidenceView, ...] = ()  # one per span and resource
    overridden: tuple[OverriddenView, ...] = ()  # what a later statement or report superseded
    derived: DerivedView | None = None


class CdsView(View):
    card: CardView
    findings: tuple[CdsFinding, ...]
    record: RecordView
    conventions: tuple[str, ...]  # of the vitals that met the tool's threshold
    citations: tuple[CitationView, ...]


def _distinct(evidence: Sequence[EvidenceView]) -> tuple[EvidenceView, ...]:
    """One entry per value, span and resource (a conclusion and its report text repeat)."""
    kept: dict[tuple[str, str, str | None], EvidenceView] = {}
    for e in evidence:
        kept.setdefault((e.value, e.text.casefold(), e.resource), e)
    return tuple(kept.values())


def _views(evidence: Sequence[Evidence]) -> tuple[EvidenceView, ...]:
    return _distinct([evidence_view(e) for e in evidence])


def _distinct_overridden(items: Sequence[OverriddenView]) -> tuple[OverriddenView, ...]:
    kept: dict[tuple[str, str, str | None], OverriddenView] = {}
    for o in items:
        kept.setdefault((o.evidence.value, o.evidence.text.casefold(), o.evidence.resource), o)
    return tuple(kept.values())


def _value(raw: object) -> str:
    return "yes" if raw is True else "no" if raw is False else str(raw)


def _finding(
    name: str,
    findings: Findings,
    derived: Sequence[DerivedView],
    overridden: Sequence[OverriddenView],
) -> CdsFinding:
    superseded = _distinct_overridden([o for o in overridden if o.evidence.finding == name])
    conflicts = [c for c in findings.conflicts if c.finding == name]
    if conflicts:
        spans = [e for c in conflicts for e in c.evidence]
        return CdsFinding(
            name=name,
            value="conflict",
            conflict=True,
            evidence=_views(spans),
            overridden=superseded,
        )
    raw = getattr(findings, name)
    if name == "location" and findings.unclear_location:
        raw = f"unclear ({findings.unclear_location})"
    if raw is None and name in findings.open_findings():
        # Mentioned without being settled ('possible', 'not assessed'): shown, and asked about.
        raw = " / ".join(dict.fromkeys(e.value for e in findings.evidence if e.finding == name))
    evidence = _views([e for e in findings.evidence if e.finding == name])
    if raw is None or not evidence:
        filled = next((d for d in derived if d.input == name), None)
        if filled is not None:
            filled = filled.model_copy(update={"evidence": _distinct(filled.evidence)})
        return CdsFinding(name=name, value=None, derived=filled, overridden=superseded)
    return CdsFinding(name=name, value=_value(raw), evidence=evidence, overridden=superseded)


def cds_view(
    rec: Recommendation,
    findings: Findings,
    text: Presentation,
    record: RecordView | None = None,
) -> CdsView:
    card = card_view(rec, findings, text)
    record = record or RecordView()
    conventions = sorted(
        {v.convention for v in record.vitals if v.threshold == "met" and v.convention}
    )
    return CdsView(
        card=card,
        findings=tuple(
            _finding(n, findings, card.derived, card.overridden)
            for n in (*PANEL_FIELDS, "procedure")
        ),
        record=record,
        conventions=tuple(conventions),
        citations=tuple(all_citations(card)),
    )
