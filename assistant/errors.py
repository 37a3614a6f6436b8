"""One exception tree, rooted at ``AssistantError``.

    AssistantError
    ├── ConfigurationError         settings that cannot work (unknown PCE_ key, bad URL, ...)
    ├── DataError                  a data file is malformed: every problem, each with file + line
    │   ├── KnowledgeError         a knowledge source file (path + field named)
    │   └── RulesError             the rules table, lexicon, scope... (or gaps and overlaps)
    ├── ModelError                 embedding weights missing or altered (hash mismatch named)
    ├── IndexError_                the vector index is missing, stale or unreachable
    │   └── IndexUnavailableError  the Chroma server cannot be reached
    └── InputError                 bad user input: empty/over-long question, invalid findings

Messages say what happened and what to do. Only the UI, API and CLI turn these into user text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class AssistantError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigurationError(AssistantError):
    pass


@dataclass(frozen=True)
class Problem:
    """One problem in a data file: where it is (file, line, field) and what is wrong."""

    file: str
    message: str
    line: int | None = None
    field: str = ""

    def __str__(self) -> str:
        at = f"{self.file}:{self.line}" if self.line else self.file
        return ": ".join(part for part in (at, self.field, self.message) if part)


class DataError(AssistantError):
    """A data file cannot be used. ``problems`` lists every problem found, not only the first.

    ``details`` keeps them structured (:class:`Problem`); ``problems`` is their text,
    ``'<file>:<line>: <field>: <message>'``.
    """

    def __init__(self, problems: Sequence[Problem | str], path: Path | str = "") -> None:
        self.path = str(path)
        name = Path(path).name if path else ""
        self.details = tuple(
            p if isinstance(p, Problem) else Problem(file=name, message=p) for p in problems
        )
        self.problems = [str(p) for p in self.details]
        head = f"{path}: " if path else ""
        super().__init__(
            head + f"{len(self.problems)} problem(s):\n  - " + "\n  - ".join(self.problems)
        )

    @classmethod
    def of(cls, problems: Sequence[Problem], path: Path | str) -> DataError:
        """The error of this class for these problems (the data loaders raise through this)."""
        return cls(problems, path)


class KnowledgeError(DataError):
    """A knowledge source is malformed; ``field`` and ``problem`` describe the first problem."""

    def __init__(
        self,
        path: Path | str,
        field: str = "",
        problem: str = "",
        *,
        problems: Sequence[Problem] | None = None,
        line: int | None = None,
    ) -> None:
        found = list(problems or [Problem(Path(path).name, problem, line, field)])
        super().__init__(found, path)
        self.field = self.details[0].field
        self.problem = self.details[0].message

    @classmethod
    def of(cls, problems: Sequence[Problem], path: Path | str) -> DataError:
        return cls(path, problems=problems)


class RulesError(DataError):
    pass


class ModelError(AssistantError):
    pass


class IndexError_(AssistantError):  # noqa: N801, N818 - avoid shadowing the builtin IndexError
    pass


class IndexUnavailableError(IndexError_):
    pass


class InputError(AssistantError):
    def __init__(self, message: str, field: str = "question") -> None:
        self.field = field
        super().__init__(message)
