"""The decision table: the one place where a management tier is decided.

The table is data (``knowledge/rules.yaml``), checked completely when it is loaded: unknown fields
and values (with a "did you mean"), duplicate ids, citations that do not resolve to a knowledge
claim, and -- exhaustively over every combination of input values -- gaps and overlaps.
``RuleTable.recommend`` is then a pure lookup that returns the tier together with its trace.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import string
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import ValidationError

from assistant.data import load_yaml
from assistant.errors import RulesError
from assistant.types import (
    ESCALATIONS,
    TIERS,
    Certainty,
    Citation,
    Escalation,
    FindingName,
    Findings,
    Frozen,
    MissingFinding,
    Recommendation,
    Tier,
    TraceStep,
)

__all__ = ["Overlay", "Rule", "RuleTable", "check_rules", "load_rules"]

UNKNOWN = "unknown"
HIT_POLICIES = ("unique",)
MAX_LISTED = 12  # longer lists of choices (e.g. every source id) only get the suggestion

TOP_FIELDS = (
    "version", "hit_policy", "inputs", "escalation_inputs", "location_convention",
    "rows", "escalations", "missing",
)
REQUIRED_TOP = ("version", "hit_policy", "inputs", "location_convention", "rows", "missing")
ROW_FIELDS = (
    "id", "when", "tier", "label", "actions", "rationale", "caveats", "citations", "certainty",
)
REQUIRED_ROW = ("id", "when", "tier", "label", "actions", "rationale", "citations")
OVERLAY_FIELDS = ("id", "when", "label", "actions", "rationale", "citations", "certainty")
REQUIRED_OVERLAY = ("id", "when", "label", "actions", "rationale", "citations")
MISSING_FIELDS = ("question", "conflict", "unclear", "ask_when")
# Placeholders each question template may use, and the ones it must use.
TEMPLATE_FIELDS = {"question": (), "conflict": ("spans",), "unclear": ("term",)}
# unclear_location in Findings is the only "unclear term" the findings module reports.
UNCLEAR_INPUT = "location"


def _finding_domains() -> dict[str, tuple[str, ...]]:
    """The values each Findings field can take, as table values ('yes'/'no' for booleans)."""
    domains: dict[str, tuple[str, ...]] = {}
    for name in ("symptomatic", "location", "hemodynamic_instability", "intracardiac_cement"):
        args = [a for a in typing.get_args(Findings.model_fields[name].annotation)
                if a is not type(None)]
        if args == [bool]:
            domains[name] = ("yes", "no")
        else:
            domains[name] = tuple(v for a in args for v in typing.get_args(a))
    return domains


FINDING_DOMAINS = _finding_domains()


class Rule(Frozen):
    """One row of the decision table."""

    id: str
    when: dict[str, tuple[str, ...]]
    tier: Tier
    label: str
    actions: tuple[str, ...]
    rationale: str
    caveats: tuple[str, ...] = ()
    citations: tuple[Citation, ...] = ()
    certainty: Certainty | None = None


class Overlay(Frozen):
    """An escalation overlay: added when it matches; it never changes the tier."""

    id: str
    when: dict[str, tuple[str, ...]]
    label: str
    actions: tuple[str, ...]
    rationale: str
    citations: tuple[Citation, ...] = ()
    certainty: Certainty | None = None

    def escalation(self) -> Escalation:
        return Escalation.model_validate(
            {
                "id": self.id,
                "label": self.label,
                "actions": self.actions,
                "rationale": self.rationale,
                "citations": self.citations,
                "certainty": self.certainty,
            }
        )


# --------------------------------------------------------------------------------------- loading
def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    if len(choices) > MAX_LISTED:
        return hint
    return f"{hint}; expected one of: {', '.join(choices)}"


def _value(raw: Any) -> Any:
    """true/false are accepted for yes/no; anything else keeps its type for the checks."""
    if isinstance(raw, bool):
        return "yes" if raw else "no"
    return raw


@dataclass
class _Check:
    """Collects problems while a table is checked; every problem names the file first."""

    name: str
    problems: list[str] = field(default_factory=list)

    def add(self, where: str, message: str) -> None:
        head = f"{self.name}: {where}" if where else self.name
        self.problems.append(f"{head}: {message}")

    def fields(self, where: str, data: Mapping[str, Any], allowed: Sequence[str],
               required: Sequence[str]) -> None:
        for key in data:
            if key not in allowed:
                self.add(where, f"unknown field '{key}'{_suggest(str(key), allowed)}")
        for key in required:
            if key not in data:
                self.add(where, f"missing required field '{key}'")

    def text(self, where: str, data: Mapping[str, Any], key: str) -> str:
        value = data.get(key)
        if key in data and not (isinstance(value, str) and value.strip()):
            self.add(where, f"'{key}' must be non-empty text")
        return value.strip() if isinstance(value, str) else ""

    def texts(self, where: str, data: Mapping[str, Any], key: str,
              required: bool = True) -> tuple[str, ...]:
        value = data.get(key, [])
        if isinstance(value, str) or not isinstance(value, list) or not all(
            isinstance(v, str) and v.strip() for v in value
        ):
            self.add(where, f"'{key}' must be a list of non-empty texts")
            return ()
        if required and not value and key in data:
            self.add(where, f"'{key}' must not be empty")
        return tuple(v.strip() for v in value)


def _parse_inputs(chk: _Check, key: str, raw: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict) or not raw:
        chk.add(key, "must map each input name to its list of allowed values")
        return {}
    inputs: dict[str, tuple[str, ...]] = {}
    for name, values in raw.items():
        where = f"{key}.{name}"
        if name not in FINDING_DOMAINS:
            chk.add(key, f"unknown input '{name}'{_suggest(str(name), list(FINDING_DOMAINS))}")
            continue
        if not isinstance(values, list):
            chk.add(where, "must be a list of values")
            continue
        vals = tuple(_value(v) for v in values)
        expected = (*FINDING_DOMAINS[name], UNKNOWN)
        bad = False
        for v in vals:
            if v not in expected:
                chk.add(where, f"unknown value '{v}'{_suggest(str(v), expected)}")
                bad = True
        for v in expected:
            if v not in vals:
                chk.add(where, f"missing value '{v}' (the engine can produce it)")
                bad = True
        if len({str(v) for v in vals}) != len(vals):
            chk.add(where, "lists a value twice")
            bad = True
        if not bad:
            inputs[str(name)] = expected
    return inputs


def _parse_when(chk: _Check, where: str, raw: Any,
                inputs: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]] | None:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        chk.add(where, "'when' must map input names to a value or a list of values")
        return None
    when: dict[str, tuple[str, ...]] = {}
    ok = True
    for name, cond in raw.items():
        if name not in inputs:
            chk.add(where, f"unknown input '{name}' in 'when'{_suggest(str(name), list(inputs))}")
            ok = False
            continue
        values = cond if isinstance(cond, list) else [cond]
        if not values:
            chk.add(where, f"'when.{name}' is an empty list and can never match")
            ok = False
        allowed = inputs[name]
        for v in map(_value, values):
            if v not in allowed:
                chk.add(where, f"unknown value '{v}' for input '{name}'{_suggest(str(v), allowed)}")
                ok = False
        when[str(name)] = tuple(_value(v) for v in values)
    return when if ok else None


def _parse_citations(chk: _Check, where: str, data: Mapping[str, Any],
                     index: Mapping[str, Citation]) -> tuple[Citation, ...]:
    raw = data.get("citations", [])
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        chk.add(where, "'citations' must be a list of '<source id>#<claim id>' strings")
        return ()
    if not raw and "citations" in data:
        chk.add(where, "'citations' must not be empty: every row cites the claims it rests on")
    sources = sorted({cid.partition("#")[0] for cid in index})
    cites: list[Citation] = []
    for ref in raw:
        if ref in index:
            cites.append(index[ref])
            continue
        source_id, sep, _ = ref.partition("#")
        if not sep:
            chk.add(where, f"citation '{ref}' is not of the form '<source id>#<claim id>'")
        elif source_id not in sources:
            chk.add(where, f"citation '{ref}': unknown source '{source_id}'"
                    f"{_suggest(source_id, sources)}")
        else:
            claims = [c for c in index if c.startswith(f"{source_id}#")]
            chk.add(where, f"citation '{ref}' does not resolve to a claim of '{source_id}'"
                    f"{_suggest(ref, claims)}")
    if len(set(raw)) != len(raw):
        chk.add(where, "'citations' lists a claim twice")
    return tuple(cites)


def _parse_certainty(chk: _Check, where: str, data: Mapping[str, Any]) -> Certainty | None:
    """The row's certainty of evidence (level, basis, appraisal), if it states one."""
    if "certainty" not in data:
        return None
    try:
        return Certainty.model_validate(data["certainty"])
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        chk.add(where, f"'certainty{'.' + field if field else ''}': {err['msg']}")
        return None


