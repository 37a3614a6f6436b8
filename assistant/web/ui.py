"""The Gradio chat web UI: chat with cited answers, a findings panel and the recommendation card.

``build_blocks(assistant)`` lays the page out; ``mount_ui(app, assistant)`` mounts it at ``/`` on
the FastAPI app (login from ``ui_user``/``ui_password`` when both are set; never a share link).
The handlers live on ``ChatUI`` as plain methods, so tests call them without a browser.

Everything shown comes from ``Answer`` objects (never parsed prose). Text from sources and users is
escaped before it reaches the page: ``esc`` for the HTML we build, ``md_text`` for the chat's
Markdown (the Chatbot's own HTML sanitiser stays on as a second guard). The page loads nothing
from the internet: system fonts only, no analytics, no share link, no run history.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import gradio as gr
from fastapi import FastAPI

from assistant.assistant import DISCLAIMER, Assistant
from assistant.errors import AssistantError, InputError
from assistant.present.render import (
    PANEL_CHOICES,
    PANEL_FIELDS,
    _stream_chunks,
    card_html,
    citation_links,
    citations_markdown,
    empty_card,
    esc,
    findings_html,
    follow_up_message,
    md_link,
    md_text,
    narrative_markdown,
    origin_text,
    tier_name,
)
from assistant.types import Answer, Citation, Versions

log = logging.getLogger(__name__)

PanelValue = str  # "yes" | "no" | "unknown" (symptoms, instability, intracardiac) or location
FEEDBACK_OUTCOMES: dict[str, str] = {
    "Helpful": "helpful",
    "Not helpful": "not_helpful",
    "Evidence wrong": "evidence_wrong",
}
LIKE_OUTCOMES: dict[str, str] = {"Like": "helpful", "Dislike": "not_helpful"}
MAX_COMMENT_CHARS = 4000
VIGNETTES: tuple[str, ...] = (
    "72-year-old woman, 2 days after T12 kyphoplasty, no symptoms; CT shows small cement emboli "
    "in segmental branches of the right lower lobe. Does she need anticoagulation?",
    "Incidental cement embolus in the right pulmonary artery on staging CT after vertebroplasty; "
    "the patient is asymptomatic. Should we treat?",
    "Dyspnoea and chest pain after L1 vertebroplasty; CT shows cement in the left main pulmonary "
    "artery. What is the next step?",
    "Hypotensive and short of breath after vertebroplasty; echo shows cement in the right "
    "ventricle. What now?",
    "Cement emboli seen on CT after kyphoplasty. How should we manage them?",
    "How often does pulmonary cement embolism occur after vertebroplasty?",
)


# --- session -------------------------------------------------------------------------------------


@dataclass
class Turn:
    """One question (or re-evaluation) and its answer, in the order the clinician saw them."""

    question: str
    history: list[str]
    kind: Literal["ask", "reevaluate"] = "ask"
    panel: dict[str, str] = field(default_factory=dict)
    answer: Answer | None = None
    error: str | None = None
    previous_tier: str | None = None


@dataclass
class Session:
    """Per-browser-tab state (a gr.State): the chat messages and every answer behind them."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    message_answer: dict[int, str] = field(default_factory=dict)

    def answered(self) -> list[Turn]:
        return [t for t in self.turns if t.answer is not None]

    def last_question(self) -> Turn | None:
        return next((t for t in reversed(self.turns) if t.kind == "ask" and t.answer), None)

    def answer_by_id(self, answer_id: str) -> Answer | None:
        return next((t.answer for t in self.turns if t.answer and t.answer.id == answer_id), None)

    def user_questions(self) -> list[str]:
        return [t.question for t in self.turns if t.kind == "ask" and t.answer is not None]


def panel_findings(values: Mapping[str, str | None]) -> dict[str, str] | None:
    """Panel values that are set; 'unknown' (or empty) leaves a finding to the text."""
    chosen = {
        name: str(values[name])
        for name in PANEL_FIELDS
        if values.get(name) not in (None, "", "unknown")
    }
    return chosen or None


