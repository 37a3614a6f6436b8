"""What each face shows, as one call each: view model in, rendered template out.

The web UI, the conversation export, the CDS Hooks card detail and the CLI call only these; none
of them renders a recommendation itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from assistant.present import render
from assistant.present.text import Presentation, default_presentation
from assistant.present.view import (
    AnswerView,
    CardView,
    FindingsView,
    NoCardReason,
    View,
    all_citations,
    answer_view,
    card_view,
)
from assistant.types import Answer, Findings, Recommendation, Versions


class TurnView(View):
    """One question (or re-evaluation) of a conversation and its answer, for the export."""

    kind: Literal["ask", "reevaluate"]
    question: str
    panel: str = ""
    error: str | None = None
    answer: AnswerView | None = None


# --- web UI: HTML --------------------------------------------------------------------------------


def card_html(card: CardView) -> str:
    return render.html_page("card.html.j2", card=card)


def empty_card_html(reason: NoCardReason | None = None) -> str:
    return render.html_page("empty_card.html.j2", reason=reason)


def answer_card_html(view: AnswerView) -> str:
    """The card of an answer, or the sentence saying why there is none."""
    return card_html(view.card) if view.card else empty_card_html(view.no_card_reason)


def findings_html(view: FindingsView | None) -> str:
    return render.html_page("findings.html.j2", findings=view)


def header_html(text: Presentation, disclaimer: str) -> str:
    return render.html_page(
        "header.html.j2",
        subtitle=text.subtitle,
        disclaimer=disclaimer.removeprefix("Decision support only. "),
    )


def footer_html(versions: Versions) -> str:
    return render.html_page("footer.html.j2", versions=versions)


def panel_title_html() -> str:
    return render.html_page("panel_title.html.j2")


def prefill_note_html(
    applied: Sequence[tuple[str, str]], ignored: Sequence[tuple[str, str]], question: bool
) -> str:
    return render.html_page(
        "prefill_note.html.j2", applied=applied, ignored=ignored, question=question
    )


# --- web UI: chat Markdown -----------------------------------------------------------------------


def chat_markdown(view: AnswerView) -> str:
    """The chat answer: the one-line tier summary first (if there is a card), then the narrative."""
    return render.markdown("chat_answer.md.j2", answer=view, narrative=view.text, streaming=False)


def chat_stream(view: AnswerView, words_per_chunk: int = 12) -> Iterator[str]:
    """The chat answer while it streams: the summary at once, then the narrative in steps."""
    for prefix in render.stream_prefixes(view.text, words_per_chunk):
        yield render.markdown("chat_answer.md.j2", answer=view, narrative=prefix, streaming=True)


def citations_markdown(view: AnswerView) -> str:
    return render.markdown("citations.md.j2", citations=view.citations)


def follow_up_message(view: AnswerView) -> dict[str, Any] | None:
    """The follow-up questions as a chat message; their answers as clickable options."""
    if view.follow_up is None:
        return None
    message: dict[str, Any] = {
        "role": "assistant",
        "content": render.markdown("follow_up.md.j2", f=view.follow_up),
    }
    if view.follow_up.options:
        message["options"] = [o.model_dump() for o in view.follow_up.options]
    return message


def reevaluation_markdown(panel: Mapping[str, str], view: AnswerView) -> str:
    shown = ", ".join(f"{k} = {v}" for k, v in panel.items()) or "nothing set"
    return render.markdown("reevaluated.md.j2", shown=shown, card=view.card, in_scope=view.in_scope)


def error_markdown(
    kind: Literal["input", "assistant", "internal"], message: str = "", ref: str = ""
) -> str:
    return render.markdown("error.md.j2", kind=kind, message=message, ref=ref)


def user_markdown(question: str) -> str:
    """The clinician's own message, shown as typed."""
    return render.md_text(question) or "*(empty)*"


def export_markdown(
    turns: Sequence[TurnView],
    versions: Versions,
    disclaimer: str,
    exported_at: datetime | None = None,
) -> str:
    """The conversation as a Markdown file: questions, answers, citations and cards."""
    return (
        render.markdown(
            "export.md.j2",
            turns=turns,
            versions=versions,
            disclaimer=disclaimer,
            exported=render.stamp(exported_at or datetime.now(UTC)),
        )
        + "\n"
    )


# --- CDS Hooks and the CLI -----------------------------------------------------------------------


def cds_detail(rec: Recommendation, findings: Findings, text: Presentation | None = None) -> str:
    """The CDS Hooks card's detail Markdown for a recommendation from structured findings."""
    card = card_view(rec, findings, text or default_presentation())
    return render.markdown("cds_detail.md.j2", card=card, citations=all_citations(card))


def cli_text(answer: Answer, text: Presentation | None = None, convention: str = "") -> str:
    """The terminal's rendering of one answer."""
    view = answer_view(answer, text or default_presentation(), convention=convention)
    return render.text("cli_answer.txt.j2", answer=view, card=view.card)