Templates = dict[str, dict[str, str]]
AskWhen = dict[str, dict[str, tuple[str, ...]]]


def _parse_missing(chk: _Check, raw: Any, inputs: Mapping[str, tuple[str, ...]],
                   overlay_inputs: Mapping[str, tuple[str, ...]]) -> tuple[Templates, AskWhen]:
    """Question templates per input, and when to ask about an unknown escalation input."""
    if not isinstance(raw, dict):
        chk.add("missing", "must map each input to its questions")
        return {}, {}
    known = [*inputs, *overlay_inputs]
    out: Templates = {}
    ask_when: AskWhen = {}
    for name, entry in raw.items():
        where = f"missing.{name}"
        if name not in known:
            chk.add("missing", f"unknown input '{name}'{_suggest(str(name), known)}")
            continue
        if not isinstance(entry, dict):
            chk.add(where, "must map 'question'/'conflict'/'unclear' to text")
            continue
        required = ["question", "conflict"] + (["unclear"] if name == UNCLEAR_INPUT else [])
        chk.fields(where, entry, MISSING_FIELDS, required)
        if "ask_when" in entry:
            if name in inputs:
                chk.add(where, "'ask_when' is only for escalation inputs (table inputs are "
                        "always asked about when unknown)")
            else:
                # Conditions over the table inputs, e.g. ask about instability when symptomatic.
                cond = _parse_when(chk, f"{where}.ask_when", entry["ask_when"], inputs)
                if cond is not None:
                    ask_when[str(name)] = cond
        templates: dict[str, str] = {}
        for key in MISSING_FIELDS:
            if key not in entry or key == "ask_when":
                continue
            text = chk.text(where, entry, key)
            try:
                used = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
            except ValueError as exc:
                chk.add(where, f"'{key}' is not a valid template: {exc}")
                continue
            for f in sorted(used - set(TEMPLATE_FIELDS[key])):
                chk.add(where, f"'{key}' uses unknown placeholder '{{{f}}}'"
                        f"{_suggest(f, TEMPLATE_FIELDS[key] or ('(none)',))}")
            for f in TEMPLATE_FIELDS[key]:
                if f not in used:
                    chk.add(where, f"'{key}' must show '{{{f}}}'")
            templates[key] = text
        out[str(name)] = templates
    for name in inputs:
        if name not in raw:
            chk.add("missing", f"no question for input '{name}'")
    return out, ask_when