def panel_values(*values: str | None) -> dict[str, str] | None:
    """The four radios, in PANEL_FIELDS order, as explicit findings (see panel_findings)."""
    return panel_findings(dict(zip(PANEL_FIELDS, values, strict=True)))


def apply_option(value: str, panel: Sequence[str]) -> tuple[str, ...]:
    """A follow-up option ('symptomatic=yes') sets that finding in the panel; others unchanged."""
    current = dict(zip(PANEL_FIELDS, panel, strict=True))
    name, _, chosen = str(value).partition("=")
    if name in PANEL_CHOICES and chosen in PANEL_CHOICES[name]:
        current[name] = chosen
    return tuple(current[n] for n in PANEL_FIELDS)


def _error_text(exc: Exception) -> str:
    if isinstance(exc, InputError):
        return f"⚠️ **Please rephrase:** {md_text(exc)}"
    if isinstance(exc, AssistantError):
        return f"⚠️ **The assistant could not answer:** {md_text(exc)}"
    ref = uuid.uuid4().hex[:8]
    log.exception("UI: unexpected error (ref %s)", ref)
    return f"⚠️ **Internal error** (reference {ref}); the server log has the details. Try again."


# --- export --------------------------------------------------------------------------------------


def _md_citation(c: Citation) -> str:
    links = " · ".join(md_link(label, url) for label, url in citation_links(c))
    return (
        f"- [{c.n}] {md_text(c.title)} ({c.year or 'n.d.'}; {md_text(c.evidence_type)}) — "
        f"§ {md_text(c.section)}" + (f" — {links}" if links else "")
    )


