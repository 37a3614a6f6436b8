"""Reading one text: every finding mention with its ConText modifiers, time and anatomy.

This is a ConText-style engine (NegEx/ConText: triggers modify the mentions in their scope; a scope
ends at a terminator or a sentence end) with the project's rules as data (``knowledge/lexicon.yaml``
and ``knowledge/anatomy.yaml``). ``read_mentions`` returns mentions with exact offsets; deciding the
findings from them is ``clinical/findings.py``.

Why not a clinical NLP library (issue 11 asked to prefer one; measured 2026-11 on this stack):

* medspaCy 1.3.1 (ConText + sectionizer; the latest release) needs ``spacy<3.8`` on Python < 3.12.
  In this venv pip resolves that by DOWNGRADING numpy 2.4.6 -> 1.26.4 under torch 2.13, chromadb and
  gradio 6, and adds spaCy 3.7.5, thinc 8.2.5, Cython, nltk, QuickUMLS/unqlite and pytest as runtime
  dependencies (283 MB of site-packages in a scratch venv). It does not install cleanly beside the
  pinned stack. Import + pipeline build ~1.0 s (the product's cold start is ~9 s), ~1.2 ms a text,
  offline with a blank pipeline, and its PyRuSH sentencizer logs every token at DEBUG by default.
  Its default ConText rules, tried on our cases, negated 'dyspnoea' in 'Denies cough; dyspnoea on
  exertion', read 'cannot exclude ... in the LPA' as NEGATED (not hedged), left '?extension into the
  RPA' asserted and 'baseline exertional dyspnoea, unchanged' current: each a path to a wrong tier
  that we would have to re-write as rules anyway.
* spaCy 3.8.18 + negspacy 1.1.0 install cleanly (no downgrade), but spaCy's import is 2.1-3.2 s cold
  and negspacy is NegEx only (no uncertainty, baseline, time, adjacency), with the same errors on
  the semicolon case and a sentence-wide scope that is the very cause of the 'remained asymptomatic
  and did not ...' bug of issue 11.

So the engine below stays ours: small, deterministic, no import cost, every span an exact slice of
the input, and every term, trigger and convention in the data files.

What is read, in order:

1. Sentences (``context.sentence_boundary``); a sentence that asks or states a population
   frequency ("Are most PCE symptomatic?", ``population``) states no finding of this patient: its
   mentions drop.
2. Mentions: symptom terms by group, generic, unverified and absent cues, instability terms,
   numeric rules (a normal value is kept as an update of its group), anatomy sites
   (``clinical/anatomy.py``), procedures. Triggers: negation, uncertainty, pseudo-triggers,
   terminators, baseline. Overlaps: the longest span wins.
3. Each trigger modifies the mentions in its scope (``_scope``). Absent cues ('asymptomatic') are
   never negated by a trigger's scope; only an ADJACENT negation flips one ('not asymptomatic').
   Anatomy is also negated by 'clear', 'unremarkable' after it. A baseline trigger ('chronic',
   'from COPD') makes a symptom assert nothing unless a change word ('new', 'worse') is next to it.
4. A site counts only if its clause names cement (``anatomy.cement_cues``). A hedged heart site
   ('possible cement in the RA') or a statement that the heart was not assessed ('heart not
   imaged') leaves intracardiac cement open: its value is 'possible' / 'not assessed'.
5. Time: each mention takes the phase of the nearest time marker in its clause (earlier, unmarked,
   later, current), so the caller can let the latest stated state win.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from assistant.clinical.anatomy import UNASSESSED, find_sites
from assistant.clinical.lexicon import BinaryTerms, Lexicon
from assistant.types import NOT_ASSESSED, POSSIBLE, FindingName

__all__ = ["PHASE_UNMARKED", "Mention", "read_mentions"]

# present: a verified symptom / instability term; generic: 'became symptomatic'; unverified: cough;
# absent: 'asymptomatic' (speaks for every group); weak_absent: 'incidental'; measured: a numeric
# rule fired; normal: a number that did not fire (updates its group only); site: anatomy; label:
# a procedure.
MentionKind = Literal[
    "present", "generic", "unverified", "absent", "weak_absent", "measured", "normal", "site",
    "label",
]
TriggerKind = Literal[
    "pre_negation",
    "post_negation",
    "anatomy_post_negation",
    "query_after",
    "pre_uncertainty",
    "post_uncertainty",
    "pseudo",
    "terminator",
    "baseline_pre",
    "baseline_post",
]
PHASE_EARLIER, PHASE_UNMARKED, PHASE_LATER, PHASE_CURRENT = 0, 1, 2, 3
GENERIC = "generic"
UNVERIFIED = "unverified"
HEART = "heart"
BINARY_TEXT = ("symptomatic", "hemodynamic_instability")


@dataclass(frozen=True)
class Mention:
    finding: FindingName
    kind: MentionKind
    start: int
    end: int
    label: str = ""  # location class, procedure name or numeric label
    group: str = ""  # symptom / instability group ('dyspnoea'), 'heart' for the heart
    negated: bool = False
    uncertain: bool = False
    baseline: bool = False
    flipped: bool = False  # an absent cue under an adjacent negation ('not asymptomatic')
    qualifier: bool = False  # a site decided by a word describing emboli ('segmental')
    phase: int = PHASE_UNMARKED

    @property
    def value(self) -> str:
        """What this mention says about its finding: 'yes', 'no', a label, or '' (nothing)."""
        if self.kind == "label":
            return self.label
        if self.kind == "site":
            if self.finding == "intracardiac_cement":
                # A hedged heart or one not assessed leaves the finding open (the tool asks);
                # doubt wins over a negation it qualifies ('cannot exclude no ...' is not 'no').
                if self.label == NOT_ASSESSED:
                    return NOT_ASSESSED
                if self.uncertain:
                    return POSSIBLE
                return "no" if self.negated else "yes"
            return self.label
        if self.kind == "measured":
            return "yes"
        if self.kind == "normal":
            return ""
        if self.kind == "absent":
            return "yes" if self.flipped else "no"
        if self.kind == "weak_absent":
            return "no"
        if self.kind == "unverified":
            return "no" if self.negated else UNVERIFIED
        return "no" if self.negated else "yes"

    @property
    def for_every_group(self) -> bool:
        """An asserted absent cue ('asymptomatic') speaks for every symptom."""
        return self.kind == "absent" and not self.flipped


@dataclass(frozen=True)
class _Trigger:
    kind: TriggerKind
    start: int
    end: int


@dataclass(frozen=True)
class _Segment:
    start: int
    end: int
    question: bool = False


def read_mentions(text: str, lexicon: Lexicon, *, require_cement: bool = True) -> list[Mention]:
    """Every mention of the text, in text order, with its context and phase.

    ``require_cement=False`` keeps anatomy without cement (to see what a text negates)."""
    sentences = _sentences(text, lexicon)
    mentions, triggers = _spans(text, lexicon)
    mentions = _apply_context(text, mentions, triggers, lexicon)
    clauses = _clauses(text, sentences, triggers)
    # Per clause, so 'Hypotensive, cement in the RPA; can cement emboli cause this?' keeps the
    # patient's findings of its first clause.
    population = [c for c in clauses if _is_population(text, c, lexicon)]
    # A text naming no cement at all is a question to this PCE tool: emboli are implied.
    implied = not _holds_cement(text, _Segment(0, len(text)), lexicon)
    kept = []
    for m in mentions:
        if any(s.start <= m.start < s.end for s in population):
            continue  # a statement about patients in general, not this patient
        clause = _clause_of(clauses, m)
        if (
            require_cement
            and m.kind == "site"
            and m.label not in ("unclear-statement", NOT_ASSESSED)  # statements need no cement word
            # A hedged vessel can only make the tool ask; a heart always needs cement in its
            # clause, so a catheter tip, hedged or not, never asks about intracardiac cement.
            and not (m.uncertain and m.finding == "location")
            and not _holds_cement(text, clause, lexicon)
            and not (implied and m.qualifier and _describes_emboli(text, m, lexicon))
        ):
            continue  # anatomy without cement: 'main PA 32 mm', a catheter tip in the RA
        kept.append(replace(m, phase=_phase(text, m, clause, lexicon)))
    return [_relabel(m) for m in kept]


def _relabel(m: Mention) -> Mention:
    # 'unclear-statement' marks a 'location not reported' statement (no cement needed) internally.
    return replace(m, label="unclear") if m.label == "unclear-statement" else m


# --- segments ------------------------------------------------------------------------------------


def _sentences(text: str, lexicon: Lexicon) -> list[_Segment]:
    segments: list[_Segment] = []
    start = 0
    for m in lexicon.context.sentence_boundary.finditer(text):
        segments.append(_Segment(start, m.end(), "?" in m.group()))
        start = m.end()
    if start < len(text):
        # A last sentence typed without '?' that opens with a question word asks (the same rule
        # as the asking check, lexicon ``asking.opening``): 'how do you stop cement ... during PVP'.
        tail = text[start:].strip()
        asks = any(p.match(tail) for p in lexicon.asking.opening)
        segments.append(_Segment(start, len(text), asks))
    return segments


def _clauses(text: str, sentences: list[_Segment], triggers: list[_Trigger]) -> list[_Segment]:
    """Sentences split further at terminators (';', 'but', 'although'...)."""
    cuts = sorted(t.start for t in triggers if t.kind == "terminator")
    clauses: list[_Segment] = []
    for s in sentences:
        start = s.start
        for cut in cuts:
            if s.start < cut < s.end:
                clauses.append(_Segment(start, cut, s.question))
                start = cut
        clauses.append(_Segment(start, s.end, s.question))
    return clauses


def _clause_of(clauses: list[_Segment], m: Mention) -> _Segment:
    return next((c for c in clauses if c.start <= m.start < c.end), _Segment(m.start, m.end))


def _is_population(text: str, sentence: _Segment, lexicon: Lexicon) -> bool:
    """A clause of a sentence that asks or states something about patients in general."""
    span = text[sentence.start : sentence.end]
    pop = lexicon.population
    if any(p.search(span) for p in pop.any_sentence):
        return True
    return sentence.question and any(p.search(span) for p in pop.question_sentence)


def _holds_cement(text: str, clause: _Segment, lexicon: Lexicon) -> bool:
    span = text[clause.start : clause.end]
    return any(p.search(span) for p in lexicon.anatomy.cement_cues)


def _describes_emboli(text: str, m: Mention, lexicon: Lexicon) -> bool:
    """A level word names a vessel ('peripheral branches') or stands alone ('central?'), rather
    than qualifying something else ('segmental instrumentation')."""
    span = text[m.start : m.end]
    anatomy = lexicon.anatomy
    if any(p.search(span) for p in (*anatomy.vessel, *anatomy.branch)):
        return True
    return _STANDS_ALONE.match(text, m.end) is not None


_STANDS_ALONE = re.compile(r"\s*(?:$|[^\w\s]|(?:and|or|only|PCE)\b)", re.IGNORECASE)


def _phase(text: str, m: Mention, clause: _Segment, lexicon: Lexicon) -> int:
    """The phase of the nearest time marker in the mention's clause (preceding markers first)."""
    span = text[clause.start : clause.end]
    markers: list[tuple[int, int, int]] = []
    lists = (
        (PHASE_EARLIER, lexicon.time.earlier),
        (PHASE_LATER, lexicon.time.later),
        (PHASE_CURRENT, lexicon.time.current),
    )
    for phase, patterns in lists:
        for pattern in patterns:
            for hit in pattern.finditer(span):
                markers.append((clause.start + hit.start(), clause.start + hit.end(), phase))
    before = [mk for mk in markers if mk[1] <= m.start]
    if before:
        return max(before, key=lambda mk: (mk[1], mk[2]))[2]
    # A marker just after the mention ('asymptomatic at that point', 'felt well for the first
    # 2 months') is its own; one after a comma starts the next statement ('..., now dyspnoeic').
    after = [
        mk
        for mk in markers
        if mk[1] > m.start and _post_marker_gap(text[m.end : max(m.end, mk[0])])
    ]
    if after:
        return min(after, key=lambda mk: (mk[0], -mk[2]))[2]
    return PHASE_UNMARKED