def _condition(name: str, allowed: tuple[str, ...]) -> str:
    return f"{name} = {allowed[0]}" if len(allowed) == 1 else f"{name} in [{', '.join(allowed)}]"


def _matches(when: Mapping[str, tuple[str, ...]], values: Mapping[str, str]) -> bool:
    return all(values[name] in allowed for name, allowed in when.items())


def _combo_text(names: Sequence[str], combo: Sequence[str]) -> str:
    return ", ".join(f"{n}={v}" for n, v in zip(names, combo, strict=True))


def _check_table(chk: _Check, inputs: Mapping[str, tuple[str, ...]],
                 rows: Sequence[tuple[str, Tier, dict[str, tuple[str, ...]]]],
                 complete: bool) -> None:
    """Exhaustive check: exactly one row fires for every combination of input values."""
    names = list(inputs)
    for combo in itertools.product(*(inputs[n] for n in names)):
        values = dict(zip(names, combo, strict=True))
        fired = [(rid, tier) for rid, tier, when in rows if _matches(when, values)]
        if not fired and complete:
            chk.add("", f"gap: no row fires for {_combo_text(names, combo)}")
        for (a, ta), (b, tb) in itertools.combinations(fired, 2):
            chk.add("", f"overlap: rows '{a}' ({ta}) and '{b}' ({tb}) both fire for "
                    f"{_combo_text(names, combo)} (hit_policy unique allows one)")


