"""Findings from free text, decided from the mentions that ``clinical/context.py`` reads.

``extract_findings`` reads one text; ``resolve_findings`` merges form/API values (which win), the
current question and earlier user turns (later wins). Every value keeps the ``Evidence`` that set
it, the statements it superseded (``Findings.overridden``), and a text that contradicts itself
yields a ``Conflict`` instead of a guess. (Why the engine is ours and not a clinical NLP library:
see ``clinical/context.py``.)

How each finding is decided from one text (conventions: ``knowledge/lexicon.yaml`` and
``knowledge/anatomy.yaml``; hedged, baseline and population mentions assert nothing):

* Yes/no findings (symptoms, instability, cement in the heart): statements come in groups (one kind
  of symptom each); an absent cue ('asymptomatic') speaks for every group. For each group the
  latest stated phase wins ('initially stable, then shock'); within one phase a present term beats
  a negated one ('no chest pain, but dyspnoea'), a normal number only clears an earlier abnormal
  one, and an asserted absent cue together with a present symptom is a conflict. Cough and
  haemoptysis are unverified: alone they leave symptoms unknown. 'Incidental' is weak: it counts
  only when nothing else is said. A hedged or not-assessed heart ('possible cement in the right
  atrium', 'heart not imaged') sets nothing but is kept as evidence ('possible', 'not assessed'),
  so the rules table asks about it.
* Location: the most proximal site that holds cement and is asserted decides; a hedged site more
  proximal than it is a conflict; a negated site says nothing.
* Procedure: the first vertebroplasty or kyphoplasty named and asserted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from assistant.clinical.asking import asks_management
from assistant.clinical.context import GENERIC, UNVERIFIED, Mention, read_mentions
from assistant.clinical.lexicon import Lexicon
from assistant.errors import InputError
from assistant.types import (
    OPEN_VALUES,
    Conflict,
    Evidence,
    ExplicitFindings,
    FindingName,
    Findings,
    Origin,
)

__all__ = ["extract_findings", "resolve_findings"]

BinaryName = Literal["symptomatic", "hemodynamic_instability", "intracardiac_cement"]
BINARY_FINDINGS: tuple[BinaryName, ...] = (
    "symptomatic",
    "hemodynamic_instability",
    "intracardiac_cement",
)
FINDINGS: tuple[FindingName, ...] = (*BINARY_FINDINGS, "location", "procedure")


@dataclass
class _Decision:
    """One finding decided from one text: its value and the mentions behind it."""

    value: Any = None
    used: list[Mention] = field(default_factory=list)
    overridden: list[Mention] = field(default_factory=list)
    conflict: list[Mention] = field(default_factory=list)
    unclear: str | None = None


# --- one text ------------------------------------------------------------------------------------


def extract_findings(
    text: str, lexicon: Lexicon, *, origin: Origin = "text", turn: int | None = None
) -> Findings:
    """Read the findings asserted in one text. Pure: the same text gives the same Findings."""
    mentions = read_mentions(text, lexicon)

    def evidence(m: Mention) -> Evidence:
        return Evidence(
            finding=m.finding,
            value=m.value,
            text=text[m.start : m.end],
            origin=origin,
            start=m.start,
            end=m.end,
            turn=turn,
            negated=m.negated or m.flipped,
        )

    decisions: dict[FindingName, _Decision] = {
        name: _decide_binary([m for m in mentions if m.finding == name]) for name in BINARY_FINDINGS
    }
    decisions["location"] = _decide_location(
        [m for m in mentions if m.finding == "location"], lexicon
    )
    decisions["procedure"] = _decide_procedure([m for m in mentions if m.finding == "procedure"])

    values: dict[str, Any] = {name: d.value for name, d in decisions.items()}
    values["unclear_location"] = decisions["location"].unclear
    used = [m for d in decisions.values() for m in d.used]
    overridden = [m for d in decisions.values() for m in d.overridden]
    conflicts = [
        Conflict(finding=name, evidence=tuple(evidence(m) for m in _in_text_order(d.conflict)))
        for name, d in decisions.items()
        if d.conflict
    ]
    return Findings(
        **values,
        evidence=tuple(evidence(m) for m in _in_finding_order(used)),
        conflicts=tuple(conflicts),
        overridden=tuple(evidence(m) for m in _in_finding_order(overridden)),
        asks_management=asks_management(text, lexicon),
    )


def _decide_binary(mentions: list[Mention]) -> _Decision:
    """Latest phase per group; a present term and an absent cue in one phase are a conflict."""
    statements = [
        m
        for m in mentions
        if not m.uncertain
        and not m.baseline
        and m.kind != "weak_absent"
        and m.value not in OPEN_VALUES
    ]
    weak = [m for m in mentions if m.kind == "weak_absent" and not m.uncertain and not m.negated]
    groups = {m.group for m in statements if not m.for_every_group} | {GENERIC}
    states = {
        g: _group_state([m for m in statements if m.group == g or m.for_every_group])
        for g in groups
    }
    verified = {g: st for g, st in states.items() if st is not None and g != UNVERIFIED}
    clashes = [st for st in verified.values() if st.conflict]
    yes = [st for st in verified.values() if st.value is True]
    if clashes:
        last_clash = max(st.phase for st in clashes)
        later_yes = [st for st in yes if st.phase > last_clash]
        if not later_yes:
            return _Decision(conflict=_unique(m for st in clashes for m in st.conflict))
        yes = later_yes
    if yes:
        return _finish(True, _unique(m for st in yes for m in st.used), statements)
    unverified = states.get(UNVERIFIED)
    if unverified is not None and unverified.value == UNVERIFIED:
        firm_no = [
            m for m in statements if m.for_every_group and m.phase == unverified.phase
        ]
        if firm_no:  # 'asymptomatic' and a cough at the same time: ask which
            return _Decision(conflict=_unique([*unverified.used, *firm_no]))
        return _Decision(used=unverified.used)  # unverified alone: unknown, shown as the reason
    no = [st for st in verified.values() if st.value is False]
    if no:
        return _finish(False, _unique([*(m for st in no for m in st.used), *weak]), statements)
    if weak:
        return _Decision(value=False, used=weak)
    # A hedged or not-assessed heart: unknown, shown as the reason the tool asks.
    return _Decision(used=[m for m in mentions if m.value in OPEN_VALUES])


@dataclass
class _GroupState:
    value: Any
    phase: int
    used: list[Mention]
    conflict: list[Mention] = field(default_factory=list)


def _group_state(statements: list[Mention]) -> _GroupState | None:
    if not statements:
        return None
    phase = max(m.phase for m in statements)
    now = [m for m in statements if m.phase == phase]
    yes = [m for m in now if m.value == "yes"]
    firm_no = [m for m in now if m.for_every_group]
    if yes and firm_no:
        return _GroupState(None, phase, [], conflict=[*yes, *firm_no])
    if yes:
        return _GroupState(True, phase, yes)
    unverified = [m for m in now if m.value == UNVERIFIED]
    if unverified:
        return _GroupState(UNVERIFIED, phase, unverified)
    no = [m for m in now if m.value == "no"]
    if no:
        return _GroupState(False, phase, no)
    return _GroupState(None, phase, [])  # a normal number cleared an earlier abnormal one


def _finish(value: bool, used: list[Mention], statements: list[Mention]) -> _Decision:
    """The decision, with the other statements that agree with it (any time) and the earlier ones
    it superseded (the other value, an earlier phase)."""
    shown = "yes" if value else "no"
    last = max(m.phase for m in used)
    agreeing = [m for m in statements if m.value == shown and m not in used]
    overridden = [
        m for m in statements if m not in used and m.value not in ("", shown) and m.phase < last
    ]
    return _Decision(value=value, used=_unique([*used, *agreeing]), overridden=overridden)


def _decide_location(mentions: list[Mention], lexicon: Lexicon) -> _Decision:
    """The most proximal asserted site; a more proximal hedged site makes it a conflict."""
    precedence = lexicon.anatomy.precedence
    asserted = [m for m in mentions if not m.negated and not m.uncertain]
    hedged = [m for m in mentions if not m.negated and m.uncertain]
    label = next((c for c in precedence if any(m.label == c for m in asserted)), None)
    if label is None:
        return _Decision()
    support = [m for m in asserted if m.label == label]
    doubt = [m for m in hedged if precedence.index(m.label) < precedence.index(label)]
    if doubt:
        # "Peripheral emboli; central cannot be excluded": never settle on the milder class.
        return _Decision(conflict=[*support, *doubt])
    if label in ("central", "peripheral"):
        return _Decision(value=label, used=support)
    return _Decision(used=support, unclear=label)


def _decide_procedure(mentions: list[Mention]) -> _Decision:
    asserted = [m for m in mentions if not m.negated and not m.uncertain]
    if not asserted:
        return _Decision()
    label = asserted[0].label
    return _Decision(value=label, used=[m for m in asserted if m.label == label])


def _unique(mentions: Any) -> list[Mention]:
    return list(dict.fromkeys(mentions))


def _in_text_order(mentions: list[Mention]) -> list[Mention]:
    return sorted(mentions, key=lambda m: (m.start, m.end))


def _in_finding_order(mentions: list[Mention]) -> list[Mention]:
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
    overridden: list[Evidence] = []
    for name in FINDINGS:
        index = next((i for i, layer in enumerate(layers) if _speaks_about(layer, name)), None)
        if index is None:
            # Nothing decided; keep what explains the unknown (an unverified symptom, say).
            said = next((ly for ly in layers if any(e.finding == name for e in ly.evidence)), None)
            evidence += [e for e in said.evidence if e.finding == name] if said else []
            continue
        layer = layers[index]
        values[name] = getattr(layer, name)
        if name == "location":
            values["unclear_location"] = layer.unclear_location
        evidence += [e for e in layer.evidence if e.finding == name]
        conflicts += [c for c in layer.conflicts if c.finding == name]
        # What this layer superseded in itself, and what older layers said otherwise.
        overridden += [e for e in layer.overridden if e.finding == name]
        shown = {e.value for e in layer.evidence if e.finding == name}
        overridden += [
            e
            for older in layers[index + 1 :]
            for e in (*older.evidence, *older.overridden, *_conflict_evidence(older))
            if e.finding == name and e.value not in shown
        ]
    if not _speaks_about(form, "location"):
        texts = [question, *reversed(_checked_history(history))]
        _keep_central(values, evidence, list(zip(texts, layers[1:], strict=True)), lexicon)
    return Findings(
        **values,
        evidence=tuple(evidence),
        conflicts=tuple(conflicts),
        # A span the value rests on is never also shown as superseded (central emboli kept from
        # an earlier turn, say).
        overridden=tuple(dict.fromkeys(e for e in overridden if e not in evidence)),
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


def _conflict_evidence(layer: Findings) -> tuple[Evidence, ...]:
    """The spans of a layer's conflicts: a later layer that settles the finding supersedes the
    ones that disagree with it."""
    return tuple(e for c in layer.conflicts for e in c.evidence)


def _speaks_about(layer: Findings, name: FindingName) -> bool:
    if any(c.finding == name for c in layer.conflicts):
        return True
    if name == "location" and layer.unclear_location is not None:
        return True
    return getattr(layer, name) is not None


def _negates_location(text: str, label: str, lexicon: Lexicon) -> bool:
    return any(
        m.finding == "location" and m.label == label and m.negated
        for m in read_mentions(text, lexicon, require_cement=False)
    )


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
