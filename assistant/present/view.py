"""One view model of an answer, built from ``Answer`` (or a Recommendation and its Findings).

Every face renders these objects through the templates in ``templates/``; none reads the
``Answer`` again to decide what to show. They are frozen pydantic models, so ``model_dump()``
gives the same data as JSON. Links are built here, once, and only to http(s) DOI, PubMed or
source pages, so no text from a question or a passage can make a page fetch anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict

from assistant.present.text import PANEL_CHOICES, PANEL_FIELDS, TIER_INPUTS, Presentation
from assistant.types import (
    Answer,
    Certainty,
    Citation,
    Conflict,
    DerivedInput,
    Evidence,
    Findings,
    Origin,
    Recommendation,
    Versions,
)

CardSource = Literal["question", "panel"]
NoCardReason = Literal["out_of_scope", "no_management_question"]


class View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Link(View):
    label: str
    url: str


class CitationView(View):
    """One cited passage: numbered as in the narrative, with its safe links."""

    n: int
    source_id: str
    title: str
    year: str
    evidence_type: str
    section: str
    snippet: str
    links: tuple[Link, ...] = ()


class SourceView(View):
    """One source of a card, with every section of it the card cites."""

    title: str
    year: str
    evidence_type: str
    sections: tuple[str, ...]
    links: tuple[Link, ...] = ()


class EvidenceView(View):
    finding: str
    value: str
    text: str
    origin: Origin
    # "this question", "earlier message 2", "findings panel", or the resource it was read from and
    # its date ("DiagnosticReport/ct-1 · 2026-03-14 08:00 UTC")
    where: str
    shown: str  # a span in quotes; a coded resource's value (an Observation, a Procedure) as is
    resource: str | None = None
    resource_date: str | None = None  # ISO 8601, as the record gives it


class OverriddenView(View):
    """A statement the value does not rest on: a later one superseded it, or a value set
    explicitly won over it. Shown beside the span used, never used for the value."""

    evidence: EvidenceView
    by: Literal["later", "explicit"]
    label: str  # "Overrode", from knowledge/presentation.yaml
    note: str  # "superseded by a later statement", from knowledge/presentation.yaml


class CertaintyView(View):
    """The certainty of evidence of a row or an escalation, and who judged it."""

    level: str
    basis: str
    appraisal: str  # "tool" | "source"
    appraisal_text: str  # the words for it, from knowledge/presentation.yaml


class DerivedView(View):
    """A table input the rules table filled in from other findings (never said by the text)."""

    id: str
    input: str
    label: str
    value: str
    statement: str  # "counted as yes by the table's convention, because ... = yes"
    rationale: str
    citations: tuple[CitationView, ...]
    evidence: tuple[EvidenceView, ...]  # the spans behind the findings it was derived from


class BasisRow(View):
    """One table input as evaluated, and where its value came from."""

    name: str
    label: str
    value: str
    evidence: tuple[EvidenceView, ...] = ()
    overridden: tuple[OverriddenView, ...] = ()  # what the value's spans superseded
    convention: str | None = None  # the short location convention, on the location row
    derived: DerivedView | None = None  # the table filled this input in


class Outcome(View):
    value: str
    leads_to: str


class Option(View):
    """A follow-up answer the clinician can click; it sets the finding in the panel."""

    value: str  # "symptomatic=yes"
    label: str


class MissingView(View):
    finding: str
    question: str
    outcomes: tuple[Outcome, ...]


class EscalationView(View):
    id: str
    label: str
    actions: tuple[str, ...]
    rationale: str
    sources: tuple[SourceView, ...]
    citations: tuple[CitationView, ...]
    certainty: CertaintyView | None = None


class SummaryView(View):
    """The one line a chat answer opens with: tier, the inputs that decided it, escalations."""

    tier_name: str
    inputs: tuple[str, ...]
    escalations: tuple[str, ...]
    asks: bool  # needs_information: point at the follow-up questions, not at actions


class Reevaluation(View):
    previous_tier: str | None
    previous_tier_name: str | None
    changed: bool


class CardView(View):
    """The recommendation card: tier, escalations, actions, basis, caveats and sources."""

    tier: str
    tier_name: str
    label: str
    rule_id: str
    rules_version: str
    actions: tuple[str, ...]
    rationale: str
    caveats: tuple[str, ...]
    escalations: tuple[EscalationView, ...]
    certainty: CertaintyView | None
    sources: tuple[SourceView, ...]
    citations: tuple[CitationView, ...]
    basis: tuple[BasisRow, ...]
    evidence: tuple[EvidenceView, ...]  # every finding's evidence, for the plain-text faces
    overridden: tuple[OverriddenView, ...]  # every statement superseded, for the same faces
    derived: tuple[DerivedView, ...]  # inputs the table filled in, for the plain-text faces
    missing: tuple[MissingView, ...]
    source: CardSource
    versions: Versions | None
    convention: str
    summary: SummaryView
    reevaluation: Reevaluation | None = None


class FindingRow(View):
    name: str
    short: str
    value: str  # "yes", "no", "central", "—", "conflict", "unclear"
    evidence: tuple[EvidenceView, ...]
    overridden: tuple[OverriddenView, ...] = ()
    conflict: bool = False
    unclear_term: str | None = None


class FindingsView(View):
    rows: tuple[FindingRow, ...]


class FollowUpView(View):
    missing: tuple[MissingView, ...]
    questions: tuple[str, ...]
    options: tuple[Option, ...]


class AnswerView(View):
    id: str
    question: str
    in_scope: bool
    text: str
    notes: tuple[str, ...]
    citations: tuple[CitationView, ...]
    card: CardView | None
    no_card_reason: NoCardReason | None
    follow_up: FollowUpView | None
    findings: FindingsView
    disclaimer: str
    versions: Versions


# --- links ---------------------------------------------------------------------------------------


def safe_url(url: str | None) -> str | None:
    """An absolute http(s) URL, or None: no javascript:, data: or relative links."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    return url.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def citation_links(c: Citation) -> tuple[Link, ...]:
    """DOI, PubMed, then the source URL if it is another page."""
    links: list[Link] = []
    if c.doi:
        links.append(Link(label=f"doi:{c.doi}", url="https://doi.org/" + quote(c.doi, "/:;._-")))
    if c.pmid:
        links.append(
            Link(label=f"PubMed {c.pmid}", url=f"https://pubmed.ncbi.nlm.nih.gov/{quote(c.pmid)}/")
        )
    url = safe_url(c.url)
    if url and all(url.rstrip("/") != link.url.rstrip("/") for link in links):
        links.append(Link(label="source", url=url))
    return tuple(links)


