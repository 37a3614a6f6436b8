"""The file format of the decision table (``knowledge/rules.yaml``), as pydantic models.

Everything is checked when the table is loaded, and every problem is reported at once with its
file, line and field: unknown fields and values (with a "did you mean"), citations that do not
resolve against the knowledge base's id index, question templates, and -- exhaustively over every
combination of input values -- gaps and overlaps. Duplicate ids are a check over the whole file
(``rules.duplicate_ids``), so they are found even when another row is broken.

Validation needs the citation index in the context: ``RulesFile.model_validate(data,
context={"citations": {id: Citation}})``; ``rules.load_rules`` does this.
"""

from __future__ import annotations

import itertools
import string
import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from assistant.data import report, suggest
from assistant.types import Certainty, Citation, Escalation, EscalationId, Findings, Frozen, Tier

__all__ = [
    "FINDING_DOMAINS",
    "UNCLEAR_INPUT",
    "UNKNOWN",
    "Derivation",
    "Overlay",
    "Questions",
    "Rule",
    "RulesFile",
    "matches",
]

UNKNOWN = "unknown"
# unclear_location in Findings is the only "unclear term" the findings module reports.
UNCLEAR_INPUT = "location"
# Placeholders each question template may use, and the ones it must use.
TEMPLATE_FIELDS: dict[str, tuple[str, ...]] = {
    "question": (),
    "conflict": ("spans",),
    "unclear": ("term",),
    "open": ("spans",),
}
Loc = tuple[str | int, ...]


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


# --- value types ----------------------------------------------------------------------------------


def _table_value(raw: Any) -> Any:
    """true/false are accepted for yes/no; anything else is checked as text."""
    if isinstance(raw, bool):
        return "yes" if raw else "no"
    return raw


def _listify(raw: Any) -> Any:
    """A condition takes one value or a list of values: {location: central} -> [central]."""
    if isinstance(raw, Mapping):
        return {k: v if isinstance(v, list) else [v] for k, v in raw.items()}
    return raw


