"""The decision table: the one place where a management tier is decided.

The table is data (``knowledge/rules.yaml``), checked completely when it is loaded
(``rules_schema``: every problem with file, line and field). ``RuleTable.recommend`` is then a
pure lookup that returns the tier together with its trace. The table's derivations (an unstated
input counted as a value, e.g. unstable + symptoms not stated -> symptomatic) are data too: the
engine applies them before the lookup and shows them in the trace and in ``Recommendation.derived``.
"""

from __future__ import annotations

import hashlib
import itertools
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from assistant.clinical.rules_schema import (
    UNCLEAR_INPUT,
    UNKNOWN,
    Derivation,
    Overlay,
    Rule,
    RulesFile,
    matches,
)
from assistant.data import Document, read_yaml, validate
from assistant.errors import DataError, Problem, RulesError
from assistant.types import (
    Citation,
    DerivedInput,
    Escalation,
    Evidence,
    FindingName,
    Findings,
    MissingFinding,
    Recommendation,
    TraceStep,
)

__all__ = ["Derivation", "Overlay", "Rule", "RuleTable", "check_rules", "load_rules"]

# Outcomes are evaluated for each combination of values and each set of inputs a derivation
# may fill (unstated, not in conflict): the key of RuleTable._outcomes.
Key = tuple[tuple[str, ...], frozenset[str]]


# --------------------------------------------------------------------------------------- loading
def duplicate_ids(doc: Document) -> list[Problem]:
    """Rows, escalations and derivations share one id space (the trace names them by id).

    Checked on the raw file, so a duplicate is reported even when another row is broken.
    """
    data = doc.data if isinstance(doc.data, Mapping) else {}
    seen: dict[str, int | None] = {}
    problems: list[Problem] = []
    for section in ("rows", "escalations", "derived"):
        items = data.get(section)
        for i, item in enumerate(items if isinstance(items, list) else []):
            ident = item.get("id") if isinstance(item, Mapping) else None
            if not isinstance(ident, str):
                continue
            if ident in seen:
                first = f" (first at line {seen[ident]})" if seen[ident] else ""
                problems.append(doc.problem((section, i, "id"), f"duplicate id '{ident}'{first}"))
            else:
                seen[ident] = doc.line((section, i, "id"))
    return problems


def _build(path: Path, citations: Mapping[str, Citation]) -> RuleTable:
    try:
        doc = read_yaml(path, "rules table")
        fingerprint = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except DataError as exc:
        raise RulesError(list(exc.details), path) from exc
    spec, problems = validate(doc, RulesFile, context={"citations": citations})
    problems = [*duplicate_ids(doc), *problems]
    if problems or spec is None:
        raise RulesError(problems, path)
    return RuleTable(spec, path=path, fingerprint=fingerprint)


def load_rules(path: Path, citations: Mapping[str, Citation]) -> RuleTable:
    """Load and check the decision table; raise ``RulesError`` listing every problem found.

    ``citations`` is the knowledge base's id index (``KnowledgeBase.citations``): every id a row
    cites must be a key of it.
    """
    return _build(Path(path), citations)


def check_rules(path: Path, citations: Mapping[str, Citation]) -> list[str]:
    """The checks of ``load_rules``, returned instead of raised (``pce-assistant rules check``)."""
    try:
        _build(Path(path), citations)
    except RulesError as exc:
        return exc.problems
    return []


# ---------------------------------------------------------------------------------------- engine
def _spans(name: str, evidence: Sequence[Evidence]) -> str:
    """'"a" (name=v)', '"a" (name=v) and "b" (name=w)', ... for a question template's {spans}."""
    spans = [f'"{e.text}" ({name}={e.value})' for e in evidence]
    return spans[0] if len(spans) == 1 else ", ".join(spans[:-1]) + f" and {spans[-1]}"


def _condition(name: str, allowed: Sequence[str]) -> str:
    return f"{name} = {allowed[0]}" if len(allowed) == 1 else f"{name} in [{', '.join(allowed)}]"


def _outcome_text(rule: Rule) -> str:
    return f"{rule.label} ({rule.tier})"


@dataclass(frozen=True)
class _Outcome:
    """Everything about one combination of input values that does not depend on the wording."""

    rule: Rule
    values: Mapping[str, str]  # after derivations
    derived: tuple[Derivation, ...]
    escalations: tuple[Escalation, ...]
    trace: tuple[TraceStep, ...]
    outcomes: Mapping[str, Mapping[str, str]]  # unknown input -> value -> consequence