# --- builders ------------------------------------------------------------------------------------


def _year(year: int | None) -> str:
    return str(year) if year else "n.d."


def citation_view(c: Citation) -> CitationView:
    return CitationView(
        n=c.n,
        source_id=c.source_id,
        title=c.title,
        year=_year(c.year),
        evidence_type=c.evidence_type,
        section=c.section,
        snippet=c.snippet,
        links=citation_links(c),
    )


def _sources(citations: Iterable[Citation]) -> tuple[SourceView, ...]:
    by_source: dict[str, list[Citation]] = {}
    for c in citations:
        by_source.setdefault(c.source_id, []).append(c)
    return tuple(
        SourceView(
            title=group[0].title,
            year=_year(group[0].year),
            evidence_type=group[0].evidence_type,
            sections=tuple(c.section for c in group),
            links=citation_links(group[0]),
        )
        for group in by_source.values()
    )


def display_time(value: str | None) -> str:
    """An ISO 8601 date or time as a clinician reads it: '2026-03-14 08:00 UTC', '2026-03-12'."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value  # as the record gives it
    if "T" not in value:
        return moment.date().isoformat()
    if moment.utcoffset() is None:
        return moment.strftime("%Y-%m-%d %H:%M")
    offset = moment.utcoffset()
    zone = "UTC" if offset is not None and not offset else moment.strftime("UTC%z")
    return moment.strftime("%Y-%m-%d %H:%M ") + zone


def where_from(e: Evidence) -> str:
    if e.resource:
        return " · ".join(x for x in (e.resource, display_time(e.resource_date)) if x)
    if e.origin == "explicit":
        return "findings panel"
    if e.origin == "history":
        return f"earlier message {e.turn + 1}" if e.turn is not None else "earlier message"
    return "this question"


def evidence_view(e: Evidence) -> EvidenceView:
    return EvidenceView(
        finding=e.finding,
        value=e.value,
        text=e.text,
        origin=e.origin,
        where=where_from(e),
        shown=e.text if e.origin in ("ehr", "explicit") else f"“{e.text}”",
        resource=e.resource,
        resource_date=e.resource_date,
    )


def overridden_views(
    findings: Findings, text: Presentation, name: str | None = None
) -> tuple[OverriddenView, ...]:
    """The statements superseded (of one finding, or of all), each with why: a value set
    explicitly decides its finding, else a later statement did."""
    explicit = {e.finding for e in findings.evidence if e.origin == "explicit"}
    words = text.overridden
    views = []
    for e in findings.overridden:
        if name is not None and e.finding != name:
            continue
        by: Literal["later", "explicit"] = "explicit" if e.finding in explicit else "later"
        views.append(
            OverriddenView(
                evidence=evidence_view(e),
                by=by,
                label=words.label,
                note=words.explicit if by == "explicit" else words.later,
            )
        )
    return tuple(views)


def certainty_view(certainty: Certainty | None, text: Presentation) -> CertaintyView | None:
    if certainty is None:
        return None
    return CertaintyView(
        level=certainty.level,
        basis=certainty.basis,
        appraisal=certainty.appraisal,
        appraisal_text=text.appraisal(certainty.appraisal),
    )


def derived_view(d: DerivedInput, text: Presentation) -> DerivedView:
    return DerivedView(
        id=d.id,
        input=d.input,
        label=text.label(d.input),
        value=d.value,
        statement=text.derived.format(value=d.value, because=d.because),
        rationale=d.rationale,
        citations=tuple(citation_view(c) for c in d.citations),
        evidence=tuple(evidence_view(e) for e in d.evidence),
    )


def summary_view(rec: Recommendation, text: Presentation) -> SummaryView:
    inputs = tuple(
        text.findings[name].summary.get(rec.inputs[name], rec.inputs[name])
        for name in TIER_INPUTS
        if name in rec.inputs
    )
    return SummaryView(
        tier_name=tier_name(rec, text),
        inputs=inputs,
        escalations=tuple(e.label for e in rec.escalations),
        asks=rec.tier == "needs_information",
    )


def tier_name(rec: Recommendation, text: Presentation) -> str:
    """The rule's own label, capitalised; the presentation's tier name if a rule has none."""
    label = rec.label.strip()
    return label[:1].upper() + label[1:] if label else text.tier_name(rec.tier)


def card_view(
    rec: Recommendation,
    findings: Findings,
    text: Presentation,
    *,
    versions: Versions | None = None,
    convention: str = "",
    source: CardSource = "question",
    previous_tier: str | None = None,
    reevaluated: bool = False,
) -> CardView:
    """The card of one recommendation, with everything needed to check its basis."""
    evidence = tuple(evidence_view(e) for e in findings.evidence)
    overridden = overridden_views(findings, text)
    derived = tuple(derived_view(d, text) for d in rec.derived)
    basis = tuple(
        BasisRow(
            name=name,
            label=text.label(name),
            value=value,
            evidence=tuple(e for e in evidence if e.finding == name),
            overridden=tuple(o for o in overridden if o.evidence.finding == name),
            convention=text.location_convention_short if name == "location" else None,
            derived=next((d for d in derived if d.input == name), None),
        )
        for name, value in rec.inputs.items()
    )
    reevaluation = None
    if reevaluated:
        reevaluation = Reevaluation(
            previous_tier=previous_tier,
            previous_tier_name=text.tier_name(previous_tier) if previous_tier else None,
            changed=previous_tier is not None and previous_tier != rec.tier,
        )
    return CardView(
        tier=rec.tier,
        tier_name=tier_name(rec, text),
        label=rec.label,
        rule_id=rec.rule_id,
        rules_version=rec.rules_version,
        actions=rec.actions,
        rationale=rec.rationale,
        caveats=rec.caveats,
        escalations=tuple(
            EscalationView(
                id=e.id,
                label=e.label,
                actions=e.actions,
                rationale=e.rationale,
                sources=_sources(e.citations),
                citations=tuple(citation_view(c) for c in e.citations),
                certainty=certainty_view(e.certainty, text),
            )
            for e in rec.escalations
        ),
        certainty=certainty_view(rec.certainty, text),
        sources=_sources(rec.citations),
        citations=tuple(citation_view(c) for c in rec.citations),
        basis=basis,
        evidence=evidence,
        overridden=overridden,
        derived=derived,
        missing=_missing(rec),
        source=source,
        versions=versions,
        convention=convention or text.location_convention_short,
        summary=summary_view(rec, text),
        reevaluation=reevaluation,
    )


def _missing(rec: Recommendation) -> tuple[MissingView, ...]:
    return tuple(
        MissingView(
            finding=m.finding,
            question=m.question,
            outcomes=tuple(Outcome(value=v, leads_to=o) for v, o in m.outcomes.items()),
        )
        for m in rec.missing
    )


def findings_view(findings: Findings, text: Presentation) -> FindingsView:
    """What was extracted from the conversation (and the panel): the evidence for each finding
    and the statements it superseded."""
    conflicts: dict[str, Conflict] = {c.finding: c for c in findings.conflicts}
    rows = []
    for name in (*PANEL_FIELDS, "procedure"):
        raw = getattr(findings, name)
        value = "—" if raw is None else ("yes" if raw is True else "no" if raw is False else raw)
        evidence = tuple(evidence_view(e) for e in findings.evidence if e.finding == name)
        conflict = name in conflicts
        if conflict:
            value = "conflict"
            evidence = tuple(evidence_view(e) for e in conflicts[name].evidence)
        unclear = findings.unclear_location if name == "location" else None
        if unclear:
            value = "unclear"
        rows.append(
            FindingRow(
                name=name,
                short=text.short(name),
                value=str(value),
                evidence=evidence,
                overridden=overridden_views(findings, text, name),
                conflict=conflict,
                unclear_term=unclear,
            )
        )
    return FindingsView(rows=tuple(rows))


def follow_up_view(answer: Answer, text: Presentation) -> FollowUpView | None:
    """What the table needs next; each answer the panel can hold becomes a clickable option."""
    rec = answer.recommendation
    missing = _missing(rec) if rec else ()
    if not answer.in_scope or (not answer.follow_up_questions and not missing):
        return None
    options = tuple(
        Option(value=f"{m.finding}={o.value}", label=f"{text.label(m.finding)}: {o.value}")
        for m in missing
        if m.finding in PANEL_CHOICES
        for o in m.outcomes
        if o.value in PANEL_CHOICES[m.finding]
    )
    return FollowUpView(
        missing=missing,
        questions=() if missing else answer.follow_up_questions,
        options=options,
    )


def answer_view(
    answer: Answer,
    text: Presentation,
    *,
    convention: str = "",
    previous_tier: str | None = None,
    reevaluated: bool = False,
) -> AnswerView:
    rec = answer.recommendation
    card = None
    reason: NoCardReason | None = None
    if not answer.in_scope:
        reason = "out_of_scope"
    elif rec is None:
        reason = "no_management_question"
    else:
        card = card_view(
            rec,
            answer.findings,
            text,
            versions=answer.versions,
            convention=convention,
            previous_tier=previous_tier,
            reevaluated=reevaluated,
        )
    return AnswerView(
        id=answer.id,
        question=answer.question,
        in_scope=answer.in_scope,
        text=answer.text,
        notes=answer.notes,
        citations=tuple(citation_view(c) for c in answer.citations),
        card=card,
        no_card_reason=reason,
        follow_up=follow_up_view(answer, text),
        findings=findings_view(answer.findings, text),
        disclaimer=answer.disclaimer,
        versions=answer.versions,
    )


def all_citations(card: CardView) -> Sequence[CitationView]:
    """The card's citations, its escalations', then those of the inputs the table filled in, each
    passage once (the plain-text faces list them together)."""
    every = (
        *card.citations,
        *(c for e in card.escalations for c in e.citations),
        *(c for d in card.derived for c in d.citations),
    )
    return tuple(dict.fromkeys(every))
