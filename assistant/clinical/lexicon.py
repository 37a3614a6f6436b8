"""The term lexicon: findings terms and ConText trigger lists, loaded from YAML and checked at load.

The lexicon is data (``knowledge/lexicon.yaml``); this module only validates it and compiles every
pattern once. A malformed file fails with ``RulesError`` naming the file, line and key
(``assistant.data``).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from assistant.data import load_model
from assistant.errors import Problem, RulesError
from assistant.settings import default_knowledge_dir

__all__ = ["DEFAULT_LEXICON_PATH", "Lexicon", "NumericRule", "load_lexicon"]

DEFAULT_LEXICON_PATH = default_knowledge_dir() / "lexicon.yaml"

# Word boundary only on a side where the matched text is a word character: 'no' must not match
# inside 'not', yet a term may begin or end with punctuation ('?central', ';').
_EDGE = r"(?:(?<!\w)|(?!\w))"


def _compile(raw: object, *, bounded: bool) -> re.Pattern[str]:
    if isinstance(raw, re.Pattern):
        return raw
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"must be a non-empty, quoted string (a regular expression), got {raw!r}")
    try:
        # Compile the bare term first so an unbalanced ')' cannot escape the wrapping group.
        re.compile(raw)
        pattern = f"{_EDGE}(?:{raw}){_EDGE}" if bounded else raw
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {raw!r}: {exc}") from exc


Term = Annotated[re.Pattern[str], BeforeValidator(lambda v: _compile(v, bounded=True))]
Regex = Annotated[re.Pattern[str], BeforeValidator(lambda v: _compile(v, bounded=False))]
Terms = tuple[Term, ...]

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BinaryTerms(_Strict):
    present: Terms = Field(min_length=1, description="Asserted => the finding is present (yes).")
    absent: Terms = Field(
        default=(), description="Asserted => absent (no); negated => present (double negation)."
    )


class NumericRule(_Strict):
    """A measured value that asserts a finding when it meets a threshold (a tool convention)."""

    id: str
    finding: Literal["symptomatic", "hemodynamic_instability"]
    label: str = Field(description="What the value means when the rule fires ('hypoxaemia').")
    pattern: Term = Field(description="Must capture the number in a group named 'value'.")
    operator: Literal["<", "<=", ">", ">="]
    threshold: float
    plausible: tuple[float, float] = Field(description="Values outside this range are ignored.")
    convention: str = Field(min_length=1, description="Why this threshold; shown as a convention.")

    @model_validator(mode="after")
    def _check(self) -> NumericRule:
        if "value" not in self.pattern.groupindex:
            raise ValueError("pattern must capture the number in a group named 'value'")
        if self.plausible[0] >= self.plausible[1]:
            raise ValueError("plausible must be [low, high] with low < high")
        return self

    def fires(self, value: float) -> bool:
        low, high = self.plausible
        return low <= value <= high and _OPERATORS[self.operator](value, self.threshold)


class LocationTerms(_Strict):
    convention: str = Field(min_length=1)
    precedence_convention: str = Field(min_length=1)
    precedence: tuple[str, ...] = Field(description="Location labels, most proximal first.")
    terms: dict[str, Terms]

    @model_validator(mode="after")
    def _check(self) -> LocationTerms:
        missing = {"central", "peripheral"} - set(self.terms)
        if missing:
            raise ValueError(f"terms must define {', '.join(sorted(missing))}")
        if sorted(self.precedence) != sorted(self.terms):
            raise ValueError("precedence must list each label in terms exactly once")
        return self


class ProcedureTerms(_Strict):
    generic: str = Field(description="The procedure name that a specific one overrides.")
    terms: dict[str, Terms] = Field(description="Canonical procedure name -> its terms.")

    @model_validator(mode="after")
    def _check(self) -> ProcedureTerms:
        if self.generic not in self.terms:
            raise ValueError(f"generic {self.generic!r} must be one of the names in terms")
        return self


class ContextTerms(_Strict):
    pre_negation: Terms
    post_negation: Terms
    pre_uncertainty: Terms
    post_uncertainty: Terms
    pseudo: Terms = Field(description="Look like triggers but modify nothing.")
    terminators: Terms
    sentence_boundary: Regex
    window_words: int = Field(ge=0, le=20)
    chain_gap_words: int = Field(ge=0, le=20)
    cross_finding_joiners: Terms


class Lexicon(_Strict):
    version: str
    symptomatic: BinaryTerms
    hemodynamic_instability: BinaryTerms
    intracardiac_cement: BinaryTerms
    numeric: tuple[NumericRule, ...]
    location: LocationTerms
    procedure: ProcedureTerms
    management: Terms = Field(min_length=1)
    literature: Terms = Field(
        description="A question about what a source did or said, not about this patient."
    )
    exclusions: Terms = Field(description="Spans that look like a term but are not one.")
    context: ContextTerms


def load_lexicon(path: Path | str | None = None) -> Lexicon:
    """Load and validate the lexicon; cached per file (and re-read when the file changes)."""
    resolved = Path(path or DEFAULT_LEXICON_PATH).resolve()
    try:
        mtime = resolved.stat().st_mtime_ns
    except OSError as exc:
        problem = Problem(resolved.name, f"cannot read the lexicon: {exc.strerror}")
        raise RulesError([problem], resolved) from exc
    return _load(resolved, mtime)


@lru_cache(maxsize=8)
def _load(path: Path, mtime_ns: int) -> Lexicon:
    return load_model(path, Lexicon, error=RulesError, what="lexicon")