def _read(path: Path, chk: _Check) -> tuple[bytes, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        chk.add("", f"cannot read the rules table: {exc.strerror or exc}")
        return b"", None
    try:
        return data, load_yaml(data)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = f" ({exc.context})" if exc.context else ""
        chk.add("", f"invalid YAML{at}: {exc.problem}{context}")
        return data, None
    except yaml.YAMLError as exc:
        chk.add("", f"invalid YAML: {' '.join(str(exc).split())}")
        return data, None


def _parse_rows(chk: _Check, raw_rows: Any, inputs: Mapping[str, tuple[str, ...]],
                index: Mapping[str, Citation], seen: set[str]) -> tuple[list[Rule], bool]:
    """The rows that are valid, and whether every row was."""
    rows: list[Rule] = []
    all_ok = True
    for i, raw in enumerate(raw_rows):
        rid = raw.get("id") if isinstance(raw, dict) else None
        where = f"row '{rid}'" if isinstance(rid, str) and rid else f"row #{i + 1}"
        if not isinstance(raw, dict):
            chk.add(where, "must be a mapping")
            all_ok = False
            continue
        chk.fields(where, raw, ROW_FIELDS, REQUIRED_ROW)
        if not (isinstance(rid, str) and rid.strip()):
            chk.add(where, "'id' must be non-empty text")
        elif rid in seen:
            chk.add(where, f"duplicate row id '{rid}'")
        else:
            seen.add(rid)
        tier = raw.get("tier")
        if "tier" in raw and tier not in TIERS:
            chk.add(where, f"unknown tier '{tier}'{_suggest(str(tier), TIERS)}")
        when = _parse_when(chk, where, raw.get("when"), inputs) if "when" in raw else None
        label = chk.text(where, raw, "label")
        rationale = chk.text(where, raw, "rationale")
        actions = chk.texts(where, raw, "actions")
        caveats = chk.texts(where, raw, "caveats", required=False)
        citations = _parse_citations(chk, where, raw, index)
        certainty = _parse_certainty(chk, where, raw)
        if when is not None and tier in TIERS and isinstance(rid, str) and label and rationale:
            rows.append(Rule(id=rid, when=when, tier=tier, label=label, actions=actions,
                             rationale=rationale, caveats=caveats, citations=citations,
                             certainty=certainty))
        else:
            all_ok = False
    return rows, all_ok


def _parse_overlays(chk: _Check, raw_overlays: Any, inputs: Mapping[str, tuple[str, ...]],
                    index: Mapping[str, Citation], seen: set[str]) -> list[Overlay]:
    overlays: list[Overlay] = []
    for i, raw in enumerate(raw_overlays):
        oid = raw.get("id") if isinstance(raw, dict) else None
        where = f"escalation '{oid}'" if isinstance(oid, str) and oid else f"escalation #{i + 1}"
        if not isinstance(raw, dict):
            chk.add(where, "must be a mapping")
            continue
        chk.fields(where, raw, OVERLAY_FIELDS, REQUIRED_OVERLAY)
        if oid not in ESCALATIONS:
            chk.add(where, f"unknown escalation id '{oid}'{_suggest(str(oid), ESCALATIONS)}")
        elif oid in seen:
            chk.add(where, f"duplicate id '{oid}'")
        else:
            seen.add(oid)
        when = _parse_when(chk, where, raw.get("when"), inputs) if "when" in raw else None
        if when == {}:
            chk.add(where, "'when' must name at least one escalation input")
        label = chk.text(where, raw, "label")
        rationale = chk.text(where, raw, "rationale")
        actions = chk.texts(where, raw, "actions")
        citations = _parse_citations(chk, where, raw, index)
        certainty = _parse_certainty(chk, where, raw)
        if when and oid in ESCALATIONS and label and rationale:
            overlays.append(Overlay(id=oid, when=when, label=label, actions=actions,
                                    rationale=rationale, citations=citations,
                                    certainty=certainty))
    return overlays


def _list_field(chk: _Check, doc: Mapping[str, Any], key: str) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list) or (key in doc and not value):
        chk.add(key, "must be a non-empty list")
        return []
    return value


