"""Jinja2 renderers of the view model: HTML (card, basis, panels), Markdown, plain text.

Three environments over ``templates/``, each escaping in one place instead of at every
interpolation:

- HTML (``*.html.j2``): Jinja2 autoescape; ``$``, ``{`` and ``}`` are written as entities too, so
  no client-side template ever expands text from a question or a source.
- Markdown (``*.md.j2``): every ``{{ value }}`` passes through ``md_text`` (HTML escaped, link and
  image syntax broken up), unless a filter built it as Markdown on purpose (``md_link``).
- Plain text (``*.txt.j2``): no markup, nothing to escape.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from assistant.present.view import Link

TEMPLATES = Path(__file__).with_name("templates")


# --- escaping ------------------------------------------------------------------------------------

_REF_DEFINITION = re.compile(r"(?m)^(\s{0,3})\[([^\]\n]*)\]:")


def md_text(value: object) -> str:
    """Text from a source or a user for Markdown: shown as written, never as HTML or a link.

    HTML is escaped (so `<script>` shows as text), and link, image and reference-definition
    syntax is broken up, so no passage or question can make the page fetch anything.
    """
    text = html.escape(str(value), quote=False)
    text = text.replace("](", "]\\(")
    return _REF_DEFINITION.sub(r"\1\\[\2]:", text)


class MarkdownSafe(str):
    """Markdown this module built on purpose (a link to a vetted URL); not escaped again."""

    __slots__ = ()


def _md_finalize(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, MarkdownSafe) else md_text(value)


def md_link(link: Link) -> MarkdownSafe:
    """[label](url) for a link the view model vetted (http/https DOI, PubMed, source page)."""
    target = quote(link.url, safe=":/?#&=%~+@!,;._-")
    label = md_text(link.label).replace("[", "").replace("]", "")
    return MarkdownSafe(f"[{label}]({target})")


def md_links(links: tuple[Link, ...], sep: str = " · ") -> MarkdownSafe:
    return MarkdownSafe(sep.join(md_link(link) for link in links))


def _html_finalize(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    text = str(escape(value))
    return Markup(text.replace("$", "&#36;").replace("{", "&#123;").replace("}", "&#125;"))


def _text_finalize(value: Any) -> Any:
    return "" if value is None else value


def _environment(finalize: Any, autoescape: bool) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=autoescape,
        finalize=finalize,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["md_link"] = md_link
    env.filters["md_links"] = md_links
    return env


HTML = _environment(_html_finalize, autoescape=True)
MARKDOWN = _environment(_md_finalize, autoescape=False)
TEXT = _environment(_text_finalize, autoescape=False)


def html_page(name: str, **context: Any) -> str:
    return HTML.get_template(name).render(**context).strip()


def markdown(name: str, **context: Any) -> str:
    return MARKDOWN.get_template(name).render(**context).strip()


def text(name: str, **context: Any) -> str:
    return TEXT.get_template(name).render(**context).strip()


# --- streaming -----------------------------------------------------------------------------------


def stream_prefixes(text: str, words_per_chunk: int = 12) -> Iterator[str]:
    """Growing prefixes of raw text, cut after spaces (so never inside a marker or an escape)."""
    pieces = re.split(r"(?<= )", text)
    for end in range(words_per_chunk, len(pieces), words_per_chunk):
        yield "".join(pieces[:end])


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
