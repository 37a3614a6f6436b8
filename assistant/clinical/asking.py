"""Does a text ask this tool what to do for the patient? (``Findings.asks_management``)

Management words ('anticoagulate', 'follow-up', 'plan', 'recommend') are everywhere in clinical
text. In a pasted radiology report or note they say what its author advises or did ('Follow-up CT
recommended.', 'Plan: repeat CT'); only the clinician's own question or request asks for a
recommendation. So a management word counts only in a sentence that asks (the convention is
``asking`` in ``knowledge/lexicon.yaml``):

* it ends in a question mark, or
* it opens with a question word and does not end with a full stop (a question typed without '?':
  'what now', 'why 6 months of anticoagulation ...'), or
* it holds a request addressed to the tool ('should we start heparin', 'please advise'),

and it is not on a line that a report-section heading opened ('Impression: ...', 'Plan: ...'):
to the end of that line the text is the report's own, even with a radiologist's '?'.

A question about what a source did or said ('How long did Krueger recommend coumarin?') asks for
evidence, not for this patient's tier. That too is judged sentence by sentence, so a date in a
pasted report ('unchanged since 2024') does not silence the clinician's question after it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from assistant.clinical.lexicon import Lexicon

__all__ = ["asks_management"]

# Bullets, quotes and brackets before a sentence's first word.
_LEAD = re.compile(r"^[\s\-*•>\"'“‘(\[]*")


@dataclass(frozen=True)
class _Sentence:
    text: str  # without its leading bullets and spaces
    mark: str  # what ended it: '?', '.', '!', a line break, or '' at the end of the text
    in_section: bool  # on a line a report-section heading opened


def asks_management(text: str, lexicon: Lexicon) -> bool:
    """True when a sentence of the text asks what to do for this patient."""
    return any(
        _asks(s, lexicon) and any(p.search(s.text) for p in lexicon.management)
        for s in _sentences(text, lexicon)
    )


def _asks(sentence: _Sentence, lexicon: Lexicon) -> bool:
    asking = lexicon.asking
    if sentence.in_section:
        return False  # the report's own text
    if any(p.search(sentence.text) for p in lexicon.literature):
        return False  # about what a source did or said
    population = lexicon.population
    if any(p.search(sentence.text) for p in population.any_sentence) or (
        "." not in sentence.mark
        and any(p.search(sentence.text) for p in population.question_sentence)
    ):
        return False  # about patients in general ('how often do emboli need anticoagulation?')
    if "?" in sentence.mark:
        return True
    if "." not in sentence.mark and any(p.match(sentence.text) for p in asking.opening):
        return True
    return any(p.search(sentence.text) for p in asking.requests)


def _sentences(text: str, lexicon: Lexicon) -> Iterator[_Sentence]:
    """The text's sentences as the findings engine splits them (``context.sentence_boundary``),
    each marked when a report-section heading opened its line."""
    boundaries = lexicon.context.sentence_boundary.finditer(text)
    ends = [(b.start(), b.end(), b.group()) for b in boundaries]
    if not ends or ends[-1][1] < len(text):
        ends.append((len(text), len(text), ""))
    start, section = 0, False
    for end, after, mark in ends:
        body = _LEAD.sub("", text[start:end], count=1).rstrip()
        if start == 0 or text[start - 1] == "\n":  # a new line: does a heading open it?
            section = any(p.match(body) for p in lexicon.asking.headings)
        yield _Sentence(text=body, mark=mark, in_section=section)
        start = after
