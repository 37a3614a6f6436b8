"""One presentation layer: every face renders the same view model through the same templates.

``view`` builds frozen view models from an ``Answer`` (or a Recommendation and its Findings);
``render`` holds the Jinja2 environments (HTML autoescaped, Markdown escaped by one filter, plain
text); ``faces`` is one call per thing a face shows; ``text`` reads the words around a
recommendation (tier names, labels, captions) from ``knowledge/presentation.yaml``.
"""

from __future__ import annotations

from assistant.present.faces import (
    TurnView,
    answer_card_html,
    card_html,
    cds_detail,
    chat_markdown,
    chat_stream,
    citations_markdown,
    cli_text,
    empty_card_html,
    error_markdown,
    export_markdown,
    findings_html,
    follow_up_message,
    footer_html,
    header_html,
    panel_title_html,
    prefill_note_html,
    reevaluation_markdown,
    user_markdown,
)
from assistant.present.render import md_text
from assistant.present.text import (
    PANEL_CHOICES,
    PANEL_FIELDS,
    Presentation,
    default_presentation,
    load_presentation,
    presentation_for,
)
from assistant.present.view import (
    AnswerView,
    CardView,
    FindingsView,
    answer_view,
    card_view,
    citation_links,
    findings_view,
)

__all__ = [
    "PANEL_CHOICES",
    "PANEL_FIELDS",
    "AnswerView",
    "CardView",
    "FindingsView",
    "Presentation",
    "TurnView",
    "answer_card_html",
    "answer_view",
    "card_html",
    "card_view",
    "cds_detail",
    "chat_markdown",
    "chat_stream",
    "citation_links",
    "citations_markdown",
    "cli_text",
    "default_presentation",
    "empty_card_html",
    "error_markdown",
    "export_markdown",
    "findings_html",
    "findings_view",
    "follow_up_message",
    "footer_html",
    "header_html",
    "load_presentation",
    "md_text",
    "panel_title_html",
    "prefill_note_html",
    "presentation_for",
    "reevaluation_markdown",
    "user_markdown",
]