def _post_marker_gap(gap: str) -> bool:
    return not any(ch in gap for ch in ",:(") and _word_count(gap) <= 4


# --- mentions and triggers -----------------------------------------------------------------------


def _spans(text: str, lexicon: Lexicon) -> tuple[list[Mention], list[_Trigger]]:
    excluded = [(m.start(), m.end()) for p in lexicon.exclusions for m in p.finditer(text)]
    mentions = [
        m
        for m in _find_mentions(text, lexicon, excluded)
        if m.kind == "site" or not any(m.start < end and start < m.end for start, end in excluded)
    ]
    kept = _longest_first([*mentions, *_find_triggers(text, lexicon)])
    found = [s for s in kept if isinstance(s, Mention)]
    triggers = [s for s in kept if isinstance(s, _Trigger) and s.kind != "pseudo"]
    return found, triggers


def _find_mentions(
    text: str, lexicon: Lexicon, excluded: Sequence[tuple[int, int]]
) -> Iterator[Mention]:
    sym = lexicon.symptomatic
    binary: tuple[tuple[FindingName, BinaryTerms], ...] = (
        ("symptomatic", sym),
        ("hemodynamic_instability", lexicon.hemodynamic_instability),
    )
    for finding, terms in binary:
        for group, patterns in terms.present.items():
            yield from _matches(text, patterns, finding, "present", group=group)
        yield from _matches(text, terms.absent, finding, "absent", group=GENERIC)
    yield from _matches(text, sym.generic, "symptomatic", "generic", group=GENERIC)
    yield from _matches(text, sym.unverified, "symptomatic", "unverified", group=UNVERIFIED)
    yield from _matches(text, sym.weak_absent, "symptomatic", "weak_absent", group=GENERIC)
    for rule in lexicon.numeric:
        for m in rule.pattern.finditer(text):
            value = float(m.group("value"))
            if rule.fires(value):
                kind: MentionKind = "measured"
            elif rule.plausible_value(value):
                kind = "normal"
            else:
                continue
            yield Mention(
                rule.finding, kind, m.start(), m.end(), label=rule.label, group=rule.group
            )
    for site in find_sites(text, lexicon.anatomy, excluded):
        if site.kind == "heart":
            label = NOT_ASSESSED if site.level == UNASSESSED else ""
            yield Mention(
                "intracardiac_cement", "site", site.start, site.end, label=label, group=HEART
            )
        elif site.kind == "unclear":
            yield Mention("location", "site", site.start, site.end, label="unclear-statement")
        else:
            yield Mention(
                "location",
                "site",
                site.start,
                site.end,
                label=site.location_class,
                qualifier=site.qualifier,
            )
    for label, patterns in lexicon.procedure.terms.items():
        if label != lexicon.procedure.generic:  # a generic name states neither procedure
            yield from _matches(text, patterns, "procedure", "label", label=label)


