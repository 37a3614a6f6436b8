"""Rendering of Answer objects for people: chat Markdown, the card and basis HTML, exports.

Pure functions, no Gradio: text from sources and users is escaped here (``esc`` for HTML,
``md_text`` for Markdown), so every surface that shows an answer shows it safely.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from assistant.types import Answer, Citation, Findings, MissingFinding, Recommendation, Versions

PANEL_FIELDS: tuple[str, ...] = (
    "symptomatic",
    "location",
    "hemodynamic_instability",
    "intracardiac_cement",
)
PANEL_CHOICES: dict[str, tuple[str, ...]] = {
    "symptomatic": ("yes", "no", "unknown"),
    "location": ("central", "peripheral", "unknown"),
    "hemodynamic_instability": ("yes", "no", "unknown"),
    "intracardiac_cement": ("yes", "no", "unknown"),
}
FINDING_LABELS: dict[str, str] = {
    "symptomatic": "Symptoms attributed to the emboli",
    "location": "Emboli location",
    "hemodynamic_instability": "Haemodynamic instability",
    "intracardiac_cement": "Intracardiac cement",
    "procedure": "Procedure",
}
TIER_NAMES: dict[str, str] = {
    "surveillance": "Clinical surveillance",
    "anticoagulation": "Anticoagulation",
    "surgical_embolectomy": "Consider surgical embolectomy",
    "needs_information": "More information needed",
}
NOT_STATED = '<span class="pce-muted">not stated</span>'
# Shown wherever a location is; the card's details also show the rules table's full text
# (`location_convention`), which this must agree with.
LOCATION_CONVENTION_SHORT = (
    "Tool convention, not from a source: central = pulmonary trunk or main/right/left pulmonary "
    "artery; peripheral = segmental or smaller; lobar or unclear → asked."
)


# --- escaping ------------------------------------------------------------------------------------


def esc(value: object) -> str:
    """HTML-escape text for markup we build; `$`, `{`, `}` too, so no template ever expands it."""
    text = html.escape(str(value), quote=True)
    return text.replace("$", "&#36;").replace("{", "&#123;").replace("}", "&#125;")


_REF_DEFINITION = re.compile(r"(?m)^(\s{0,3})\[([^\]\n]*)\]:")


def md_text(value: object) -> str:
    """Source or user text for the chat's Markdown: shown as written, never as HTML or a link.

    HTML is escaped (so `<script>` shows as text), and link/image syntax is broken up, so no
    passage or question can make the page fetch anything.
    """
    text = html.escape(str(value), quote=False)
    text = text.replace("](", "]\\(")
    return _REF_DEFINITION.sub(r"\1\\[\2]:", text)


def safe_url(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url.strip())
    return url.strip() if parts.scheme in ("http", "https") and parts.netloc else None


NO_IDENTIFIER = "no DOI or PMID recorded"


def citation_links(c: Citation) -> list[tuple[str, str]]:
    """(label, url) pairs for a citation: DOI, PubMed, then the source URL if it is another page."""
    links: list[tuple[str, str]] = []
    if c.doi:
        links.append((f"doi:{c.doi}", "https://doi.org/" + quote(c.doi, safe="/:;._-")))
    if c.pmid:
        links.append((f"PubMed {c.pmid}", f"https://pubmed.ncbi.nlm.nih.gov/{quote(c.pmid)}/"))
    url = safe_url(c.url)
    if url and all(url.rstrip("/") != u.rstrip("/") for _, u in links):
        links.append(("source", url))
    return links


def md_link(label: str, url: str) -> str:
    target = quote(url, safe=":/?#&=%~+@!,;._-")
    return f"[{md_text(label).replace('[', '').replace(']', '')}]({target})"


def _html_links(c: Citation) -> str:
    return " · ".join(
        f'<a href="{esc(url)}" target="_blank" rel="noopener noreferrer">{esc(label)}</a>'
        for label, url in citation_links(c)
    )


def tier_name(rec: Recommendation) -> str:
    label = rec.label.strip()
    return label[:1].upper() + label[1:] if label else TIER_NAMES.get(rec.tier, rec.tier)


def origin_text(origin: str, turn: int | None) -> str:
    if origin == "explicit":
        return "findings panel"
    if origin == "history":
        return f"earlier message {turn + 1}" if turn is not None else "earlier message"
    return "this question"


# --- chat messages -------------------------------------------------------------------------------


def citations_markdown(citations: Sequence[Citation]) -> str:
    blocks = []
    for c in citations:
        links = " · ".join(md_link(label, url) for label, url in citation_links(c))
        head = f"**[{c.n}]** {md_text(c.title)} ({c.year or 'n.d.'}) — *{md_text(c.evidence_type)}*"
        where = f"§ {md_text(c.section)}" + (f" · {links}" if links else "")
        if c.via:
            where += f" · relays {md_text(c.via)}"
        if not (c.doi or c.pmid) and not c.user_supplied:
            where += f" · {NO_IDENTIFIER}"
        blocks.append(f"{head}  \n{where}\n> {md_text(c.snippet)}")
    return "\n\n".join(blocks)


def tier_line(rec: Recommendation) -> str:
    line = (
        f"**Decision table → {md_text(tier_name(rec))}** (`{rec.tier}`, rule `{rec.rule_id}`). "
        "Actions, caveats and the basis are on the recommendation card."
    )
    for e in rec.escalations:
        line += f"\n\n⚠️ **Escalation: {md_text(e.label)}**: see the card."
    return line


def follow_up_message(answer: Answer) -> dict[str, Any] | None:
    rec = answer.recommendation
    missing: Sequence[MissingFinding] = rec.missing if rec else ()
    if not answer.follow_up_questions and not missing:
        return None
    lines = ["**To decide, the decision table needs:**"]
    options: list[dict[str, str]] = []
    if missing:
        for i, m in enumerate(missing, 1):
            lines.append(f"{i}. {md_text(m.question)}")
            lines += [f"    - *{md_text(v)}* → {md_text(o)}" for v, o in m.outcomes.items()]
            if m.finding in PANEL_CHOICES:
                options += [
                    {"value": f"{m.finding}={v}", "label": f"{FINDING_LABELS[m.finding]}: {v}"}
                    for v in m.outcomes
                    if v in PANEL_CHOICES[m.finding]
                ]
    else:
        lines += [f"{i}. {md_text(q)}" for i, q in enumerate(answer.follow_up_questions, 1)]
    if options:
        lines.append("\nPick an answer below to set it in the findings panel, or reply in chat.")
    message: dict[str, Any] = {"role": "assistant", "content": "\n".join(lines)}
    if options:
        message["options"] = options
    return message


def narrative_markdown(answer: Answer) -> str:
    parts = [md_text(answer.text)]
    if answer.in_scope:
        if answer.recommendation is not None:
            parts.append(tier_line(answer.recommendation))
        parts += [f"*Note: {md_text(n)}*" for n in answer.notes]
    return "\n\n".join(parts)


def _stream_chunks(text: str, words_per_chunk: int = 12) -> Iterator[str]:
    """Growing prefixes of the narrative, cut at spaces (never inside an escape or a marker)."""
    pieces = re.split(r"(?<= )", text)
    for end in range(words_per_chunk, len(pieces), words_per_chunk):
        yield "".join(pieces[:end])


# --- HTML: findings evidence and the recommendation card -----------------------------------------


SHORT_LABELS: dict[str, str] = {
    "symptomatic": "Symptoms",
    "location": "Location",
    "hemodynamic_instability": "Unstable",
    "intracardiac_cement": "Intracardiac",
    "procedure": "Procedure",
}


def findings_html(findings: Findings | None) -> str:
    """What was extracted from the conversation (and the panel), with the evidence for each."""
    if findings is None:
        return (
            '<div class="pce-extracted pce-muted">Nothing extracted yet: ask a question, or set '
            "the findings above.</div>"
        )
    rows = []
    conflicts = {c.finding: c for c in findings.conflicts}
    for name in (*PANEL_FIELDS, "procedure"):
        raw = getattr(findings, name)
        value = "—" if raw is None else ("yes" if raw is True else "no" if raw is False else raw)
        evidence = [e for e in findings.evidence if e.finding == name]
        note = ""
        if name in conflicts:
            value = "conflict"
            evidence = list(conflicts[name].evidence)
            note = '<span class="pce-warn">contradictory; set it above</span>'
        if name == "location" and findings.unclear_location:
            value = "unclear"
            note = (
                f'<span class="pce-warn">“{esc(findings.unclear_location)}” is neither central '
                "nor peripheral here; set it above</span>"
            )
        spans = " ".join(
            (
                ""
                if e.origin == "explicit"
                else f'<span class="pce-span">“{esc(e.text)}”'
                + (f" ({esc(e.value)})" if name in conflicts else "")
                + "</span>"
            )
            + f'<span class="pce-origin pce-origin-{esc(e.origin)}">'
            f"{esc(origin_text(e.origin, e.turn))}</span>"
            for e in evidence
        )
        rows.append(
            f'<li data-finding="{esc(name)}"><span class="pce-key">{esc(SHORT_LABELS[name])}</span>'
            f' <span class="pce-value">{esc(value)}</span> '
            f"{spans or NOT_STATED} {note}</li>"
        )
    return (
        '<div class="pce-extracted"><div class="pce-subhead">Extracted for the last answer '
        '<span class="pce-muted">(value · evidence · where from)</span></div>'
        f'<ul class="pce-found">{"".join(rows)}</ul></div>'
    )


def _citation_list(citations: Sequence[Citation]) -> str:
    """Sources for a card, one entry per source: its cited sections, then DOI/PubMed links."""
    by_source: dict[str, list[Citation]] = {}
    for c in citations:
        by_source.setdefault(c.source_id, []).append(c)
    items = []
    for group in by_source.values():
        c = group[0]
        sections = "; ".join(f"§ {esc(g.section)}" for g in group)
        links = _html_links(c)
        if not (c.doi or c.pmid) and not c.user_supplied:
            links += f' <span class="pce-muted">({NO_IDENTIFIER})</span>'
        items.append(
            f'<li><span class="pce-cite-title">{esc(c.title)}</span> '
            f'<span class="pce-muted">({esc(c.year or "n.d.")}; {esc(c.evidence_type)})</span>'
            f'<div class="pce-cite-sections">{sections}</div>'
            + (f'<div class="pce-links">{links}</div>' if links else "")
            + "</li>"
        )
    return f'<ol class="pce-cites">{"".join(items)}</ol>'


def empty_card(message: str) -> str:
    return f'<div class="pce-card pce-card-empty" data-tier="none">{esc(message)}</div>'


def card_html(
    rec: Recommendation,
    findings: Findings,
    versions: Versions,
    *,
    convention: str = LOCATION_CONVENTION_SHORT,
    reevaluated: bool = False,
    previous_tier: str | None = None,
    source: str = "question",
) -> str:
    """The recommendation card, coloured by tier, with everything needed to check its basis."""
    tier = esc(rec.tier)
    parts = [
        f'<div class="pce-card pce-tier-{tier}" data-tier="{tier}" role="region" '
        'aria-label="Recommendation">'
    ]
    parts.append(
        '<div class="pce-card-head"><div class="pce-eyebrow">Recommendation · decision table'
        f'</div><div class="pce-tier-name">{esc(tier_name(rec))}</div>'
        f'<span class="pce-badge">{tier}</span></div>'
    )
    if reevaluated:
        if previous_tier and previous_tier != rec.tier:
            change = f"was <b>{esc(TIER_NAMES.get(previous_tier, previous_tier))}</b>."
        elif previous_tier:
            change = "tier unchanged."
        else:
            change = "no card before."
        parts.append(
            f'<div class="pce-changed">↻ Re-evaluated with the findings panel: {change}</div>'
        )
    for e in rec.escalations:
        parts.append(
            f'<div class="pce-escalation" data-escalation="{esc(e.id)}">'
            f'<div class="pce-escalation-title">⚠ Escalation: {esc(e.label)}</div>'
            f"<ul>{''.join(f'<li>{esc(a)}</li>' for a in e.actions)}</ul>"
            f'<details class="pce-more"><summary>Why, and its sources ({len(e.citations)})'
            f'</summary><div class="pce-rationale">{esc(e.rationale)}</div>'
            f"{_citation_list(e.citations)}</details></div>"
        )
    parts.append('<div class="pce-section">Actions</div>')
    parts.append(
        f'<ul class="pce-actions">{"".join(f"<li>{esc(a)}</li>" for a in rec.actions)}</ul>'
    )
    if rec.certainty is not None:
        parts.append(f'<div class="pce-certainty">{esc(rec.certainty.statement)}</div>')
    parts.append(_basis_html(rec, findings, versions, source))
    if rec.caveats:
        parts.append('<div class="pce-section">Caveats</div>')
        parts.append(
            f'<ul class="pce-caveats">{"".join(f"<li>{esc(c)}</li>" for c in rec.caveats)}</ul>'
        )
    if rec.citations:
        parts.append('<div class="pce-section">Sources for this recommendation</div>')
        parts.append(_citation_list(rec.citations))
    parts.append(
        '<details class="pce-more"><summary>Rationale and location convention</summary>'
        f'<div class="pce-subhead">Rationale (rule {esc(rec.rule_id)})</div>'
        f"<p>{esc(rec.rationale)}</p>"
        f'<div class="pce-subhead">Location convention</div><p>{esc(convention)}</p></details>'
    )
    parts.append("</div>")
    return "".join(parts)


def _basis_html(rec: Recommendation, findings: Findings, versions: Versions, source: str) -> str:
    """Which inputs the table saw and where each came from; what is missing; which rule fired."""
    used = []
    for name, value in rec.inputs.items():
        spans = [
            "set in the findings panel"
            if e.origin == "explicit"
            else f"“{esc(e.text)}” ({esc(origin_text(e.origin, e.turn))})"
            for e in findings.evidence
            if e.finding == name
        ]
        note = (
            f'<div class="pce-convention">{esc(LOCATION_CONVENTION_SHORT)}</div>'
            if name == "location"
            else ""
        )
        used.append(
            f'<tr data-input="{esc(name)}"><th scope="row">'
            f"{esc(FINDING_LABELS.get(name, name))}</th>"
            f'<td class="pce-value pce-value-{esc(value)}">{esc(value)}</td>'
            f"<td>{'; '.join(spans) or NOT_STATED}{note}</td></tr>"
        )
    missing = "".join(
        f'<li data-missing="{esc(m.finding)}">{esc(m.question)}<ul>'
        + "".join(f"<li><b>{esc(v)}</b> → {esc(o)}</li>" for v, o in m.outcomes.items())
        + "</ul></li>"
        for m in rec.missing
    )
    origin = (
        "the findings panel alone (no question yet)"
        if source == "panel"
        else ("the last question, the conversation and the findings panel")
    )
    return (
        '<div class="pce-basis"><div class="pce-section">Basis — check it independently</div>'
        f'<div class="pce-muted pce-small">Table inputs as evaluated from {esc(origin)}.</div>'
        '<table class="pce-table"><thead><tr><th>Input</th><th>Value</th>'
        f"<th>Where it came from</th></tr></thead><tbody>{''.join(used)}</tbody></table>"
        + (
            '<div class="pce-subhead">Findings missing — what each answer would lead to</div>'
            f'<ol class="pce-missing">{missing}</ol>'
            if missing
            else ""
        )
        + '<dl class="pce-versions">'
        f"<dt>Rule</dt><dd><code>{esc(rec.rule_id)}</code></dd>"
        f"<dt>Rules version</dt><dd>{esc(versions.rules)}</dd>"
        f"<dt>Knowledge version</dt><dd>{esc(versions.knowledge)}</dd>"
        f"<dt>App · model</dt><dd>{esc(versions.app)} · {esc(versions.model)}</dd>"
        "</dl></div>"
    )
