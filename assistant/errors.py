"""One exception tree, rooted at ``AssistantError``.

    AssistantError
    ├── ConfigurationError         settings that cannot work (bad URL, missing directory)
    ├── KnowledgeError             a knowledge source file is malformed (path + field named)
    ├── RulesError                 the rules table or lexicon is malformed, has gaps or overlaps
    ├── ModelError                 embedding weights missing or altered (hash mismatch named)
    ├── IndexError_                the vector index is missing, stale or unreachable
    │   └── IndexUnavailableError  the Chroma server cannot be reached
    └── InputError                 bad user input: empty/over-long question, invalid findings

Messages say what happened and what to do. Only the UI, API and CLI turn these into user text.
"""

from __future__ import annotations

from pathlib import Path


class AssistantError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigurationError(AssistantError):
    pass


class KnowledgeError(AssistantError):
    def __init__(self, path: Path | str, field: str, problem: str) -> None:
        self.path = str(path)
        self.field = field
        self.problem = problem
        super().__init__(f"{path}: field '{field}': {problem}")


class RulesError(AssistantError):
    def __init__(self, problems: list[str], path: Path | str = "") -> None:
        self.path = str(path)
        self.problems = list(problems)
        head = f"{path}: " if path else ""
        super().__init__(head + f"{len(problems)} problem(s):\n  - " + "\n  - ".join(problems))


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