def _matches(
    text: str,
    patterns: Iterable[re.Pattern[str]],
    finding: FindingName,
    kind: MentionKind,
    *,
    group: str = "",
    label: str = "",
) -> Iterator[Mention]:
    for pattern in patterns:
        for m in pattern.finditer(text):
            if m.end() > m.start():
                yield Mention(finding, kind, m.start(), m.end(), label=label, group=group)


def _find_triggers(text: str, lexicon: Lexicon) -> Iterator[_Trigger]:
    ctx = lexicon.context
    lists: tuple[tuple[TriggerKind, Iterable[re.Pattern[str]]], ...] = (
        ("pre_negation", ctx.pre_negation),
        ("post_negation", ctx.post_negation),
        ("anatomy_post_negation", ctx.anatomy_post_negation),
        ("query_after", ctx.query_after),
        ("pre_uncertainty", ctx.pre_uncertainty),
        ("post_uncertainty", ctx.post_uncertainty),
        ("pseudo", ctx.pseudo),
        ("terminator", (*ctx.terminators, ctx.sentence_boundary)),
        ("baseline_pre", ctx.baseline.pre),
        ("baseline_post", ctx.baseline.post),
    )
    for kind, patterns in lists:
        for pattern in patterns:
            for m in pattern.finditer(text):
                if m.end() > m.start() or kind == "terminator":
                    yield _Trigger(kind, m.start(), m.end())


