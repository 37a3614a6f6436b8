"""The Gradio chat web UI: chat with cited answers, a findings panel and the recommendation card.

``build_blocks(assistant)`` lays the page out; ``mount_ui(app, assistant)`` mounts it at ``/`` on
the FastAPI app (login from ``ui_user``/``ui_password`` when both are set; never a share link).
The handlers live on ``ChatUI`` as plain methods, so tests call them without a browser.

Everything shown is rendered by the presentation layer (``assistant.present``) from the same view
model as every other face; this module only wires Gradio to it. Text from sources and users is
escaped there (autoescaped HTML templates, one Markdown filter); the Chatbot's own HTML sanitiser
stays on as a second guard. The page loads nothing from the internet: system fonts only, no
analytics, no share link, no run history.

Opening ``/?symptomatic=yes&location=central&question=...`` (the CDS link card) sets the findings
panel and the message box from the query, validated by ``ExplicitFindings``; a bad value is left
out with a note on the page, never an error page.
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
from pydantic import ValidationError

from assistant import present
from assistant.assistant import DISCLAIMER, Assistant
from assistant.errors import AssistantError, InputError
from assistant.present import PANEL_CHOICES, PANEL_FIELDS
from assistant.types import Answer, ExplicitFindings, Versions

log = logging.getLogger(__name__)

PanelValue = str  # "yes" | "no" | "unknown" (symptoms, instability, intracardiac) or location
FEEDBACK_OUTCOMES: dict[str, str] = {
    "Helpful": "helpful",
    "Not helpful": "not_helpful",
    "Evidence wrong": "evidence_wrong",
}
LIKE_OUTCOMES: dict[str, str] = {"Like": "helpful", "Dislike": "not_helpful"}
MAX_COMMENT_CHARS = 4000
QUESTION_PARAM = "question"
# Below this width the columns stack: the card goes first, and after an answer the page scrolls to
# it, so the tier and its escalations are the first thing seen on a phone (see ui.css).
NARROW_MAX_WIDTH_PX = 900
SHOW_CARD_JS = (
    f"() => {{ if (window.matchMedia('(max-width: {NARROW_MAX_WIDTH_PX}px)').matches) {{ "
    "const card = document.getElementById('pce-card'); "
    "if (card) { card.scrollIntoView({block: 'start'}); } } }"
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


@dataclass(frozen=True)
class Prefill:
    """What a link's query sets: panel values (radio words), the question, and what was left out."""

    panel: dict[str, str]
    question: str | None
    ignored: list[tuple[str, str]]


def _radio_word(value: object) -> str:
    return (
        "unknown"
        if value is None
        else "yes"
        if value is True
        else "no"
        if value is False
        else str(value)
    )


def prefill_from_query(params: Mapping[str, Sequence[str]]) -> Prefill:
    """Read the CDS link card's query: each finding validated by ``ExplicitFindings`` on its own.

    A bad value, an unknown name or a name given twice with different values is left out and
    named in ``ignored``; nothing here raises. Names starting with '__' belong to Gradio.
    """
    panel: dict[str, str] = {}
    ignored: list[tuple[str, str]] = []
    question: str | None = None
    for name, values in params.items():
        distinct = list(dict.fromkeys(values))
        if name.startswith("__"):
            continue
        if len(distinct) != 1:
            ignored.append((name, "given more than once with different values"))
            continue
        raw = distinct[0]
        if name == QUESTION_PARAM:
            question = raw.strip() or None
            continue
        if name not in PANEL_FIELDS:
            ignored.append((name, f"not a findings-panel field (use {', '.join(PANEL_FIELDS)})"))
            continue
        try:
            checked = ExplicitFindings.model_validate({name: raw})
        except ValidationError as exc:
            ignored.append((name, str(exc.errors()[0]["msg"]).removeprefix("Value error, ")))
            continue
        panel[name] = _radio_word(getattr(checked, name))
    return Prefill(panel=panel, question=question, ignored=ignored)


