"""The README stays true to the code: its Configuration table lists every setting (with the
default where it shows one as a value), and every `pce-assistant` option it shows exists."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic_core import PydanticUndefined

from assistant.cli import build_parser
from assistant.settings import ENV_PREFIX, Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def configuration_table() -> dict[str, str]:
    """Variable -> the default the table shows (a backticked value, or the words as written)."""
    section = README.split("\n## Configuration\n", 1)[1].split("\n### ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if not line.startswith("| `PCE_"):
            continue
        name_cell, default_cell = (c.strip() for c in line.strip("|").split("|")[:2])
        names = re.findall(r"`(PCE_\w+)`", name_cell)
        values = re.findall(r"`([^`]*)`", default_cell)
        for i, name in enumerate(names):
            rows[name] = values[i] if len(values) == len(names) else default_cell
    return rows


def shown(value: Any) -> str:
    """A default as the README writes it: 24.0 as 24, () as []."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def test_the_configuration_table_lists_every_setting_and_nothing_else() -> None:
    documented = set(configuration_table())
    settings = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert sorted(settings - documented) == [], "settings missing from README, Configuration"
    assert sorted(documented - settings) == [], "README, Configuration, names no such setting"


def valued_settings() -> list[str]:
    """Settings whose default the table can show as a value; the others (unset, a path under the
    data directory, a hash, the bundled knowledge) are described in words, which the table test
    above already requires to be present."""
    names = []
    for name, field in Settings.model_fields.items():
        default = field.default
        if default is None or default is PydanticUndefined or isinstance(default, Path):
            continue
        written = configuration_table().get(ENV_PREFIX + name.upper(), "")
        if written.startswith(("hash of", "bundled")):
            continue
        names.append(name)
    return sorted(names)


@pytest.mark.parametrize("name", valued_settings())
def test_a_default_the_table_shows_as_a_value_is_the_settings_default(name: str) -> None:
    written = configuration_table()[ENV_PREFIX + name.upper()]
    assert written == shown(Settings.model_fields[name].default)


# --- commands ------------------------------------------------------------------------------------


def commands() -> list[str]:
    """Every `pce-assistant ...` the README shows, inline or in a code block (lines joined)."""
    inline = re.findall(r"`([^`\n]*pce-assistant [^`\n]*)`", README)
    blocks = re.findall(r"^[ \t]*```\w*\n(.*?)^[ \t]*```", README, flags=re.DOTALL | re.MULTILINE)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [*inline, *(line for line in lines if "pce-assistant " in line)]


def subcommand(words: list[str]) -> tuple[list[str], argparse.ArgumentParser]:
    parser: argparse.ArgumentParser = build_parser()
    path: list[str] = []
    while words:
        sub = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not sub or words[0] not in sub[0].choices:
            break
        path.append(words.pop(0))
        parser = sub[0].choices[path[-1]]
    return path, parser


def test_the_readme_shows_commands() -> None:
    assert len(commands()) >= 10


@pytest.mark.parametrize("shown_command", commands())
def test_every_command_and_option_the_readme_shows_exists(shown_command: str) -> None:
    words = shown_command.split("pce-assistant ", 1)[1].split()
    path, parser = subcommand(words)
    assert path, f"no such command: {shown_command}"
    accepted = {o for action in parser._actions for o in action.option_strings}
    options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", " ".join(words)))
    assert sorted(options - accepted) == [], f"pce-assistant {' '.join(path)}"