def _longest_first(spans: Sequence[Mention | _Trigger]) -> list[Mention | _Trigger]:
    """Keep the longest of overlapping spans, in text order."""
    kept: list[Mention | _Trigger] = []
    for span in sorted(spans, key=_rank):
        clash = [k for k in kept if k.start < span.end and span.start < k.end]
        if not clash or all(_twin_triggers(k, span) for k in clash):
            kept.append(span)
    return sorted(kept, key=lambda s: (s.start, s.end))


def _rank(span: Mention | _Trigger) -> tuple[int, int, int]:
    # Longest first; on a tie a finding term, then a pseudo-trigger ('No, ...'), then a trigger.
    order = 0 if isinstance(span, Mention) else 1 if span.kind == "pseudo" else 2
    return (span.start - span.end, order, span.start)


def _twin_triggers(a: Mention | _Trigger, b: Mention | _Trigger) -> bool:
    """Two real triggers on one span both act (a word listed both as pre- and post-trigger)."""
    return (
        isinstance(a, _Trigger)
        and isinstance(b, _Trigger)
        and "pseudo" not in (a.kind, b.kind)
        and (a.start, a.end) == (b.start, b.end)
    )


# --- negation, uncertainty, baseline -------------------------------------------------------------


def _apply_context(
    text: str, mentions: list[Mention], triggers: list[_Trigger], lexicon: Lexicon
) -> list[Mention]:
    ctx = lexicon.context
    stops = [t for t in triggers if t.kind == "terminator"]
    negated: set[int] = set()
    uncertain: set[int] = set()
    baseline: set[int] = set()
    for trigger in triggers:
        if trigger.kind in ("terminator", "pseudo"):
            continue
        forward = trigger.kind in ("pre_negation", "pre_uncertainty", "baseline_pre")
        if forward:
            order = [i for i, m in enumerate(mentions) if m.start >= trigger.end]
        else:
            order = [i for i, m in reversed(list(enumerate(mentions))) if m.end <= trigger.start]
        if trigger.kind == "anatomy_post_negation":
            order = [i for i in order if mentions[i].kind == "site"]
        if trigger.kind == "query_after":
            order = [
                i
                for i in order[:1]
                if mentions[i].finding in BINARY_TEXT
                and _words_since_sentence_start(text, mentions[i].start, lexicon) <= ctx.query_words
            ]
        window = (
            ctx.uncertainty_window_words if "uncertainty" in trigger.kind else ctx.window_words
        )
        if trigger.kind == "query_after":
            window = 0
        scope = _scope(text, trigger, [(i, mentions[i]) for i in order], stops, lexicon, window)
        if trigger.kind.startswith("baseline"):
            baseline.update(i for i in scope if _baseline_applies(text, mentions[i], lexicon))
        elif trigger.kind.endswith("uncertainty") or trigger.kind == "query_after":
            uncertain.update(scope)
        else:
            negated.update(scope)
    return [
        replace(
            m,
            # A measurement is not a claim a trigger can deny ('denies dyspnoea, SpO2 86%'), and an
            # absent cue is flipped only by an adjacent negation (below), never by a wider scope.
            negated=i in negated and m.kind not in ("measured", "normal", "absent"),
            uncertain=i in uncertain,
            baseline=i in baseline,
            flipped=m.kind == "absent" and _adjacent_negation(text, m, lexicon),
        )
        for i, m in enumerate(mentions)
    ]