Value = Annotated[str, BeforeValidator(_table_value)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Texts = tuple[Text, ...]
Condition = Annotated[dict[str, tuple[Value, ...]], BeforeValidator(_listify)]


def _context(info: ValidationInfo, key: str) -> Any:
    context = info.context or {}
    if key not in context:
        raise ValueError(f"cannot be checked without '{key}' (load the table with load_rules)")
    return context[key]


def _resolve(raw: Any, info: ValidationInfo) -> Any:
    """Citation ids -> the knowledge base's citations, from the id index in the context."""
    if isinstance(raw, (list, tuple)) and all(isinstance(c, Citation) for c in raw):
        return tuple(raw)
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise ValueError("must be a list of '<source id>#<id>' strings")
    if not raw:
        raise ValueError("must not be empty: every row cites what it rests on")
    index: Mapping[str, Citation] = _context(info, "citations")
    sources = sorted({key.partition("#")[0] for key in index})
    problems: list[tuple[Loc, str]] = []
    for i, ref in enumerate(raw):
        if ref in raw[:i]:
            problems.append(((i,), f"citation '{ref}' is listed twice"))
        if ref in index:
            continue
        source, sep, _ = ref.partition("#")
        if not sep:
            problems.append(((i,), f"citation '{ref}' is not of the form '<source id>#<id>'"))
        elif source not in sources:
            problems.append(((i,), f"citation '{ref}': unknown source '{source}'"
                                   f"{suggest(source, sources)}"))
        else:
            ids = [key for key in index if key.startswith(f"{source}#")]
            problems.append(((i,), f"citation '{ref}' does not resolve to a claim "
                                   f"of '{source}'{suggest(ref, ids)}"))
    if problems:
        raise report(problems)
    return tuple(index[ref] for ref in raw)


Citations = Annotated[tuple[Citation, ...], BeforeValidator(_resolve)]


def condition_problems(
    condition: Mapping[str, Sequence[str]], inputs: Mapping[str, Sequence[str]]
) -> list[tuple[Loc, str]]:
    """Unknown input names and values in a condition (each placed at its input)."""
    problems: list[tuple[Loc, str]] = []
    for name, values in condition.items():
        if name not in inputs:
            problems.append(((name,), f"unknown input '{name}'{suggest(name, list(inputs))}"))
            continue
        if not values:
            problems.append(((name,), "is an empty list and can never match"))
        for value in values:
            if value not in inputs[name]:
                problems.append(((name,), f"unknown value '{value}' for input '{name}'"
                                          f"{suggest(value, inputs[name])}"))
    return problems


def _checked_condition(condition: dict[str, tuple[str, ...]], inputs: Mapping[str, Any]
                       ) -> dict[str, tuple[str, ...]]:
    problems = condition_problems(condition, inputs)
    if problems:
        raise report(problems)
    return condition


def matches(condition: Mapping[str, Sequence[str]], values: Mapping[str, str]) -> bool:
    return all(values[name] in allowed for name, allowed in condition.items())


# --- rows, escalations, derivations, questions ----------------------------------------------------


class Rule(Frozen):
    """One row of the decision table: when it fires, the tier and what backs it."""

    id: Text
    when: Condition = Field(description="Input -> allowed values; an input left out matches all.")
    tier: Tier
    label: Text
    actions: Texts = Field(min_length=1)
    rationale: Text
    caveats: Texts = ()
    citations: Citations
    certainty: Certainty | None = None

    @field_validator("when")
    @classmethod
    def _known_inputs(cls, when: dict[str, tuple[str, ...]], info: ValidationInfo
                      ) -> dict[str, tuple[str, ...]]:
        return _checked_condition(when, _context(info, "inputs"))


class Overlay(Frozen):
    """An escalation overlay: added when it matches; it never changes the tier."""

    id: EscalationId
    when: Condition = Field(min_length=1, description="Over the escalation inputs only.")
    label: Text
    actions: Texts = Field(min_length=1)
    rationale: Text
    citations: Citations
    certainty: Certainty | None = None

    @field_validator("when")
    @classmethod
    def _known_inputs(cls, when: dict[str, tuple[str, ...]], info: ValidationInfo
                      ) -> dict[str, tuple[str, ...]]:
        return _checked_condition(when, _context(info, "escalation_inputs"))

    def escalation(self) -> Escalation:
        return Escalation(id=self.id, label=self.label, actions=self.actions,
                          rationale=self.rationale, citations=self.citations,
                          certainty=self.certainty)


class Derivation(Frozen):
    """Counts an input the findings do not state as a value, when other inputs say so.

    It fills only an input that nothing states: never one in conflict or with an unclear term.
    """

    id: Text
    input: str = Field(description="The input it fills, e.g. symptomatic.")
    value: Value = Field(description="What the unstated input counts as.")
    when: Condition = Field(min_length=1, description="Over any input, table or escalation.")
    rationale: Text
    citations: Citations


def _template(field: str) -> AfterValidator:
    """A question template may use only its placeholders, and must show the required ones."""

    def check(text: str) -> str:
        try:
            used = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
        except ValueError as exc:
            raise ValueError(f"is not a valid template: {exc}") from exc
        allowed = TEMPLATE_FIELDS[field]
        problems: list[tuple[Loc, str]] = [
            ((), f"uses unknown placeholder '{{{f}}}'{suggest(f, allowed or ('(none)',))}")
            for f in sorted(used - set(allowed))
        ]
        problems += [((), f"must show '{{{f}}}'") for f in allowed if f not in used]
        if problems:
            raise report(problems)
        return text

    return AfterValidator(check)


class Questions(Frozen):
    """What to ask when an input is unknown ({spans}: the contradicting spans; {term}: unclear)."""

    question: Annotated[Text, _template("question")]
    conflict: Annotated[Text, _template("conflict")]
    unclear: Annotated[Text, _template("unclear")] | None = None
    open: Annotated[Text, _template("open")] | None = Field(
        default=None, description="Asked when the record mentions the input without settling it "
        "(a hedged or not-assessed mention; {spans}: those spans)."
    )
    ask_when: Condition | None = Field(
        default=None, description="Escalation inputs only: ask when these table values hold."
    )

    def templates(self) -> dict[str, str]:
        return {k: v for k, v in (("question", self.question), ("conflict", self.conflict),
                                  ("unclear", self.unclear), ("open", self.open))
                if v is not None}


# --- the whole table ------------------------------------------------------------------------------


def _domains(raw: Any) -> dict[str, tuple[str, ...]]:
    """Input names -> every value the engine can produce for them (for checking conditions)."""
    if not isinstance(raw, Mapping):
        return {}
    return {name: (*FINDING_DOMAINS[name], UNKNOWN) for name in raw if name in FINDING_DOMAINS}


def _check_inputs(raw: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Each input is a finding, listing exactly the values the engine can produce."""
    problems: list[tuple[Loc, str]] = []
    for name, values in raw.items():
        if name not in FINDING_DOMAINS:
            problems.append(((name,), f"unknown input '{name}'"
                                      f"{suggest(name, list(FINDING_DOMAINS))}"))
            continue
        expected = (*FINDING_DOMAINS[name], UNKNOWN)
        problems += [((name,), f"unknown value '{v}'{suggest(v, expected)}")
                     for v in values if v not in expected]
        problems += [((name,), f"missing value '{v}' (the engine can produce it)")
                     for v in expected if v not in values]
        if len(set(values)) != len(values):
            problems.append(((name,), "lists a value twice"))
    if problems:
        raise report(problems)
    return _domains(raw)


Inputs = Annotated[dict[str, tuple[Value, ...]], AfterValidator(_check_inputs)]


class RulesFile(Frozen):
    """``knowledge/rules.yaml``: inputs, rows (hit policy unique), escalations, derivations."""

    version: Text = Field(description="Reviewed version, e.g. '2026.11.2'.")
    hit_policy: Literal["unique"] = Field(description="Exactly one row fires per combination.")
    inputs: Inputs = Field(min_length=1, description="The findings that decide the tier.")
    escalation_inputs: Inputs = Field(
        default_factory=dict, description="Findings read only by escalations (never the tier)."
    )
    location_convention: Text = Field(description="This tool's central/peripheral convention.")
    location_caveat: Text | None = Field(
        default=None, description="Added to the caveats of every row whose 'when' reads location."
    )
    rows: tuple[Rule, ...] = Field(min_length=1)
    escalations: tuple[Overlay, ...] = ()
    derived: tuple[Derivation, ...] = ()
    missing: dict[str, Questions] = Field(description="What to ask when an input is unknown.")

    @model_validator(mode="before")
    @classmethod
    def _inputs_in_context(cls, data: Any, info: ValidationInfo) -> Any:
        # Rows and escalations check their conditions against the inputs this file declares.
        if isinstance(data, Mapping) and isinstance(info.context, dict):
            info.context["inputs"] = _domains(data.get("inputs"))
            info.context["escalation_inputs"] = _domains(data.get("escalation_inputs"))
        return data

    @model_validator(mode="after")
    def _whole_table(self) -> RulesFile:
        problems = [*self._separate_inputs(), *self._question_problems(),
                    *self._derivation_problems(), *self._gaps_and_overlaps()]
        if problems:
            raise report(problems)
        return self

    def _separate_inputs(self) -> list[tuple[Loc, str]]:
        return [(("escalation_inputs", name), f"'{name}' is already a table input; escalations "
                 "never decide the tier, so their inputs must be separate")
                for name in self.escalation_inputs if name in self.inputs]

    def _question_problems(self) -> list[tuple[Loc, str]]:
        known = [*self.inputs, *self.escalation_inputs]
        problems: list[tuple[Loc, str]] = [
            (("missing",), f"no question for input '{name}'")
            for name in self.inputs if name not in self.missing
        ]
        for name, entry in self.missing.items():
            here: Loc = ("missing", name)
            if name not in known:
                problems.append((here, f"unknown input '{name}'{suggest(name, known)}"))
                continue
            if name == UNCLEAR_INPUT and entry.unclear is None:
                problems.append((here, "missing required field 'unclear' (an unclear term is "
                                       "asked about by name)"))
            if entry.ask_when is None:
                continue
            if name in self.inputs:
                problems.append(((*here, "ask_when"), "'ask_when' is only for escalation "
                                 "inputs (table inputs are always asked about when unknown)"))
            else:
                problems += [((*here, "ask_when", *loc), message) for loc, message
                             in condition_problems(entry.ask_when, self.inputs)]
        return problems

    def _derivation_problems(self) -> list[tuple[Loc, str]]:
        domains = {**self.inputs, **self.escalation_inputs}
        problems: list[tuple[Loc, str]] = []
        for i, rule in enumerate(self.derived):
            here: Loc = ("derived", i)
            if rule.input not in domains:
                problems.append(((*here, "input"), f"unknown input '{rule.input}'"
                                 f"{suggest(rule.input, list(domains))}"))
                continue
            values = [v for v in domains[rule.input] if v != UNKNOWN]
            if rule.value not in values:
                problems.append(((*here, "value"), f"unknown value '{rule.value}'"
                                 f"{suggest(rule.value, values)}"))
            if rule.input in rule.when:
                problems.append(((*here, "when", rule.input), "a derivation fills an unstated "
                                 "input, so its 'when' cannot read that input"))
            problems += [((*here, "when", *loc), message)
                         for loc, message in condition_problems(rule.when, domains)]
        return problems

    def _gaps_and_overlaps(self) -> list[tuple[Loc, str]]:
        """Exhaustive: exactly one row fires for every combination of table input values."""
        names = list(self.inputs)
        problems: list[tuple[Loc, str]] = []
        for combo in itertools.product(*(self.inputs[n] for n in names)):
            values = dict(zip(names, combo, strict=True))
            text = ", ".join(f"{n}={v}" for n, v in values.items())
            fired = [(i, r) for i, r in enumerate(self.rows) if matches(r.when, values)]
            if not fired:
                problems.append((("rows",), f"gap: no row fires for {text}"))
            for (_, a), (j, b) in itertools.combinations(fired, 2):
                problems.append((("rows", j), f"overlap: rows '{a.id}' ({a.tier}) and '{b.id}' "
                                 f"({b.tier}) both fire for {text} (hit_policy unique allows "
                                 "one)"))
        return problems
