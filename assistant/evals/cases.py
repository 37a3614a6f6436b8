"""Question-set cases for the evaluation: the schema, loading and validation.

One JSON object a line in ``evals/questions/*.jsonl`` (shipped in the package); read through
``assistant.data.load_jsonl``, so a malformed file fails with its file, line and field, and every
problem in every set is listed (``QuestionSetError``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from assistant.data import load_jsonl
from assistant.errors import DataError, Problem
from assistant.settings import default_questions_dir
from assistant.types import TIERS, EscalationId, ExplicitFindings, Source, Tier

QUESTIONS_DIR = default_questions_dir()
NONE = "none"  # tier label for "no recommendation" (also what an abstention yields)
LABELS: tuple[str, ...] = (*TIERS, NONE)


class QuestionSetError(DataError):
    """A question set file is malformed; ``problems`` name the file, line and field."""


# --- cases ---------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Turn(_Strict):
    role: Literal["user", "assistant"]
    content: str = Field(min_length=1)


class EvalCase(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Unique across all sets.")
    question: str = Field(min_length=1)
    findings: ExplicitFindings | None = None
    history: tuple[Turn, ...] = Field(default=(), description="Earlier turns, oldest first.")
    expected_tier: Tier | None = Field(description="null: no recommendation expected.")
    expected_escalations: tuple[EscalationId, ...] = ()
    relevant_source_ids: tuple[str, ...] = ()
    relevant_dois: tuple[str, ...] = ()
    must_abstain: bool = False
    key_facts: tuple[str, ...] = Field(default=(), description="Phrases a correct text contains.")
    tags: tuple[str, ...] = ()
    split: Literal["dev", "test"]
    set: str = Field(default="", description="Question set (file stem); set by the loader.")

    @model_validator(mode="after")
    def _consistent(self) -> EvalCase:
        if self.must_abstain and (self.expected_tier or self.expected_escalations):
            raise ValueError("a case that must abstain cannot expect a tier or escalations")
        if self.expected_escalations and self.expected_tier is None:
            raise ValueError("expected_escalations need an expected_tier")
        if any(not f.strip() for f in self.key_facts):
            raise ValueError("key_facts must not be blank")
        return self

    @property
    def expected_label(self) -> str:
        return self.expected_tier or NONE


def load_cases(
    directory: Path = QUESTIONS_DIR, sets: Sequence[str] | None = None, split: str = "all"
) -> list[EvalCase]:
    """Every case of the named sets (default: all), validated; errors name file and line."""
    available = {p.stem: p for p in sorted(Path(directory).glob("*.jsonl"))}
    unknown = sorted(set(sets or ()) - set(available))
    if unknown or not available:
        raise QuestionSetError(
            [
                f"no question set {name!r} in {directory} (available: {', '.join(available)})"
                for name in unknown or ["*"]
            ],
            directory,
        )
    problems: list[Problem] = []
    cases: list[EvalCase] = []
    seen: dict[str, str] = {}
    for name, path in available.items():
        if sets and name not in sets:
            continue
        loaded, found = load_jsonl(path, EvalCase, extra={"set": name})
        problems += found
        for line, case in loaded:
            if case.id in seen:
                problems.append(Problem(path.name, f"duplicate id {case.id!r} (first in "
                                                   f"{seen[case.id]})", line, "id"))
            seen.setdefault(case.id, f"{path.name}:{line}")
            cases.append(case)
    if problems:
        raise QuestionSetError(problems, directory)
    return [c for c in cases if split == "all" or c.split == split]


def relevant_sources(case: EvalCase, sources: Mapping[str, Source]) -> list[str]:
    by_doi = {s.doi.lower(): s.id for s in sources.values() if s.doi}
    ids = [*case.relevant_source_ids, *(by_doi.get(d.lower(), d) for d in case.relevant_dois)]
    return list(dict.fromkeys(ids))


def check_relevance(cases: Iterable[EvalCase], sources: Mapping[str, Source]) -> None:
    """Relevant ids and DOIs must name real sources: a typo would silently lower recall."""
    by_doi = {s.doi.lower() for s in sources.values() if s.doi}
    problems = [
        f"case {c.id}: unknown source id {sid!r}"
        for c in cases
        for sid in c.relevant_source_ids
        if sid not in sources
    ]
    problems += [
        f"case {c.id}: no source has DOI {doi!r}"
        for c in cases
        for doi in c.relevant_dois
        if doi.lower() not in by_doi
    ]
    if problems:
        raise QuestionSetError(problems)
