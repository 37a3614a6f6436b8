"""The one loader for data files (assistant.data): dialect, lines, fields and did-you-mean."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict

from assistant.data import load_front_matter, load_jsonl, load_model, load_yaml, read_yaml
from assistant.errors import DataError, KnowledgeError, RulesError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Item(Strict):
    id: str
    kind: Literal["alpha", "beta"]
    size: int = 0


class File(Strict):
    version: str
    items: tuple[Item, ...]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_only_true_and_false_are_booleans() -> None:
    assert load_yaml("a: no\nb: yes\nc: off\nd: true\ne: False") == {
        "a": "no", "b": "yes", "c": "off", "d": True, "e": False,
    }


def test_every_problem_names_file_line_field_and_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "things.yaml", (
        "version: '1'\n"
        "items:\n"
        "  - id: first\n"
        "    kind: alpha\n"
        "  - id: second\n"
        "    kind: betta\n"
        "    sise: 3\n"
        "  - kind: alpha\n"
    ))
    with pytest.raises(RulesError) as caught:
        load_model(path, File, error=RulesError)
    assert caught.value.path == str(path)
    assert caught.value.problems == [
        "things.yaml:6: items[second].kind: unknown value 'betta' (did you mean 'beta'?); "
        "expected one of: alpha, beta",
        "things.yaml:7: items[second].sise: unknown field (did you mean 'size'?); "
        "expected one of: id, kind, size",
        "things.yaml:8: items[2].id: required field is missing",
    ]
    assert [(d.line, d.field) for d in caught.value.details] == [
        (6, "items[second].kind"), (7, "items[second].sise"), (8, "items[2].id"),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("items: [\n", "things.yaml:2: invalid YAML at line 2"),
        ("- a list\n", "things.yaml:1: the top level must be a mapping of fields (got list)"),
    ],
    ids=["invalid-yaml", "not-a-mapping"],
)
def test_unreadable_documents_fail_with_their_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(DataError) as caught:
        load_model(write(tmp_path, "things.yaml", text), File)
    assert caught.value.problems[0].startswith(expected)


def test_a_missing_file_is_a_data_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"absent\.yaml: cannot read the file"):
        read_yaml(tmp_path / "absent.yaml")


def test_jsonl_problems_carry_the_line_and_valid_lines_still_load(tmp_path: Path) -> None:
    path = write(tmp_path, "set.jsonl", (
        '{"id": "a", "kind": "alpha"}\n\n{"id": "b", "kind": "gamma"}\nnot json\n[1]\n'
    ))
    items, problems = load_jsonl(path, Item)
    assert [(line, item.id) for line, item in items] == [(1, "a")]
    assert [str(p) for p in problems] == [
        "set.jsonl:3: kind: unknown value 'gamma'; expected one of: alpha, beta",
        "set.jsonl:4: not valid JSON (Expecting value)",
        "set.jsonl:5: each line must be one JSON object",
    ]


def test_front_matter_errors_use_the_line_in_the_markdown_file(tmp_path: Path) -> None:
    path = write(tmp_path, "src.md", "---\nid: x\nkind: alfa\n---\n\n## Body\nText.\n")
    with pytest.raises(KnowledgeError) as caught:
        load_front_matter(path, Item, error=KnowledgeError)
    assert caught.value.field == "kind" and caught.value.details[0].line == 3
    ok = write(tmp_path, "ok.md", "---\nid: x\nkind: alpha\n---\n\n## Body\nText.\n")
    item, body, line = load_front_matter(ok, Item)
    assert item.id == "x" and body.startswith("\n## Body") and line == 5
