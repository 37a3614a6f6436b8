"""Read one data file of ``knowledge/`` and validate it against its pydantic model.

Every knowledge loader goes through ``validate`` only, so the error format is decided in one
place: the file, the field (a list item is named by its ``id`` when it has one, e.g.
``claims['no-standard'].topics``) and what is wrong. It is meant to be swapped for the
project-wide formatter of ``assistant.data`` when that lands; callers will not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from assistant.data import load_yaml
from assistant.errors import KnowledgeError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: Path) -> Any:
    """The parsed YAML of ``path``; unreadable files and YAML errors name the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise KnowledgeError(path, "file", "is not valid UTF-8") from exc
    except OSError as exc:
        raise KnowledgeError(path, "file", f"cannot be read: {exc.strerror or exc}") from exc
    try:
        return load_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise KnowledgeError(path, "file", f"invalid YAML{at}: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise KnowledgeError(path, "file", f"invalid YAML: {exc}") from exc


def field_name(data: Any, loc: Sequence[int | str]) -> str:
    """A readable path into ``data``: list items that carry an ``id`` are named by it."""
    parts: list[str] = []
    node = data
    for step in loc:
        if isinstance(step, int) and isinstance(node, list) and step < len(node):
            item = node[step]
            ident = item.get("id") if isinstance(item, dict) else None
            parts[-1:] = [f"{parts[-1] if parts else ''}[{ident!r}]" if ident else
                          f"{parts[-1] if parts else ''}[{step}]"]
            node = item
            continue
        parts.append(str(step))
        node = node.get(step) if isinstance(node, dict) else None
    return ".".join(parts) or "file"


def validate(path: Path, model: type[M], data: Any = None) -> M:
    """Validate ``path`` (or its already parsed ``data``) as ``model``; KnowledgeError if not."""
    raw = read_yaml(path) if data is None else data
    if not isinstance(raw, dict):
        raise KnowledgeError(path, "file", "must be a YAML mapping of fields")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        message = str(err["msg"]).removeprefix("Value error, ")
        raise KnowledgeError(path, field_name(raw, err["loc"]), message) from exc