def _words_since_sentence_start(text: str, at: int, lexicon: Lexicon) -> int:
    starts = [m.end() for m in lexicon.context.sentence_boundary.finditer(text, 0, at)]
    return _word_count(text[max(starts, default=0) : at])


def _adjacent_negation(text: str, m: Mention, lexicon: Lexicon) -> bool:
    """'not asymptomatic', 'no longer feels well', "doesn't feel well": the negation touches it."""
    before = text[max(0, m.start - 40) : m.start]
    return any(
        hit.end() == len(before.rstrip()) and before[hit.end() :].isspace()
        for p in lexicon.context.double_negation
        for hit in p.finditer(before)
    )


def _baseline_applies(text: str, m: Mention, lexicon: Lexicon) -> bool:
    """A symptom stated as another disease's baseline asserts nothing, unless 'new' or 'worse'."""
    if m.finding not in ("symptomatic", "hemodynamic_instability") or m.kind not in (
        "present",
        "generic",
        "unverified",
        "measured",
        "normal",
    ):
        return False
    near = text[max(0, m.start - 25) : min(len(text), m.end + 25)]
    return not any(p.search(near) for p in lexicon.context.baseline.change)


def _scope(
    text: str,
    trigger: _Trigger,
    candidates: list[tuple[int, Mention]],
    stops: list[_Trigger],
    lexicon: Lexicon,
    window: int,
) -> list[int]:
    """Indices of the mentions a trigger modifies, walking away from it (forward or backward)."""
    ctx = lexicon.context
    scope: list[int] = []
    previous: Mention | _Trigger = trigger
    for index, mention in candidates:
        forward = mention.start >= previous.end
        lo, hi = (previous.end, mention.start) if forward else (mention.end, previous.start)
        if any(lo <= stop.start and stop.end <= hi for stop in stops):
            break
        gap = text[lo:hi]
        limit = window if previous is trigger else ctx.chain_gap_words
        if _word_count(gap) > limit:
            break
        if (
            isinstance(previous, Mention)
            and previous.finding != mention.finding
            and not any(j.search(gap) for j in ctx.cross_finding_joiners)
        ):
            break
        scope.append(index)
        if mention.kind == "absent":
            break  # 'no longer symptom-free: breathless' - an absent cue ends a list
        previous = mention
    return scope


def _word_count(gap: str) -> int:
    return sum(1 for token in gap.split() if any(ch.isalnum() for ch in token))
