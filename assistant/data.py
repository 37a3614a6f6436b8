"""One way to read every data file in ``knowledge/`` and ``evals/``: one YAML dialect, one
schema check (pydantic), one error format.

YAML 1.1 reads a bare ``yes``/``no``/``on``/``off`` as a boolean, so ``symptomatic: no`` would
become ``False`` in one file and stay ``"no"`` in another. Here only ``true``/``false`` are
booleans; every other word stays text. Safe loading only (no Python objects), with libyaml's
C parser when present.

Every loader goes through the same path::

    table = load_model(path, RulesFile, error=RulesError, context={...})    # YAML
    cases, problems = load_jsonl(path, EvalCase)                            # one object a line
    meta, body, line = load_front_matter(path, SourceMeta, error=KnowledgeError)

and a failure lists every problem as ``<file>:<line>: <field>: <message>``: the line comes from
the YAML node marks (or the JSONL line), unknown keys and values get a "did you mean". A new data
file (e.g. the claim files of ``knowledge/sources/*.yaml``) needs only its pydantic model and one
``load_model`` call; cross-file checks (duplicate ids, unresolved references) add ``Problem``s
made with :meth:`Document.problem`, so they carry lines too.
"""

from __future__ import annotations

import difflib
import json
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from assistant.errors import DataError, Problem

__all__ = [
    "Document",
    "Loader",
    "Regex",
    "load_front_matter",
    "load_jsonl",
    "load_model",
    "load_yaml",
    "read_yaml",
    "report",
    "suggest",
    "validate",
]

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]
MAX_LISTED = 12  # longer lists of choices (e.g. every section id) only get the suggestion

_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Loader(_Base):  # type: ignore[valid-type, misc]
    """Safe YAML where only true/false are booleans."""


Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_yaml(text: str | bytes) -> Any:
    """Parse one YAML document in the project's dialect (no line information)."""
    return yaml.load(text, Loader=Loader)


def suggest(word: str, choices: Sequence[str]) -> str:
    """' (did you mean 'x'?); expected one of: a, b, c' -- the list only when it is short."""
    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    if not choices or len(choices) > MAX_LISTED:
        return hint
    return f"{hint}; expected one of: {', '.join(choices)}"


def _compiles(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from exc
    return pattern


Regex = Annotated[str, AfterValidator(_compiles)]
"""A regular expression kept as text, checked to compile when the file is loaded."""


# --- documents with line numbers -----------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    """Parsed data plus the line where each key or list item starts, to place a problem."""

    path: Path
    data: Any
    lines: Mapping[Loc, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    def line(self, loc: Sequence[str | int]) -> int | None:
        """Line of the deepest part of ``loc`` that exists in the file (1-based)."""
        parts = tuple(loc)
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            parts = parts[:-1]
        return self.lines.get(())

    def where(self, loc: Sequence[str | int]) -> str:
        """'rows[symptomatic-central].tier': list items are named by their id when they have one."""
        text = ""
        node: Any = self.data
        for part in loc:
            item = node[part] if _has(node, part) else None
            if isinstance(part, int):
                ident = item.get("id") if isinstance(item, Mapping) else None
                text += f"[{ident}]" if isinstance(ident, str) and ident else f"[{part}]"
            else:
                text += f".{part}" if text else str(part)
            node = item
        return text

    def problem(self, loc: Sequence[str | int], message: str) -> Problem:
        return Problem(self.name, message, self.line(loc), self.where(loc))


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, Mapping):
        return part in node
    if isinstance(node, list) and isinstance(part, int):
        return 0 <= part < len(node)
    return False


def _marks(node: yaml.Node, loc: Loc, out: dict[Loc, int], offset: int) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            here = (*loc, key.value if isinstance(key, yaml.ScalarNode) else str(key.value))
            out.setdefault(here, key.start_mark.line + 1 + offset)
            _marks(value, here, out, offset)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.setdefault((*loc, i), item.start_mark.line + 1 + offset)
            _marks(item, (*loc, i), out, offset)


def parse_yaml(path: Path, text: str | bytes, *, line_offset: int = 0) -> Document:
    """Parse YAML text from ``path``; invalid YAML raises ``DataError`` with its line."""
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 + line_offset if mark else None
        column = f", column {mark.column + 1}" if mark else ""
        context = f" ({exc.context})" if exc.context else ""
        at = f" at line {line}{column}" if mark else ""
        raise DataError(
            [Problem(path.name, f"invalid YAML{at}: {exc.problem}{context}", line)], path
        ) from exc
    except yaml.YAMLError as exc:
        raise DataError([Problem(path.name, f"invalid YAML: {' '.join(str(exc).split())}")],
                        path) from exc
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {(): (node.start_mark.line + 1 + line_offset) if node else 1}
    if node is not None:
        _marks(node, (), lines, line_offset)
    return Document(path, data, lines)


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError([Problem(path.name, "is not valid UTF-8 text")], path) from exc
    except OSError as exc:
        raise DataError(
            [Problem(path.name, f"cannot read the {what}: {exc.strerror or exc}")], path
        ) from exc


def read_yaml(path: Path, what: str = "file") -> Document:
    """Read and parse one YAML file; unreadable or invalid YAML raises ``DataError``."""
    path = Path(path)
    return parse_yaml(path, _read_text(path, what))


def report(problems: Sequence[tuple[Loc, str]], title: str = "data") -> ValidationError:
    """Several problems, each at its own place, as one error a validator can raise.

    pydantic prefixes each ``loc`` with where the validator sits, so a row's validator reports
    ``('when', 'location')`` and the file shows ``rows[...].when.location`` on its line.
    """
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("data", "{message}", {"message": message}),
                loc=tuple(loc),
                input=None,
            )
            for loc, message in problems
        ],
    )