def _query(request: gr.Request | None) -> dict[str, list[str]]:
    params = getattr(request, "query_params", None) if request is not None else None
    if not params:
        return {}
    getlist = getattr(params, "getlist", None)
    return {str(k): [str(v) for v in (getlist(k) if getlist else [params[k]])] for k in params}


def _error_text(exc: Exception) -> str:
    if isinstance(exc, InputError):
        return present.error_markdown("input", str(exc))
    if isinstance(exc, AssistantError):
        return present.error_markdown("assistant", str(exc))
    ref = uuid.uuid4().hex[:8]
    log.exception("UI: unexpected error (ref %s)", ref)
    return present.error_markdown("internal", ref=ref)


# --- export --------------------------------------------------------------------------------------


def conversation_markdown(
    session: Session,
    versions: Versions,
    text: present.Presentation,
    disclaimer: str = DISCLAIMER,
    convention: str = "",
) -> str:
    """The conversation as Markdown: each question, answer, citations and recommendation."""
    turns = [
        present.TurnView(
            kind=turn.kind,
            question=turn.question,
            panel=", ".join(f"{k} = {v}" for k, v in turn.panel.items()),
            error=turn.error,
            answer=present.answer_view(
                turn.answer,
                text,
                convention=convention,
                previous_tier=turn.previous_tier,
                reevaluated=turn.kind == "reevaluate",
            )
            if turn.answer is not None and turn.error is None
            else None,
        )
        for turn in session.turns
    ]
    return present.export_markdown(turns, versions, disclaimer)


# --- handlers ------------------------------------------------------------------------------------


def _username(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) if request is not None else None