def conversation_markdown(
    session: Session, versions: Versions, disclaimer: str = DISCLAIMER
) -> str:
    """The conversation as Markdown: each question, answer, citations and recommendation."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# PCE Assistant — conversation export",
        "",
        f"Exported {now}. App {versions.app}; rules {versions.rules}; "
        f"knowledge {versions.knowledge}; model {versions.model}.",
        "",
        f"> {md_text(disclaimer)}",
    ]
    if not session.turns:
        out += ["", "_No questions yet._"]
    for i, turn in enumerate(session.turns, 1):
        title = "Question" if turn.kind == "ask" else "Re-evaluation with the findings panel"
        out += ["", f"## {i}. {title}", "", f"> {md_text(turn.question)}"]
        if turn.panel:
            shown = ", ".join(f"{k} = {v}" for k, v in turn.panel.items())
            out += ["", f"Findings panel: {md_text(shown)}"]
        if turn.error is not None or turn.answer is None:
            out += ["", f"Error: {md_text(turn.error or 'no answer')}"]
            continue
        answer = turn.answer
        out += ["", "### Answer", "", md_text(answer.text)]
        if answer.citations:
            out += ["", "### Citations", "", *(_md_citation(c) for c in answer.citations)]
        rec = answer.recommendation
        if rec is None:
            out += [
                "",
                "_No recommendation card: "
                + ("outside scope._" if not answer.in_scope else "no management question._"),
            ]
            continue
        out += [
            "",
            f"### Recommendation: {md_text(tier_name(rec))} (tier `{rec.tier}`)",
            "",
            f"Rule `{rec.rule_id}`, rules version {rec.rules_version}; "
            f"knowledge {answer.versions.knowledge}. Answer id `{answer.id}`.",
        ]
        if turn.previous_tier and turn.previous_tier != rec.tier:
            out.append(f"Tier changed from `{turn.previous_tier}`.")
        out += ["", "Actions:", *(f"- {md_text(a)}" for a in rec.actions)]
        for e in rec.escalations:
            out += ["", f"**Escalation: {md_text(e.label)}**"]
            out += [f"- {md_text(a)}" for a in e.actions]
            out += ["", "Escalation sources:", *(_md_citation(c) for c in e.citations)]
        if rec.caveats:
            out += ["", "Caveats:", *(f"- {md_text(c)}" for c in rec.caveats)]
        out += ["", "Basis (table inputs):"]
        for name, value in rec.inputs.items():
            spans = "; ".join(
                f"“{md_text(e.text)}” ({origin_text(e.origin, e.turn)})"
                for e in answer.findings.evidence
                if e.finding == name
            )
            out.append(f"- {name} = {value}" + (f" — {spans}" if spans else ""))
        if rec.missing:
            out += ["", "Findings missing:"]
            for m in rec.missing:
                out.append(f"- {m.finding}: {md_text(m.question)}")
                out += [f"  - {md_text(v)} → {md_text(o)}" for v, o in m.outcomes.items()]
        if rec.citations:
            out += ["", "Sources for this recommendation:"]
            out += [_md_citation(c) for c in rec.citations]
    return "\n".join(out) + "\n"


# --- handlers ------------------------------------------------------------------------------------


def _username(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) if request is not None else None


class ChatUI:
    """Event handlers: plain methods over an Assistant and a Session; no browser needed."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.convention = assistant.location_convention

    # the answer the feedback form points at: (label, answer id), newest first
    @staticmethod
    def answer_choices(session: Session) -> list[tuple[str, str]]:
        choices = []
        for i, turn in enumerate(session.turns, 1):
            if turn.answer is None:
                continue
            rec = turn.answer.recommendation
            tier = f" · {rec.tier}" if rec else ""
            q = turn.question if len(turn.question) <= 60 else turn.question[:57] + "…"
            prefix = "↻ " if turn.kind == "reevaluate" else ""
            choices.append((f"#{i} {prefix}{q}{tier}", turn.answer.id))
        return choices[::-1]

    def _answer_dropdown(self, session: Session) -> dict[str, Any]:
        choices = self.answer_choices(session)
        return gr.update(choices=choices, value=choices[0][1] if choices else None)

    def _card(
        self, answer: Answer, *, reevaluated: bool = False, previous_tier: str | None = None
    ) -> str:
        if not answer.in_scope:
            return empty_card(
                "No recommendation: the last question is outside what PCE Assistant covers."
            )
        if answer.recommendation is None:
            return empty_card(
                "No recommendation card for this question (it asks no management question and "
                "states no clinical finding). Describe the patient, or set the findings panel."
            )
        return card_html(
            answer.recommendation,
            answer.findings,
            answer.versions,
            convention=self.convention,
            reevaluated=reevaluated,
            previous_tier=previous_tier,
        )

    def respond(
        self,
        message: str,
        symptomatic: PanelValue,
        location: PanelValue,
        hemodynamic_instability: PanelValue,
        intracardiac_cement: PanelValue,
        session: Session | None,
        request: gr.Request | None = None,
    ) -> Iterator[tuple[Any, ...]]:
        """Ask; stream the narrative; then citations, follow-ups, card and extracted findings.

        Yields (chat messages, textbox, card html, findings html, session, feedback dropdown).
        """
        session = session if session is not None else Session()
        explicit = panel_values(symptomatic, location, hemodynamic_instability, intracardiac_cement)
        question = message if isinstance(message, str) else ""
        history = session.user_questions()[-self.assistant.settings.max_history_turns :]
        messages = session.messages
        messages.append({"role": "user", "content": md_text(question) or "*(empty)*"})
        unchanged = gr.skip()
        yield list(messages), "", unchanged, unchanged, session, unchanged

        turn = Turn(question=question, history=history, panel=explicit or {})
        session.turns.append(turn)
        try:
            answer = self.assistant.ask(
                question,
                findings=explicit,
                history=[{"role": "user", "content": q} for q in history] or None,
                user=_username(request),
                surface="ui",
            )
        except Exception as exc:  # every failure becomes a chat message, never a traceback
            turn.error = str(exc) if isinstance(exc, AssistantError) else "internal error"
            messages.append({"role": "assistant", "content": _error_text(exc)})
            keep = question if isinstance(exc, InputError) else ""
            yield (
                list(messages),
                keep,
                unchanged,
                unchanged,
                session,
                self._answer_dropdown(session),
            )
            return
        turn.answer = answer
        card = self._card(answer)
        found = findings_html(answer.findings)

        final = narrative_markdown(answer)
        messages.append({"role": "assistant", "content": ""})
        session.message_answer[len(messages) - 1] = answer.id
        panels: tuple[Any, Any] = (card, found)
        for partial in _stream_chunks(md_text(answer.text)):
            messages[-1] = {"role": "assistant", "content": partial + " …"}
            yield list(messages), "", *panels, session, unchanged
            panels = (unchanged, unchanged)  # sent once; after that only the narrative grows
        messages[-1] = {"role": "assistant", "content": final}
        if answer.in_scope and answer.citations:
            messages.append(
                {
                    "role": "assistant",
                    "content": citations_markdown(answer.citations),
                    "metadata": {
                        "title": f"📚 Citations ({len(answer.citations)})",
                        "status": "done",
                    },
                }
            )
            session.message_answer[len(messages) - 1] = answer.id
        follow = follow_up_message(answer) if answer.in_scope else None
        if follow is not None:
            messages.append(follow)
            session.message_answer[len(messages) - 1] = answer.id
        yield list(messages), "", card, found, session, self._answer_dropdown(session)

    def reevaluate(
        self,
        symptomatic: PanelValue,
        location: PanelValue,
        hemodynamic_instability: PanelValue,
        intracardiac_cement: PanelValue,
        session: Session | None,
        request: gr.Request | None = None,
    ) -> tuple[Any, ...]:
        """The findings panel changed: re-run the last question with it (or the panel alone).

        Returns (chat messages, card html, findings html, session, feedback dropdown).
        """
        session = session if session is not None else Session()
        explicit = panel_values(symptomatic, location, hemodynamic_instability, intracardiac_cement)
        last = session.last_question()
        user = _username(request)
        try:
            if last is None:
                return self._panel_only(explicit, session, user)
            previous = session.answered()[-1].answer
            previous_rec = previous.recommendation if previous else None
            previous_tier = previous_rec.tier if previous_rec else None
            answer = self.assistant.ask(
                last.question,
                findings=explicit,
                history=[{"role": "user", "content": q} for q in last.history] or None,
                user=user,
                surface="ui",
            )
        except Exception as exc:
            session.messages.append({"role": "assistant", "content": _error_text(exc)})
            return (
                list(session.messages),
                gr.skip(),
                gr.skip(),
                session,
                self._answer_dropdown(session),
            )
        turn = Turn(
            question=last.question,
            history=list(last.history),
            kind="reevaluate",
            panel=explicit or {},
            answer=answer,
            previous_tier=previous_tier,
        )
        session.turns.append(turn)
        shown = ", ".join(f"{k} = {v}" for k, v in (explicit or {}).items()) or "nothing set"
        rec = answer.recommendation
        if rec is None:
            outcome = "no recommendation card" + ("" if answer.in_scope else " (outside scope)")
        else:
            outcome = f"**{md_text(tier_name(rec))}** (`{rec.tier}`, rule `{rec.rule_id}`)"
            if previous_tier and previous_tier != rec.tier:
                outcome += f", was `{previous_tier}`"
            elif previous_tier:
                outcome += ", tier unchanged"
        session.messages.append(
            {
                "role": "assistant",
                "content": f"↻ Re-evaluated the last question with the findings panel "
                f"({md_text(shown)}): {outcome}.",
            }
        )
        session.message_answer[len(session.messages) - 1] = answer.id
        follow = follow_up_message(answer) if answer.in_scope else None
        if follow is not None:
            session.messages.append(follow)
            session.message_answer[len(session.messages) - 1] = answer.id
        return (
            list(session.messages),
            self._card(answer, reevaluated=True, previous_tier=previous_tier),
            findings_html(answer.findings),
            session,
            self._answer_dropdown(session),
        )

    def _panel_only(
        self, explicit: dict[str, str] | None, session: Session, user: str | None
    ) -> tuple[Any, ...]:
        """No question yet: the card from the structured findings alone (no retrieval)."""
        if not explicit:
            return (
                list(session.messages),
                empty_card("No recommendation yet. Ask a question, or set the findings panel."),
                findings_html(None),
                session,
                self._answer_dropdown(session),
            )
        findings, rec, _ = self.assistant.recommend_from(explicit, user=user, surface="ui")
        card = card_html(
            rec, findings, self.assistant.versions, convention=self.convention, source="panel"
        )
        return (
            list(session.messages),
            card,
            findings_html(findings),
            session,
            self._answer_dropdown(session),
        )

    @staticmethod
    def select_option(
        symptomatic: PanelValue,
        location: PanelValue,
        hemodynamic_instability: PanelValue,
        intracardiac_cement: PanelValue,
        evt: gr.SelectData,
    ) -> tuple[str, ...]:
        """A follow-up option was clicked: set that finding in the panel (re-evaluation follows)."""
        panel = (symptomatic, location, hemodynamic_instability, intracardiac_cement)
        return apply_option(str(evt.value), panel)

    def feedback(
        self,
        answer_id: str | None,
        rating: str | None,
        comment: str | None,
        session: Session | None,
        request: gr.Request | None = None,
    ) -> tuple[str, str | None]:
        """Record feedback on one answer. Returns (status message, comment box value)."""
        session = session if session is not None else Session()
        if not answer_id or session.answer_by_id(answer_id) is None:
            return "⚠️ Choose an answer first (ask a question, then rate its answer).", comment
        outcome = FEEDBACK_OUTCOMES.get(rating or "")
        if outcome is None:
            return "⚠️ Choose Helpful, Not helpful or Evidence wrong.", comment
        text = (comment or "").strip() or None
        if text and len(text) > MAX_COMMENT_CHARS:
            return (
                f"⚠️ The comment is {len(text):,} characters; the limit is "
                f"{MAX_COMMENT_CHARS:,}. Shorten it.",
                comment,
            )
        ref = self.assistant.record_feedback(
            answer_id, outcome, text, user=_username(request), surface="ui"
        )
        if ref is None:
            return "⚠️ Feedback not recorded: the audit log is switched off on this server.", comment
        return f"✓ Recorded “{rating}” for this answer. Thank you.", ""

    def like(
        self, session: Session | None, data: gr.LikeData, request: gr.Request | None = None
    ) -> None:
        """Thumbs on a chat message: helpful / not helpful for the answer behind it."""
        session = session if session is not None else Session()
        index = data.index if isinstance(data.index, int) else data.index[0]
        answer_id = session.message_answer.get(index)
        liked = data.liked
        outcome = (
            LIKE_OUTCOMES.get(liked)
            if isinstance(liked, str)
            else ("helpful" if liked else "not_helpful")
        )
        if answer_id is None or outcome is None:
            return
        self.assistant.record_feedback(
            answer_id, outcome, None, user=_username(request), surface="ui"
        )
        gr.Info("Feedback recorded.")

    def export(self, session: Session | None) -> dict[str, Any]:
        """Write the conversation as Markdown to a temp file offered for download."""
        session = session if session is not None else Session()
        path = export_path()
        path.write_text(conversation_markdown(session, self.assistant.versions), encoding="utf-8")
        return gr.update(value=str(path), visible=True)

    @staticmethod
    def reset() -> tuple[Any, ...]:
        empty: list[dict[str, Any]] = []
        return (
            empty,
            "",
            empty_card("No recommendation yet. Ask a question, or set the findings panel."),
            findings_html(None),
            Session(),
            gr.update(choices=[], value=None),
            "unknown",
            "unknown",
            "unknown",
            "unknown",
            "",
            gr.update(value=None, visible=False),
        )