# --- validation ---------------------------------------------------------------------------------


def validate(
    doc: Document, model: type[M], *, context: Mapping[str, Any] | None = None
) -> tuple[M | None, list[Problem]]:
    """The model, or None and every problem pydantic found, each placed on its line."""
    try:
        return model.model_validate(doc.data, context=dict(context or {})), []
    except ValidationError as exc:
        return None, [_problem(doc, model, error) for error in exc.errors()]


def _problem(doc: Document, model: type[BaseModel], error: Any) -> Problem:
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1])
        return doc.problem(loc, f"unknown field{suggest(str(loc[-1]), allowed)}")
    if kind == "missing":
        return replace(doc.problem(loc[:-1], "required field is missing"), field=doc.where(loc))
    if kind in ("literal_error", "enum"):
        expected = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        return doc.problem(loc, f"unknown value '{value}'{suggest(str(value), expected)}")
    if kind in ("model_type", "dict_type") and not loc:
        got = type(value).__name__ if value is not None else "nothing"
        return doc.problem(loc, f"the top level must be a mapping of fields (got {got})")
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return doc.problem(loc, message)


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The field names of the model found at ``loc`` (for 'did you mean'), if one is found."""
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            info = tp.model_fields.get(part)
            if info is None:
                return []
            tp = info.annotation
        else:
            args = [a for a in typing.get_args(tp) if a is not Ellipsis]
            if not args:
                return []
            tp = args[-1]  # list[X], tuple[X, ...], dict[K, X]
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [info.alias or name for name, info in tp.model_fields.items()]
    return []


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional: 'X | None' and 'Annotated[X, ...]' are X here."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _raise(path: Path, problems: Sequence[Problem], error: type[DataError]) -> None:
    if problems:
        raise error.of(list(problems), path)


def load_model(
    path: Path,
    model: type[M],
    *,
    error: type[DataError] = DataError,
    context: Mapping[str, Any] | None = None,
    what: str = "file",
) -> M:
    """Read a YAML file and validate it with ``model``; raise ``error`` listing every problem."""
    path = Path(path)
    try:
        doc = read_yaml(path, what)
    except DataError as exc:
        raise error.of(list(exc.details), path) from exc
    result, problems = validate(doc, model, context=context)
    _raise(path, problems, error)
    assert result is not None
    return result


def load_jsonl(
    path: Path,
    model: type[M],
    *,
    context: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[list[tuple[int, M]], list[Problem]]:
    """Every valid ``(line, object)`` of a JSON Lines file and the problems of the others.

    ``extra`` adds fields the loader knows (e.g. the set name) to every object.
    """
    path = Path(path)
    text = _read_text(path, "file")
    items: list[tuple[int, M]] = []
    problems: list[Problem] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(Problem(path.name, f"not valid JSON ({exc.msg})", lineno))
            continue
        if not isinstance(raw, dict):
            problems.append(Problem(path.name, "each line must be one JSON object", lineno))
            continue
        doc = Document(path, {**raw, **(extra or {})}, {(): lineno})
        result, found = validate(doc, model, context=context)
        problems += found
        if result is not None:
            items.append((lineno, result))
    return items, problems


def load_front_matter(
    path: Path,
    model: type[M],
    *,
    error: type[DataError] = DataError,
) -> tuple[M, str, int]:
    """A Markdown file's '---' YAML block validated by ``model``, its body and the body's line."""
    path = Path(path)
    try:
        text = _read_text(path, "file")
    except DataError as exc:
        raise error.of(list(exc.details), path) from exc

    def fail(message: str, line: int | None = 1) -> DataError:
        return error.of([Problem(path.name, message, line, "front matter")], path)

    if not text.startswith("---"):
        raise fail("the file must start with a '---' YAML block")
    head, sep, rest = text.partition("\n---")
    if not sep:
        raise fail("no closing '---' line")
    try:
        doc = parse_yaml(path, head.removeprefix("---"), line_offset=0)
    except DataError as exc:
        raise error.of([replace(p, field="front matter") for p in exc.details], path) from exc
    result, problems = validate(doc, model)
    _raise(path, [p if p.field else replace(p, field="front matter") for p in problems], error)
    assert result is not None
    body_line = head.count("\n") + 2
    body = rest.split("\n", 1)[1] if "\n" in rest else ""
    return result, body, body_line + 1
