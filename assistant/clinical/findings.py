"""Findings from free text: deterministic term matching with ConText-style negation and uncertainty.

``extract_findings`` reads one text; ``resolve_findings`` merges form/API values (which win), the
current question and earlier user turns (later wins). Every value keeps the ``Evidence`` that set
it, and a text that contradicts itself yields a ``Conflict`` instead of a guess.

How one text is read:

1. Find every term, numeric rule and ConText trigger of the lexicon; where spans overlap the
   longest wins (a tie goes to the finding term); spans inside an exclusion ('central line') drop.
2. Each trigger modifies the findings in its scope: the first finding within ``window_words`` of it,
   then further findings of a list, up to a terminator or a sentence end.
3. Uncertain mentions assert nothing. For yes/no findings an asserted term beats a negated one
   ('no chest pain, but dyspnoea' => yes), while an asserted 'asymptomatic' together with an
   asserted symptom is a conflict. For location the most proximal asserted term governs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

from assistant.clinical.lexicon import Lexicon
from assistant.errors import InputError
from assistant.types import Conflict, Evidence, ExplicitFindings, FindingName, Findings, Origin

__all__ = ["extract_findings", "resolve_findings"]

BinaryName = Literal["symptomatic", "hemodynamic_instability", "intracardiac_cement"]
BINARY_FINDINGS: tuple[BinaryName, ...] = (
    "symptomatic",
    "hemodynamic_instability",
    "intracardiac_cement",
)
FINDINGS: tuple[FindingName, ...] = (*BINARY_FINDINGS, "location", "procedure")

# present/absent: a yes/no term; measured: a numeric rule that fired; label: location or procedure.
MentionKind = Literal["present", "absent", "measured", "label"]
TriggerKind = Literal[
    "pre_negation",
    "post_negation",
    "pre_uncertainty",
    "post_uncertainty",
    "pseudo",
    "terminator",
]


@dataclass(frozen=True)
class _Mention:
    finding: FindingName
    kind: MentionKind
    start: int
    end: int
    label: str = ""
    negated: bool = False
    uncertain: bool = False

    @property
    def supports(self) -> str:
        """The value this mention is evidence for."""
        if self.kind == "label":
            return self.label
        if self.kind == "measured":
            return "yes"
        asserts_yes = (self.kind == "present") != self.negated
        return "yes" if asserts_yes else "no"


@dataclass(frozen=True)
class _Trigger:
    kind: TriggerKind
    start: int
    end: int


# --- one text ------------------------------------------------------------------------------------


def extract_findings(
    text: str, lexicon: Lexicon, *, origin: Origin = "text", turn: int | None = None
) -> Findings:
    """Read the findings asserted in one text. Pure: the same text gives the same Findings."""
    mentions, triggers = _spans(text, lexicon)
    mentions = _apply_context(text, mentions, triggers, lexicon)
    asserted = [m for m in mentions if not m.uncertain]

    def evidence(m: _Mention) -> Evidence:
        return Evidence(
            finding=m.finding,
            value=m.supports,
            text=text[m.start : m.end],
            origin=origin,
            start=m.start,
            end=m.end,
            turn=turn,
            negated=m.negated,
        )

    values: dict[str, Any] = {}
    kept: list[_Mention] = []
    conflicts: list[Conflict] = []
    for name in BINARY_FINDINGS:
        value, support, clash = _decide_yes_no([m for m in asserted if m.finding == name])
        values[name] = value
        kept += support
        if clash:
            conflicts.append(Conflict(finding=name, evidence=tuple(evidence(m) for m in clash)))

    label, support = _decide_location([m for m in asserted if m.finding == "location"], lexicon)
    doubt = _proximal_doubt(label, mentions, lexicon)
    if doubt:
        # "Peripheral emboli; central cannot be excluded": never settle on the milder class.
        conflicts.append(
            Conflict(finding="location", evidence=tuple(evidence(m) for m in support + doubt))
        )
    elif label in ("central", "peripheral"):
        values["location"] = label
    elif label is not None:
        values["unclear_location"] = label
    if not doubt:
        kept += support

    procedures = [m for m in asserted if m.finding == "procedure"]
    procedure, support = _decide_procedure(procedures, lexicon)
    values["procedure"] = procedure
    kept += support

    return Findings(
        **values,
        evidence=tuple(evidence(m) for m in _in_finding_order(kept)),
        conflicts=tuple(conflicts),
        # "What did Krueger recommend?" asks about a source, not what to do for this patient.
        asks_management=any(p.search(text) for p in lexicon.management)
        and not any(p.search(text) for p in lexicon.literature),
    )


def _spans(text: str, lexicon: Lexicon) -> tuple[list[_Mention], list[_Trigger]]:
    excluded = [(m.start(), m.end()) for p in lexicon.exclusions for m in p.finditer(text)]
    mentions = [
        m
        for m in _find_mentions(text, lexicon)
        if not any(m.start < end and start < m.end for start, end in excluded)
    ]
    kept = _longest_first([*mentions, *_find_triggers(text, lexicon)])
    found = [s for s in kept if isinstance(s, _Mention)]
    triggers = [s for s in kept if isinstance(s, _Trigger) and s.kind != "pseudo"]
    return found, triggers


def _find_mentions(text: str, lexicon: Lexicon) -> Iterator[_Mention]:
    for name in BINARY_FINDINGS:
        terms = getattr(lexicon, name)
        kinds: tuple[tuple[MentionKind, Iterable[re.Pattern[str]]], ...] = (
            ("present", terms.present),
            ("absent", terms.absent),
        )
        for kind, patterns in kinds:
            for pattern in patterns:
                for m in pattern.finditer(text):
                    yield _Mention(name, kind, m.start(), m.end())
    for rule in lexicon.numeric:
        for m in rule.pattern.finditer(text):
            if rule.fires(float(m.group("value"))):
                yield _Mention(rule.finding, "measured", m.start(), m.end(), label=rule.label)
    groups: tuple[tuple[FindingName, Mapping[str, Iterable[re.Pattern[str]]]], ...] = (
        ("location", lexicon.location.terms),
        ("procedure", lexicon.procedure.terms),
    )
    for finding, by_label in groups:
        for label, patterns in by_label.items():
            for pattern in patterns:
                for m in pattern.finditer(text):
                    yield _Mention(finding, "label", m.start(), m.end(), label=label)


def _find_triggers(text: str, lexicon: Lexicon) -> Iterator[_Trigger]:
    ctx = lexicon.context
    lists: tuple[tuple[TriggerKind, Iterable[re.Pattern[str]]], ...] = (
        ("pre_negation", ctx.pre_negation),
        ("post_negation", ctx.post_negation),
        ("pre_uncertainty", ctx.pre_uncertainty),
        ("post_uncertainty", ctx.post_uncertainty),
        ("pseudo", ctx.pseudo),
        ("terminator", (*ctx.terminators, ctx.sentence_boundary)),
    )
    for kind, patterns in lists:
        for pattern in patterns:
            for m in pattern.finditer(text):
                yield _Trigger(kind, m.start(), m.end())


def _longest_first(spans: Sequence[_Mention | _Trigger]) -> list[_Mention | _Trigger]:
    """Keep the longest of overlapping spans, in text order."""
    kept: list[_Mention | _Trigger] = []
    for span in sorted(spans, key=_rank):
        clash = [k for k in kept if k.start < span.end and span.start < k.end]
        if not clash or all(_twin_triggers(k, span) for k in clash):
            kept.append(span)
    return sorted(kept, key=lambda s: (s.start, s.end))


def _rank(span: _Mention | _Trigger) -> tuple[int, int, int]:
    # Longest first; on a tie a finding term, then a pseudo-trigger ('No, ...'), then a trigger.
    order = 0 if isinstance(span, _Mention) else 1 if span.kind == "pseudo" else 2
    return (span.start - span.end, order, span.start)


def _twin_triggers(a: _Mention | _Trigger, b: _Mention | _Trigger) -> bool:
    """Two real triggers on one span both act (a word listed both as pre- and post-trigger)."""
    return (
        isinstance(a, _Trigger)
        and isinstance(b, _Trigger)
        and "pseudo" not in (a.kind, b.kind)
        and (a.start, a.end) == (b.start, b.end)
    )


# --- negation and uncertainty --------------------------------------------------------------------


def _apply_context(
    text: str, mentions: list[_Mention], triggers: list[_Trigger], lexicon: Lexicon
) -> list[_Mention]:
    stops = [t for t in triggers if t.kind == "terminator"]
    negated: set[int] = set()
    uncertain: set[int] = set()
    for trigger in triggers:
        if trigger.kind in ("pre_negation", "pre_uncertainty"):
            order = [i for i, m in enumerate(mentions) if m.start >= trigger.end]
        elif trigger.kind in ("post_negation", "post_uncertainty"):
            order = [i for i, m in reversed(list(enumerate(mentions))) if m.end <= trigger.start]
        else:
            continue
        scope = _scope(text, trigger, [(i, mentions[i]) for i in order], stops, lexicon)
        (negated if trigger.kind.endswith("negation") else uncertain).update(scope)
    return [
        replace(
            m,
            # A measurement is not a claim a trigger can deny ('denies dyspnoea, SpO2 86%').
            negated=i in negated and m.kind != "measured",
            uncertain=i in uncertain,
        )
        for i, m in enumerate(mentions)
    ]


def _scope(
    text: str,
    trigger: _Trigger,
    candidates: list[tuple[int, _Mention]],
    stops: list[_Trigger],
    lexicon: Lexicon,
) -> list[int]:
    """Indices of the mentions a trigger modifies, walking away from it (forward or backward)."""
    ctx = lexicon.context
    scope: list[int] = []
    previous: _Mention | _Trigger = trigger
    for index, mention in candidates:
        forward = mention.start >= previous.end
        lo, hi = (previous.end, mention.start) if forward else (mention.end, previous.start)
        if any(lo <= stop.start and stop.end <= hi for stop in stops):
            break
        gap = text[lo:hi]
        limit = ctx.window_words if previous is trigger else ctx.chain_gap_words
        if _word_count(gap) > limit:
            break
        if (
            isinstance(previous, _Mention)
            and previous.finding != mention.finding
            and not any(j.search(gap) for j in ctx.cross_finding_joiners)
        ):
            break
        scope.append(index)
        previous = mention
    return scope


def _word_count(gap: str) -> int:
    return sum(1 for token in gap.split() if any(ch.isalnum() for ch in token))


# --- deciding each finding -----------------------------------------------------------------------


def _decide_yes_no(
    mentions: list[_Mention],
) -> tuple[bool | None, list[_Mention], list[_Mention]]:
    """Value, the mentions supporting it, and the mentions in conflict (if any)."""
    yes = [m for m in mentions if m.supports == "yes"]
    no = [m for m in mentions if m.supports == "no"]
    # Only an asserted negative cue ('asymptomatic', 'haemodynamically stable') contradicts a yes;
    # a negated symptom ('no chest pain') merely says that one symptom is absent.
    firm_no = [m for m in no if m.kind == "absent" and not m.negated]
    if yes and firm_no:
        return None, [], sorted(yes + firm_no, key=lambda m: m.start)
    if yes:
        return True, yes, []
    if no:
        return False, no, []
    return None, [], []


def _decide_location(
    mentions: list[_Mention], lexicon: Lexicon
) -> tuple[str | None, list[_Mention]]:
    """The most proximal asserted location (lexicon precedence); negated mentions say nothing."""
    asserted = [m for m in mentions if not m.negated]
    for label in lexicon.location.precedence:
        support = [m for m in asserted if m.label == label]
        if support:
            return label, support
    return None, []


def _proximal_doubt(
    label: str | None, mentions: list[_Mention], lexicon: Lexicon
) -> list[_Mention]:
    """Uncertain (not negated) mentions of a location more proximal than the asserted one."""
    if label is None:
        return []
    rank = lexicon.location.precedence.index
    return [
        m
        for m in mentions
        if m.finding == "location" and m.uncertain and not m.negated and rank(m.label) < rank(label)
    ]


def _negates_location(text: str, label: str, lexicon: Lexicon) -> bool:
    mentions, triggers = _spans(text, lexicon)
    mentions = _apply_context(text, mentions, triggers, lexicon)
    return any(m.finding == "location" and m.label == label and m.negated for m in mentions)


def _decide_procedure(
    mentions: list[_Mention], lexicon: Lexicon
) -> tuple[str | None, list[_Mention]]:
    asserted = [m for m in mentions if not m.negated]
    specific = [m for m in asserted if m.label != lexicon.procedure.generic]
    chosen = (specific or asserted)[:1]
    if not chosen:
        return None, []
    label = chosen[0].label
    return label, [m for m in asserted if m.label == label]


def _in_finding_order(mentions: list[_Mention]) -> list[_Mention]:
    return sorted(mentions, key=lambda m: (FINDINGS.index(m.finding), m.start))


# --- merging explicit values, this question and earlier turns ------------------------------------


def resolve_findings(
    question: str,
    lexicon: Lexicon,
    *,
    explicit: ExplicitFindings | Mapping[str, object] | None = None,
    history: Sequence[str] = (),
) -> Findings:
    """Merge explicit values (win), this question's text, then earlier turns (later wins).

    Each finding is taken whole from the highest layer that says anything about it, so a later
    statement is an update, not a contradiction; a conflict inside one text stays a conflict unless
    an explicit value settles it.
    """
    stated = ExplicitFindings.parse(explicit)
    form = _explicit_findings(stated, lexicon)
    current = extract_findings(question, lexicon)
    earlier = [
        extract_findings(turn_text, lexicon, origin="history", turn=index)
        for index, turn_text in enumerate(_checked_history(history))
    ]
    layers = [form, current, *reversed(earlier)]

    values: dict[str, Any] = {}
    evidence: list[Evidence] = []
    conflicts: list[Conflict] = []
    for name in FINDINGS:
        layer = next((layer for layer in layers if _speaks_about(layer, name)), None)
        if layer is None:
            continue
        values[name] = getattr(layer, name)
        if name == "location":
            values["unclear_location"] = layer.unclear_location
        evidence += [e for e in layer.evidence if e.finding == name]
        conflicts += [c for c in layer.conflicts if c.finding == name]
    if not _speaks_about(form, "location"):
        texts = [question, *reversed(_checked_history(history))]
        _keep_central(values, evidence, list(zip(texts, layers[1:], strict=True)), lexicon)
    return Findings(
        **values,
        evidence=tuple(evidence),
        conflicts=tuple(conflicts),
        # A form submission asks for a recommendation even when the question text does not.
        asks_management=current.asks_management or bool(stated.model_fields_set),
    )


def _keep_central(
    values: dict[str, Any],
    evidence: list[Evidence],
    newest_first: list[tuple[str, Findings]],
    lexicon: Lexicon,
) -> None:
    """A later turn adds emboli, it does not remove central ones ("also peripheral emboli").

    Only a later turn that negates 'central' ("not central after all") takes it back.
    """
    if values.get("location") == "central":
        return
    for i, (_, layer) in enumerate(newest_first):
        if layer.location != "central":
            continue
        if any(_negates_location(text, "central", lexicon) for text, _ in newest_first[:i]):
            return
        values["location"] = "central"
        values["unclear_location"] = None
        evidence += [e for e in layer.evidence if e.finding == "location"]
        return


def _speaks_about(layer: Findings, name: FindingName) -> bool:
    if any(c.finding == name for c in layer.conflicts):
        return True
    if name == "location" and layer.unclear_location is not None:
        return True
    return getattr(layer, name) is not None


def _checked_history(history: Sequence[str]) -> Sequence[str]:
    if isinstance(history, str) or not all(isinstance(turn, str) for turn in history):
        raise InputError(
            "history must be a list of the earlier user messages (text), oldest first",
            field="history",
        )
    return history


def _explicit_findings(explicit: ExplicitFindings, lexicon: Lexicon) -> Findings:
    """Findings stated as data; 'unknown' (None) leaves the finding to the text."""
    values = explicit.stated()
    if "procedure" in values:
        values["procedure"] = _canonical_procedure(values["procedure"], lexicon)
    evidence = []
    for key, value in values.items():
        shown = ("yes" if value else "no") if isinstance(value, bool) else value
        evidence.append(
            Evidence(
                finding=cast(FindingName, key),
                value=shown,
                text=f"form: {key} = {shown}",
                origin="explicit",
            )
        )
    return Findings(**values, evidence=tuple(evidence))


def _canonical_procedure(name: str, lexicon: Lexicon) -> str:
    """Normalise abbreviations ('BKP' -> 'kyphoplasty'); keep anything unrecognised as written."""
    for canonical, patterns in lexicon.procedure.terms.items():
        if any(p.fullmatch(name) for p in patterns):
            return canonical
    return name