def export_path() -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    folder = Path(tempfile.mkdtemp(prefix="pce-export-"))
    return folder / f"pce-conversation-{stamp}.md"


# --- page ----------------------------------------------------------------------------------------

# Styles live beside this module (package data), so this file stays about behaviour.
CSS = (Path(__file__).with_name("ui.css")).read_text(encoding="utf-8")

HEADER = (
    '<div class="pce-header"><span class="pce-title">PCE Assistant</span> '
    '<span class="pce-subtitle">Pulmonary cement embolism after vertebroplasty or kyphoplasty: '
    "cited answers; the management tier comes only from a fixed, cited decision table.</span>"
    "</div>"
)
PLACEHOLDER = (
    "**Describe the patient or ask a question** about pulmonary cement embolism after "
    "vertebroplasty or kyphoplasty. Include symptoms and where the cement lies (e.g. segmental "
    "branches, right pulmonary artery). Example vignettes are below the message box."
)


def theme() -> gr.themes.Base:
    """System fonts only: nothing is fetched from a font CDN."""
    return gr.themes.Soft(
        primary_hue="blue",
        neutral_hue="slate",
        font=["system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
    )


def _radio(name: str, label: str, info: str, elem_id: str) -> gr.Radio:
    return gr.Radio(
        choices=list(PANEL_CHOICES[name]),
        value="unknown",
        label=label,
        info=info,
        elem_id=elem_id,
    )


def build_blocks(assistant: Assistant) -> gr.Blocks:
    """The page: chat on the left; findings panel and recommendation card on the right."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    ui = ChatUI(assistant)
    versions = assistant.versions
    with gr.Blocks(title="PCE Assistant", analytics_enabled=False) as blocks:
        session = gr.State(Session())
        gr.HTML(
            HEADER + '<div class="pce-disclaimer" role="note"><b>Decision support only.</b> '
            f"{esc(DISCLAIMER.removeprefix('Decision support only. '))}</div>",
            js_on_load=None,
            elem_id="pce-disclaimer",
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=6, min_width=420, elem_id="pce-chat-col"):
                chatbot = gr.Chatbot(
                    label="Conversation",
                    elem_id="pce-chat",
                    height=620,
                    layout="panel",
                    placeholder=PLACEHOLDER,
                    sanitize_html=True,
                    render_markdown=True,
                    allow_tags=False,
                    latex_delimiters=[],
                    buttons=["copy", "copy_all"],
                    feedback_options=("Like", "Dislike"),
                    group_consecutive_messages=True,
                    show_label=False,
                )
                with gr.Row():
                    question = gr.Textbox(
                        placeholder="Describe the patient and ask. Enter sends; Shift+Enter "
                        "adds a line.",
                        show_label=False,
                        lines=1,
                        max_lines=8,
                        scale=8,
                        elem_id="pce-question",
                        autofocus=True,
                    )
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="pce-send")
                gr.Examples(
                    examples=[[v] for v in VIGNETTES],
                    inputs=[question],
                    label="Example vignettes (click to fill the message box)",
                    examples_per_page=6,
                )
                with gr.Accordion("Feedback on an answer", open=False, elem_id="pce-feedback"):
                    answer_pick = gr.Dropdown(
                        choices=[], label="Answer", interactive=True, elem_id="pce-feedback-answer"
                    )
                    rating = gr.Radio(
                        list(FEEDBACK_OUTCOMES), label="Rating", elem_id="pce-feedback-rating"
                    )
                    comment = gr.Textbox(
                        label="Comment (optional): what was wrong or missing?",
                        lines=2,
                        max_length=MAX_COMMENT_CHARS,
                        elem_id="pce-feedback-comment",
                    )
                    with gr.Row():
                        send_feedback = gr.Button("Record feedback", size="sm")
                        feedback_status = gr.Markdown(elem_id="pce-feedback-status")
                with gr.Row():
                    export_btn = gr.Button(
                        "Export conversation (Markdown)", size="sm", elem_id="pce-export"
                    )
                    new_chat = gr.Button("New conversation", size="sm", variant="stop")
                export_file = gr.File(
                    label="Conversation export",
                    visible=False,
                    interactive=False,
                    elem_id="pce-export-file",
                )
            with gr.Column(scale=5, min_width=380, elem_id="pce-card-col"):
                with gr.Group(elem_id="pce-findings"):
                    gr.HTML(
                        '<div class="pce-panel-title" style="padding:8px 10px 0">'
                        "Findings panel — what you set here overrides the text "
                        "(“unknown” = not set)</div>",
                        js_on_load=None,
                    )
                    with gr.Row():
                        symptomatic = _radio(
                            "symptomatic",
                            "Symptoms",
                            "Attributed to the cement emboli",
                            "pce-symptomatic",
                        )
                        location = _radio(
                            "location",
                            "Emboli location",
                            "Most proximal embolus; central = "
                            "trunk or main/right/left PA, peripheral = segmental or smaller "
                            "(tool convention)",
                            "pce-location",
                        )
                    with gr.Row():
                        unstable = _radio(
                            "hemodynamic_instability",
                            "Haemodynamic instability",
                            "Escalation: adds actions, never changes the tier",
                            "pce-unstable",
                        )
                        intracardiac = _radio(
                            "intracardiac_cement",
                            "Intracardiac cement",
                            "Right atrium or ventricle; escalation",
                            "pce-intracardiac",
                        )
                    extracted = gr.HTML(
                        findings_html(None), js_on_load=None, elem_id="pce-extracted", padding=True
                    )
                card = gr.HTML(
                    empty_card("No recommendation yet. Ask a question, or set the findings panel."),
                    js_on_load=None,
                    elem_id="pce-card",
                )
        gr.HTML(
            f'<div class="pce-footer">PCE Assistant {esc(versions.app)} · rules '
            f"{esc(versions.rules)} · knowledge {esc(versions.knowledge)} · model "
            f"{esc(versions.model)}</div>",
            js_on_load=None,
        )

        panel = [symptomatic, location, unstable, intracardiac]
        chat_outputs = [chatbot, question, card, extracted, session, answer_pick]
        gr.on(
            [question.submit, send.click],
            ui.respond,
            [question, *panel, session],
            chat_outputs,
            api_name="chat",
            api_description="Ask a question with the findings panel values; the narrative "
            "streams into the chat, then citations, follow-ups and the recommendation card.",
        )
        reeval_outputs = [chatbot, card, extracted, session, answer_pick]
        for radio in panel:
            radio.input(
                ui.reevaluate,
                [*panel, session],
                reeval_outputs,
                api_name="reevaluate" if radio is symptomatic else None,
                api_visibility="public" if radio is symptomatic else "private",
            )
        chatbot.option_select(ui.select_option, panel, panel, api_visibility="private").then(
            ui.reevaluate, [*panel, session], reeval_outputs, api_visibility="private"
        )
        chatbot.like(ui.like, [session], None, api_visibility="private")
        send_feedback.click(
            ui.feedback,
            [answer_pick, rating, comment, session],
            [feedback_status, comment],
            api_name="feedback",
        )
        export_btn.click(ui.export, [session], [export_file], api_name="export")
        reset_outputs = [
            chatbot,
            question,
            card,
            extracted,
            session,
            answer_pick,
            *panel,
            feedback_status,
            export_file,
        ]
        new_chat.click(ChatUI.reset, None, reset_outputs, api_visibility="private")
        chatbot.clear(ChatUI.reset, None, reset_outputs, api_visibility="private")
    return blocks


def launch_options() -> dict[str, Any]:
    """Page options for ``mount_gradio_app`` or ``Blocks.launch``: theme, CSS, minimal footer."""
    return {
        "theme": theme(),
        "css": CSS,
        "footer_links": ["api"],
        "run_history": False,
    }


def mount_ui(app: FastAPI, assistant: Assistant) -> FastAPI:
    """Mount the chat UI at ``/``; a login page when ui_user and ui_password are both set."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    settings = assistant.settings
    auth: tuple[str, str] | None = None
    if settings.ui_user and settings.ui_password is not None:
        auth = (settings.ui_user, settings.ui_password.get_secret_value())
    return gr.mount_gradio_app(
        app,
        build_blocks(assistant),
        path="/",
        server_name=settings.host,
        server_port=settings.port,
        auth=auth,
        auth_message="PCE Assistant: sign in with the account your administrator gave you."
        if auth
        else None,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        **launch_options(),
    )