def _build(path: Path, citations: Mapping[str, Citation]) -> tuple[RuleTable | None, list[str]]:
    chk = _Check(path.name)
    data, doc = _read(path, chk)
    if not isinstance(doc, dict):
        if not chk.problems:
            chk.add("", "the top level must be a mapping (version, inputs, rows, ...)")
        return None, chk.problems

    chk.fields("", doc, TOP_FIELDS, REQUIRED_TOP)
    version = str(doc.get("version", "")).strip()
    if "version" in doc and not version:
        chk.add("version", "must be a non-empty string such as '2026.11.1'")
    policy = doc.get("hit_policy")
    if "hit_policy" in doc and policy not in HIT_POLICIES:
        chk.add("hit_policy", f"unknown hit policy '{policy}'{_suggest(str(policy), HIT_POLICIES)}")
    convention = chk.text("location_convention", doc, "location_convention")
    inputs = _parse_inputs(chk, "inputs", doc.get("inputs"))
    inputs_ok = bool(inputs) and len(inputs) == len(doc.get("inputs") or {})
    overlay_inputs = (
        _parse_inputs(chk, "escalation_inputs", doc["escalation_inputs"])
        if "escalation_inputs" in doc else {}
    )
    for name in sorted(set(inputs) & set(overlay_inputs)):
        chk.add("escalation_inputs", f"'{name}' is already a table input; escalations never "
                "decide the tier, so their inputs must be separate")
    index = citations
    seen: set[str] = set()
    rows, all_rows_ok = _parse_rows(chk, _list_field(chk, doc, "rows"), inputs, index, seen)
    overlays = _parse_overlays(chk, _list_field(chk, doc, "escalations"), overlay_inputs, index,
                               seen)
    missing, ask_when = (_parse_missing(chk, doc["missing"], inputs, overlay_inputs)
                         if "missing" in doc else ({}, {}))
    if inputs_ok:
        # Gaps are only meaningful once every row could be read; overlaps always are.
        _check_table(chk, inputs, [(r.id, r.tier, r.when) for r in rows],
                     complete=all_rows_ok)
    if chk.problems:
        return None, chk.problems
    table = RuleTable(
        path=path,
        version=version,
        fingerprint=hashlib.sha256(data).hexdigest()[:12],
        location_convention=convention,
        inputs=inputs,
        escalation_inputs=overlay_inputs,
        rows=tuple(rows),
        escalations=tuple(overlays),
        questions=missing,
        ask_when=ask_when,
    )
    return table, []