class RuleTable:
    """A checked decision table. Build it with ``load_rules``; ``recommend`` is pure."""

    def __init__(self, spec: RulesFile, *, path: Path, fingerprint: str) -> None:
        self.path = path
        self.version = spec.version
        self.fingerprint = fingerprint
        self.location_convention = spec.location_convention
        self.location_caveat = spec.location_caveat
        self.inputs = MappingProxyType(dict(spec.inputs))
        self.escalation_inputs = MappingProxyType(dict(spec.escalation_inputs))
        # The location caveat is written once in the file and shown wherever location decides.
        self.rows = tuple(
            r.model_copy(update={"caveats": (*r.caveats, spec.location_caveat)})
            if spec.location_caveat and UNCLEAR_INPUT in r.when else r
            for r in spec.rows
        )
        self.escalations = spec.escalations
        self.derived = spec.derived
        self._questions = {name: q.templates() for name, q in spec.missing.items()}
        self._ask_when = {n: q.ask_when for n, q in spec.missing.items() if q.ask_when}
        self._fillable = frozenset(d.input for d in self.derived)
        # Every combination is evaluated once here, so recommend() is a dictionary lookup.
        self._outcomes = {key: self._evaluate(*key) for key in self._keys()}

    def __repr__(self) -> str:
        return f"RuleTable(version={self.version!r}, rows={len(self.rows)}, {self.fingerprint})"

    @property
    def all_inputs(self) -> tuple[str, ...]:
        return (*self.inputs, *self.escalation_inputs)

    def _keys(self) -> Iterator[Key]:
        domains = {**self.inputs, **self.escalation_inputs}
        for combo in itertools.product(*(domains[n] for n in self.all_inputs)):
            values = dict(zip(self.all_inputs, combo, strict=True))
            open_ = [n for n in self._fillable if values[n] == UNKNOWN]
            for k in range(len(open_) + 1):
                for subset in itertools.combinations(open_, k):
                    yield combo, frozenset(subset)

    # -- evaluation at load ----------------------------------------------------------------------

    def _derive(self, values: Mapping[str, str], fillable: frozenset[str]
                ) -> tuple[dict[str, str], tuple[Derivation, ...]]:
        """Apply the derivations in order; each fills only an unstated input."""
        out = dict(values)
        fired = []
        for d in self.derived:
            if d.input in fillable and out[d.input] == UNKNOWN and matches(d.when, out):
                out[d.input] = d.value
                fired.append(d)
        return out, tuple(fired)

    def _row_for(self, values: Mapping[str, str]) -> Rule:
        return next(r for r in self.rows if matches(r.when, values))

    def _consequence(self, values: Mapping[str, str], fillable: frozenset[str],
                     depth: int = 0) -> str:
        derived, _ = self._derive(values, fillable)
        rule = self._row_for(derived)
        still = [n for n in self.inputs if derived[n] == UNKNOWN]
        if rule.tier != "needs_information" or not still:
            return _outcome_text(rule)
        text = f"still needs {' and '.join(still)} ({rule.tier})"
        if len(still) == 1 and depth == 0:
            name = still[0]
            options = "; ".join(
                f"{name}={v} → {self._consequence({**values, name: v}, fillable - {name}, 1)}"
                for v in self.inputs[name] if v != UNKNOWN
            )
            text += f": {options}"
        return text

    def _overlay_consequence(self, rule: Rule, values: Mapping[str, str],
                             fillable: frozenset[str]) -> str:
        derived, fired = self._derive(values, fillable)
        added = [o.label for o in self.escalations if matches(o.when, derived)]
        head = f"adds escalation: {', '.join(added)}" if added else "no escalation"
        after = self._row_for(derived)
        if after.id == rule.id:
            return f"{head}; tier unchanged: {_outcome_text(rule)}"
        counts = "; ".join(f"{d.input} counts as {d.value} (derivation {d.id})" for d in fired)
        return f"{head}; {counts}: {_outcome_text(after)}"

    def _trace(self, values: Mapping[str, str], derived: Mapping[str, str],
               fillable: frozenset[str]) -> tuple[TraceStep, ...]:
        steps: list[TraceStep] = []
        current = dict(values)
        for d in self.derived:
            steps.append(TraceStep(rule_id=d.id, condition=f"{d.input} is not stated",
                                   matched=d.input in fillable and current[d.input] == UNKNOWN))
            for name, allowed in d.when.items():
                steps.append(TraceStep(rule_id=d.id, condition=_condition(name, allowed)
                                       + f" (is {current[name]})",
                                       matched=current[name] in allowed))
            if all(s.matched for s in steps if s.rule_id == d.id):
                current[d.input] = d.value
        items: tuple[Rule | Overlay, ...] = (*self.rows, *self.escalations)
        for item in items:
            for name, allowed in item.when.items():
                note = "; derived" if derived[name] != values[name] else ""
                steps.append(TraceStep(rule_id=item.id, condition=_condition(name, allowed)
                                       + f" (is {derived[name]}{note})",
                                       matched=derived[name] in allowed))
            if not item.when:
                steps.append(TraceStep(rule_id=item.id, condition="always", matched=True))
        return tuple(steps)

    def _evaluate(self, combo: tuple[str, ...], fillable: frozenset[str]) -> _Outcome:
        values = dict(zip(self.all_inputs, combo, strict=True))
        derived, fired = self._derive(values, fillable)
        rule = self._row_for(derived)
        outcomes: dict[str, Mapping[str, str]] = {}
        for name in self.inputs:
            if derived[name] == UNKNOWN:
                outcomes[name] = MappingProxyType({
                    v: self._consequence({**values, name: v}, fillable - {name})
                    for v in self.inputs[name] if v != UNKNOWN
                })
        for name in self.escalation_inputs:
            outcomes[name] = MappingProxyType({
                v: self._overlay_consequence(rule, {**values, name: v}, fillable - {name})
                for v in self.escalation_inputs[name] if v != UNKNOWN
            })
        return _Outcome(
            rule=rule,
            values=MappingProxyType(derived),
            derived=fired,
            escalations=tuple(o.escalation() for o in self.escalations
                              if matches(o.when, derived)),
            trace=self._trace(values, derived, fillable),
            outcomes=MappingProxyType(outcomes),
        )

    # -- lookup ----------------------------------------------------------------------------------

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

    def _unstated(self, findings: Findings) -> frozenset[str]:
        """Inputs a derivation may fill: nothing states them (no value, conflict or unclear)."""
        contested: set[str] = {c.finding for c in findings.conflicts}
        if findings.unclear_location:
            contested.add(UNCLEAR_INPUT)
        return frozenset(n for n in self._fillable
                         if getattr(findings, n) is None and n not in contested)

    def _question(self, name: str, findings: Findings) -> str:
        templates = self._questions[name]
        conflicts = [c for c in findings.conflicts if c.finding == name]
        if conflicts:
            return templates["conflict"].format(
                spans=_spans(name, [e for c in conflicts for e in c.evidence]))
        if name == UNCLEAR_INPUT and findings.unclear_location:
            return templates["unclear"].format(term=findings.unclear_location)
        if "open" in templates and name in findings.open_findings():
            return templates["open"].format(
                spans=_spans(name, [e for e in findings.evidence if e.finding == name]))
        return templates["question"]

    def _derived_input(self, d: Derivation, values: Mapping[str, str],
                       evidence: Sequence[Evidence]) -> DerivedInput:
        because = ", ".join(f"{name} = {values[name]}" for name in d.when)
        spans = tuple(
            e.model_copy(update={"finding": d.input, "value": d.value})
            for e in evidence if e.finding in d.when and e.value == values[e.finding]
        )
        return DerivedInput(id=d.id, input=typing.cast(FindingName, d.input), value=d.value,
                            because=because, rationale=d.rationale, citations=d.citations,
                            evidence=spans)

    def _asks(self, name: str, values: Mapping[str, str], findings: Findings) -> bool:
        """Whether to ask about this input: a table input when unknown; an escalation input
        when the record contradicts itself, mentions it without settling it (hedged or not
        assessed), or when it is unknown and its ``ask_when`` holds."""
        if name in self.inputs:
            return values[name] == UNKNOWN
        if name not in self._questions:
            return False
        if name in {c.finding for c in findings.conflicts}:
            return True
        return values[name] == UNKNOWN and (
            name in findings.open_findings()
            or (name in self._ask_when and matches(self._ask_when[name], values))
        )

    def recommend(self, findings: Findings) -> Recommendation:
        """The recommendation for these findings. Pure: no I/O, same findings -> equal result."""
        stated = self.evaluate_inputs(findings)
        fillable = frozenset(n for n in self._unstated(findings) if stated[n] == UNKNOWN)
        outcome = self._outcomes[(tuple(stated[n] for n in self.all_inputs), fillable)]
        values = outcome.values
        rule = outcome.rule
        missing = [
            MissingFinding(
                finding=typing.cast(FindingName, name),
                question=self._question(name, findings),
                outcomes=dict(outcome.outcomes[name]),
            )
            for name in self.all_inputs
            if self._asks(name, values, findings)
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
            inputs=dict(values),
            trace=outcome.trace,
            derived=tuple(self._derived_input(d, values, findings.evidence)
                          for d in outcome.derived),
        )