class ChatUI:
    """Event handlers: plain methods over an Assistant and a Session; no browser needed."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.convention = assistant.location_convention
        self.text = present.presentation_for(assistant.settings.knowledge_dir)

    def view(
        self, answer: Answer, *, reevaluated: bool = False, previous_tier: str | None = None
    ) -> present.AnswerView:
        return present.answer_view(
            answer,
            self.text,
            convention=self.convention,
            reevaluated=reevaluated,
            previous_tier=previous_tier,
        )

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
        """Ask; stream the answer (tier summary first); then citations, follow-ups and the card.

        Yields (chat messages, textbox, card html, findings html, session, feedback dropdown).
        """
        session = session if session is not None else Session()
        explicit = panel_values(symptomatic, location, hemodynamic_instability, intracardiac_cement)
        question = message if isinstance(message, str) else ""
        history = session.user_questions()[-self.assistant.settings.max_history_turns :]
        messages = session.messages
        messages.append({"role": "user", "content": present.user_markdown(question)})
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
        view = self.view(answer)
        card = present.answer_card_html(view)
        found = present.findings_html(view.findings)

        messages.append({"role": "assistant", "content": ""})
        session.message_answer[len(messages) - 1] = answer.id
        panels: tuple[Any, Any] = (card, found)  # the card arrives with the first words
        for partial in present.chat_stream(view):
            messages[-1] = {"role": "assistant", "content": partial}
            yield list(messages), "", *panels, session, unchanged
            panels = (unchanged, unchanged)  # sent once; after that only the narrative grows
        messages[-1] = {"role": "assistant", "content": present.chat_markdown(view)}
        if view.in_scope and view.citations:
            messages.append({"role": "assistant", "content": present.citations_markdown(view)})
            session.message_answer[len(messages) - 1] = answer.id
        follow = present.follow_up_message(view)
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
        view = self.view(answer, reevaluated=True, previous_tier=previous_tier)
        session.messages.append(
            {"role": "assistant", "content": present.reevaluation_markdown(explicit or {}, view)}
        )
        session.message_answer[len(session.messages) - 1] = answer.id
        follow = present.follow_up_message(view)
        if follow is not None:
            session.messages.append(follow)
            session.message_answer[len(session.messages) - 1] = answer.id
        return (
            list(session.messages),
            present.answer_card_html(view),
            present.findings_html(view.findings),
            session,
            self._answer_dropdown(session),
        )

    def panel_card(self, explicit: dict[str, str] | None, user: str | None) -> tuple[str, str]:
        """(card html, findings html) from the structured findings alone (no retrieval)."""
        if not explicit:
            return present.empty_card_html(), present.findings_html(None)
        findings, rec, _ = self.assistant.recommend_from(explicit, user=user, surface="ui")
        card = present.card_view(
            rec,
            findings,
            self.text,
            versions=self.assistant.versions,
            convention=self.convention,
            source="panel",
        )
        return present.card_html(card), present.findings_html(
            present.findings_view(findings, self.text)
        )

    def _panel_only(
        self, explicit: dict[str, str] | None, session: Session, user: str | None
    ) -> tuple[Any, ...]:
        """No question yet: the card from the structured findings alone (no retrieval)."""
        card, found = self.panel_card(explicit, user)
        return list(session.messages), card, found, session, self._answer_dropdown(session)

    def prefill(self, request: gr.Request | None = None) -> tuple[Any, ...]:
        """Page load: set the panel and the message box from the link's query (the CDS link card).

        Returns (question box, four radios, note html, card html, findings html); unchanged
        outputs when the query holds nothing for us.
        """
        query = _query(request)
        found = prefill_from_query(query)
        unchanged = gr.skip()
        if not found.panel and found.question is None and not found.ignored:
            return (unchanged,) * 8
        radios = tuple(found.panel.get(name, "unknown") for name in PANEL_FIELDS)
        note = present.prefill_note_html(
            [(self.text.label(k), v) for k, v in found.panel.items()],
            found.ignored,
            question=found.question is not None,
        )
        card, extracted = unchanged, unchanged
        if found.panel:
            try:
                card, extracted = self.panel_card(panel_findings(found.panel), _username(request))
            except AssistantError:  # the note says what was set; the card stays empty
                log.exception("UI: prefill card failed")
        question = found.question if found.question is not None else unchanged
        return (question, *radios, note, card, extracted)

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
        text = conversation_markdown(
            session, self.assistant.versions, self.text, convention=self.convention
        )
        path.write_text(text, encoding="utf-8")
        return gr.update(value=str(path), visible=True)

    @staticmethod
    def reset() -> tuple[Any, ...]:
        empty: list[dict[str, Any]] = []
        return (
            empty,
            "",
            present.empty_card_html(),
            present.findings_html(None),
            Session(),
            gr.update(choices=[], value=None),
            "unknown",
            "unknown",
            "unknown",
            "unknown",
            "",
            gr.update(value=None, visible=False),
            "",
        )


def export_path() -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    folder = Path(tempfile.mkdtemp(prefix="pce-export-"))
    return folder / f"pce-conversation-{stamp}.md"


# --- page ----------------------------------------------------------------------------------------

# Styles live beside this module (package data), so this file stays about behaviour.
CSS = (Path(__file__).with_name("ui.css")).read_text(encoding="utf-8")


def theme() -> gr.themes.Base:
    """System fonts only (nothing fetched from a font CDN); colours that pass WCAG AA contrast.

    One light palette in both colour schemes: the card and its tier colours are designed on light
    backgrounds, and with Gradio's dark variables an escalation's actions were light text on a
    light card, so a browser in dark mode would hide them.
    """
    base = gr.themes.Soft(
        primary_hue="blue",
        neutral_hue="slate",
        font=["system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
    ).set(
        # The Soft defaults put white on blue-500 and blue-500 on blue-100 (about 3:1); AA needs
        # 4.5:1 for normal text, so darker shades carry text.
        button_primary_background_fill="*primary_700",
        button_primary_background_fill_hover="*primary_800",
        button_primary_border_color="*primary_700",
        button_primary_border_color_hover="*primary_800",
        checkbox_label_background_fill_selected="*primary_700",
        block_label_text_color="*primary_800",
        block_title_text_color="*primary_800",
        block_info_text_color="*neutral_600",
        body_text_color_subdued="*neutral_600",
        link_text_color="*primary_700",
        link_text_color_visited="*primary_800",
    )
    light = {
        name: getattr(base, name.removesuffix("_dark"))
        for name in vars(base)
        if name.endswith("_dark") and hasattr(base, name.removesuffix("_dark"))
    }
    return base.set(**light)


def _radio(text: present.Presentation, name: str, elem_id: str) -> gr.Radio:
    finding = text.findings[name]
    return gr.Radio(
        choices=list(PANEL_CHOICES[name]),
        value="unknown",
        label=finding.panel_label,
        info=finding.hint,
        elem_id=elem_id,
    )


def build_blocks(assistant: Assistant) -> gr.Blocks:
    """The page: chat on the left; findings panel and recommendation card on the right.

    On a narrow screen the columns stack with the card first (ui.css), then the chat.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    ui = ChatUI(assistant)
    text = ui.text
    with gr.Blocks(title="PCE Assistant", analytics_enabled=False) as blocks:
        session = gr.State(Session())
        gr.HTML(present.header_html(text, DISCLAIMER), js_on_load=None, elem_id="pce-disclaimer")
        with gr.Row(equal_height=False, elem_id="pce-main"):
            with gr.Column(scale=6, min_width=420, elem_id="pce-chat-col"):
                chatbot = gr.Chatbot(
                    label="Conversation",
                    elem_id="pce-chat",
                    height=620,
                    layout="panel",
                    placeholder=text.placeholder,
                    sanitize_html=True,
                    render_markdown=True,
                    allow_tags=False,
                    latex_delimiters=[],
                    buttons=["copy", "copy_all"],
                    feedback_options=("Like", "Dislike"),
                    group_consecutive_messages=True,
                    show_label=False,
                )
                with gr.Row(elem_id="pce-ask"):
                    question = gr.Textbox(
                        placeholder="Describe the patient and ask. Enter sends; Shift+Enter "
                        "adds a line.",
                        label="Your question",
                        show_label=False,
                        lines=1,
                        max_lines=8,
                        scale=8,
                        elem_id="pce-question",
                        autofocus=True,
                    )
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="pce-send")
                gr.Examples(
                    examples=[[v] for v in text.examples],
                    inputs=[question],
                    label="Example vignettes (click to fill the message box)",
                    examples_per_page=6,
                    elem_id="pce-examples",
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
                with gr.Row(elem_id="pce-tools"):
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
                prefill_note = gr.HTML("", js_on_load=None, elem_id="pce-prefill")
                with gr.Group(elem_id="pce-findings"):
                    gr.HTML(present.panel_title_html(), js_on_load=None, padding=True)
                    with gr.Row():
                        symptomatic = _radio(text, "symptomatic", "pce-symptomatic")
                        location = _radio(text, "location", "pce-location")
                    with gr.Row():
                        unstable = _radio(text, "hemodynamic_instability", "pce-unstable")
                        intracardiac = _radio(text, "intracardiac_cement", "pce-intracardiac")
                    extracted = gr.HTML(
                        present.findings_html(None),
                        js_on_load=None,
                        elem_id="pce-extracted",
                        padding=True,
                    )
                card = gr.HTML(present.empty_card_html(), js_on_load=None, elem_id="pce-card")
        gr.HTML(present.footer_html(assistant.versions), js_on_load=None, elem_id="pce-footer")

        panel = [symptomatic, location, unstable, intracardiac]
        chat_outputs = [chatbot, question, card, extracted, session, answer_pick]
        gr.on(
            [question.submit, send.click],
            ui.respond,
            [question, *panel, session],
            chat_outputs,
            api_name="chat",
            api_description="Ask a question with the findings panel values; the answer streams "
            "into the chat (tier summary first), then citations, follow-ups and the card.",
        ).then(None, None, None, js=SHOW_CARD_JS, api_visibility="private")
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
            prefill_note,
        ]
        new_chat.click(ChatUI.reset, None, reset_outputs, api_visibility="private")
        chatbot.clear(ChatUI.reset, None, reset_outputs, api_visibility="private")
        blocks.load(
            ui.prefill,
            None,
            [question, *panel, prefill_note, card, extracted],
            api_visibility="private",
            show_progress="hidden",  # most pages have no query: no flicker over the panel
        )
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