def load_rules(path: Path, citations: Mapping[str, Citation]) -> RuleTable:
    """Load and check the decision table; raise ``RulesError`` listing every problem found.

    ``citations`` maps each knowledge claim id to its Citation (``KnowledgeBase.citations()``).
    """
    path = Path(path)
    table, problems = _build(path, citations)
    if table is None:
        raise RulesError(problems, path)
    return table


def check_rules(path: Path, citations: Mapping[str, Citation]) -> list[str]:
    """The checks of ``load_rules``, returned instead of raised (``pce-assistant rules check``)."""
    return _build(Path(path), citations)[1]


# ---------------------------------------------------------------------------------------- engine
@dataclass(frozen=True)
class _Outcome:
    """Everything about one combination of input values that does not depend on the wording."""

    rule: Rule
    escalations: tuple[Escalation, ...]
    trace: tuple[TraceStep, ...]
    outcomes: Mapping[str, Mapping[str, str]]  # unknown table input -> value -> consequence


class RuleTable:
    """A checked decision table. Build it with ``load_rules``; ``recommend`` is pure."""

    def __init__(self, *, path: Path, version: str, fingerprint: str, location_convention: str,
                 inputs: Mapping[str, tuple[str, ...]],
                 escalation_inputs: Mapping[str, tuple[str, ...]], rows: tuple[Rule, ...],
                 escalations: tuple[Overlay, ...],
                 questions: Mapping[str, Mapping[str, str]],
                 ask_when: Mapping[str, Mapping[str, tuple[str, ...]]] | None = None) -> None:
        self.path = path
        self.version = version
        self.fingerprint = fingerprint
        self.location_convention = location_convention
        self.inputs = MappingProxyType(dict(inputs))
        self.escalation_inputs = MappingProxyType(dict(escalation_inputs))
        self.rows = rows
        self.escalations = escalations
        self._questions = {k: dict(v) for k, v in questions.items()}
        self._ask_when = {k: dict(v) for k, v in (ask_when or {}).items()}
        # Every combination is evaluated once here, so recommend() is a dictionary lookup.
        self._outcomes = {combo: self._evaluate(combo) for combo in self._combinations()}

    def __repr__(self) -> str:
        return f"RuleTable(version={self.version!r}, rows={len(self.rows)}, {self.fingerprint})"

    @property
    def all_inputs(self) -> tuple[str, ...]:
        return (*self.inputs, *self.escalation_inputs)

    def _combinations(self) -> list[tuple[str, ...]]:
        domains = {**self.inputs, **self.escalation_inputs}
        return list(itertools.product(*(domains[n] for n in self.all_inputs)))

    def _row_for(self, values: Mapping[str, str]) -> Rule:
        return next(r for r in self.rows if _matches(r.when, values))

    def _consequence(self, values: Mapping[str, str], depth: int = 0) -> str:
        rule = self._row_for(values)
        if rule.tier != "needs_information":
            return f"{rule.label} ({rule.tier})"
        still = [n for n in self.inputs if values[n] == UNKNOWN]
        if not still:
            return f"{rule.label} ({rule.tier})"
        text = f"still needs {' and '.join(still)} ({rule.tier})"
        if len(still) == 1 and depth == 0:
            name = still[0]
            options = "; ".join(
                f"{name}={v} → {self._consequence({**values, name: v}, depth + 1)}"
                for v in self.inputs[name] if v != UNKNOWN
            )
            text += f": {options}"
        return text

    def _evaluate(self, combo: tuple[str, ...]) -> _Outcome:
        values = dict(zip(self.all_inputs, combo, strict=True))
        trace: list[TraceStep] = []
        for rule in self.rows:
            for name, allowed in rule.when.items():
                trace.append(TraceStep(rule_id=rule.id, condition=_condition(name, allowed) +
                                       f" (is {values[name]})", matched=values[name] in allowed))
            if not rule.when:
                trace.append(TraceStep(rule_id=rule.id, condition="always", matched=True))
        fired: list[Escalation] = []
        for overlay in self.escalations:
            for name, allowed in overlay.when.items():
                trace.append(TraceStep(rule_id=overlay.id, condition=_condition(name, allowed) +
                                       f" (is {values[name]})", matched=values[name] in allowed))
            if _matches(overlay.when, values):
                fired.append(overlay.escalation())
        rule = self._row_for(values)
        outcomes: dict[str, Mapping[str, str]] = {}
        for name in self.inputs:
            if values[name] == UNKNOWN:
                outcomes[name] = MappingProxyType({
                    v: self._consequence({**values, name: v})
                    for v in self.inputs[name] if v != UNKNOWN
                })
        for name in self.escalation_inputs:
            outcomes[name] = MappingProxyType({
                v: self._overlay_consequence(rule, {**values, name: v})
                for v in self.escalation_inputs[name] if v != UNKNOWN
            })
        return _Outcome(rule, tuple(fired), tuple(trace), MappingProxyType(outcomes))

    def _overlay_consequence(self, rule: Rule, values: Mapping[str, str]) -> str:
        added = [o.label for o in self.escalations if _matches(o.when, values)]
        head = f"adds escalation: {', '.join(added)}" if added else "no escalation"
        return f"{head}; tier unchanged: {rule.label} ({rule.tier})"

    def evaluate_inputs(self, findings: Findings) -> dict[str, str]:
        """The table inputs for these findings: None, a conflict or an unclear term -> unknown."""
        conflicted = {c.finding for c in findings.conflicts}
        values: dict[str, str] = {}
        for name in self.all_inputs:
            raw = getattr(findings, name)
            if name in conflicted or raw is None or (
                name == UNCLEAR_INPUT and findings.unclear_location
            ):
                values[name] = UNKNOWN
            elif isinstance(raw, bool):
                values[name] = "yes" if raw else "no"
            else:
                values[name] = str(raw)
        return values

    def _question(self, name: str, findings: Findings) -> str:
        templates = self._questions[name]
        conflicts = [c for c in findings.conflicts if c.finding == name]
        if conflicts:
            spans = [f'"{e.text}" ({name}={e.value})' for c in conflicts for e in c.evidence]
            joined = spans[0] if len(spans) == 1 else ", ".join(spans[:-1]) + f" and {spans[-1]}"
            return templates["conflict"].format(spans=joined)
        if name == UNCLEAR_INPUT and findings.unclear_location:
            return templates["unclear"].format(term=findings.unclear_location)
        return templates["question"]

    def recommend(self, findings: Findings) -> Recommendation:
        """The recommendation for these findings. Pure: no I/O, same findings -> equal result."""
        values = self.evaluate_inputs(findings)
        outcome = self._outcomes[tuple(values[n] for n in self.all_inputs)]
        rule = outcome.rule
        conflicted = {c.finding for c in findings.conflicts}
        missing = [
            MissingFinding(
                finding=typing.cast(FindingName, name),
                question=self._question(name, findings),
                outcomes=dict(outcome.outcomes[name]),
            )
            for name in self.all_inputs
            if (name in self.inputs and values[name] == UNKNOWN)
            or (name in self.escalation_inputs and name in conflicted and name in self._questions)
            or (
                name in self._ask_when
                and values[name] == UNKNOWN
                and _matches(self._ask_when[name], values)
            )
        ]
        return Recommendation(
            tier=rule.tier,
            label=rule.label,
            rule_id=rule.id,
            rules_version=self.version,
            actions=rule.actions,
            rationale=rule.rationale,
            caveats=rule.caveats,
            escalations=outcome.escalations,
            citations=rule.citations,
            certainty=rule.certainty,
            missing=tuple(missing),
            inputs=values,
            trace=outcome.trace,
        )
