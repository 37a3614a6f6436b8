"""The term lexicon and anatomy vocabulary: loaded from YAML, checked at load, compiled once.

Both are data (``knowledge/lexicon.yaml`` and ``knowledge/anatomy.yaml`` beside it); this module
only validates them (pydantic) and compiles every pattern once. A malformed file fails with
``RulesError`` naming the file, line and key (``assistant.data``).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from assistant.data import load_model
from assistant.errors import Problem, RulesError
from assistant.settings import default_knowledge_dir

__all__ = ["DEFAULT_LEXICON_PATH", "Anatomy", "Lexicon", "NumericRule", "load_lexicon"]

DEFAULT_LEXICON_PATH = default_knowledge_dir() / "lexicon.yaml"
ANATOMY_FILE = "anatomy.yaml"

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
    present: dict[str, Terms] = Field(
        min_length=1, description="Group -> terms; asserted => present (yes) for that group."
    )
    absent: Terms = Field(
        default=(), description="Asserted => absent (no) for every group; flipped only by an "
        "adjacent negation (context.double_negation)."
    )


class SymptomTerms(BinaryTerms):
    generic: Terms = Field(description="Generic assertions of symptoms ('became symptomatic').")
    unverified_convention: str = Field(min_length=1)
    unverified: Terms = Field(description="Alone they leave symptom status unknown (dossier §10).")
    weak_absent_convention: str = Field(min_length=1)
    weak_absent: Terms = Field(description="Weak evidence of no symptoms ('incidental').")


class NumericRule(_Strict):
    """A measured value that asserts a finding when it meets a threshold (a tool convention)."""

    id: str
    finding: Literal["symptomatic", "hemodynamic_instability"]
    group: str = Field(description="The present-term group a value updates ('hypoxaemia').")
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

    def plausible_value(self, value: float) -> bool:
        return self.plausible[0] <= value <= self.plausible[1]

    def fires(self, value: float) -> bool:
        return self.plausible_value(value) and _OPERATORS[self.operator](value, self.threshold)


class ProcedureTerms(_Strict):
    generic: str = Field(description="A name that only normalises form/API values.")
    terms: dict[str, Terms] = Field(description="Canonical procedure name -> its terms.")

    @model_validator(mode="after")
    def _check(self) -> ProcedureTerms:
        if self.generic not in self.terms:
            raise ValueError(f"generic {self.generic!r} must be one of the names in terms")
        return self


class BaselineTerms(_Strict):
    convention: str = Field(min_length=1)
    pre: Terms
    post: Terms
    change: Terms = Field(description="A change word near the symptom cancels the baseline.")


class ContextTerms(_Strict):
    pre_negation: Terms
    post_negation: Terms
    pre_uncertainty: Terms
    post_uncertainty: Terms
    anatomy_post_negation: Terms = Field(description="Negate vessel and heart sites only.")
    query_after: Terms = Field(description="A '?' right after a symptom: asked, not stated.")
    query_words: int = Field(ge=0, le=20, description="...if at most this many words precede it.")
    pseudo: Terms = Field(description="Look like triggers but modify nothing.")
    terminators: Terms
    sentence_boundary: Regex
    window_words: int = Field(ge=0, le=20)
    uncertainty_window_words: int = Field(ge=0, le=20)
    chain_gap_words: int = Field(ge=0, le=20)
    cross_finding_joiners: Terms
    double_negation: Terms = Field(description="Negations that flip an ADJACENT absent cue.")
    baseline: BaselineTerms


class AskingTerms(_Strict):
    """When a management word is the clinician asking this tool what to do (a convention)."""

    convention: str = Field(min_length=1)
    opening: Terms = Field(
        description="Open a question typed without '?' (at the start of a sentence that does not "
        "end with a full stop)."
    )
    requests: Terms = Field(description="Forms that ask wherever they stand, '?' or not.")
    headings: Terms = Field(description="Report-section headings: a sentence they open never asks.")


class PopulationTerms(_Strict):
    convention: str = Field(min_length=1)
    any_sentence: Terms
    question_sentence: Terms


class TimeTerms(_Strict):
    convention: str = Field(min_length=1)
    earlier: Terms
    later: Terms
    current: Terms


class Level(_Strict):
    id: str
    location_class: str = Field(alias="class")
    qualifier: bool = Field(
        default=False, description="A word that describes emboli ('segmental'), not a vessel name."
    )
    terms: Terms = Field(min_length=1)


class Anatomy(_Strict):
    """knowledge/anatomy.yaml: vessel and heart vocabulary (read by clinical/anatomy.py)."""

    version: str
    convention: str = Field(min_length=1)
    rules_convention: str = Field(min_length=1)
    precedence_convention: str = Field(min_length=1)
    cement_convention: str = Field(min_length=1)
    precedence: tuple[str, ...] = Field(description="Location classes, most proximal first.")
    levels: tuple[Level, ...] = Field(min_length=1, description="Vessel levels, proximal first.")
    branch: Terms
    lobe: Terms
    vessel: Terms
    linker: Regex
    unclear_statements: Terms
    sides: dict[str, Terms]
    heart: Terms
    heart_unassessed: Terms
    cement_cues: Terms
    exclusions: Terms

    @model_validator(mode="after")
    def _check(self) -> Anatomy:
        missing = {"central", "lobar", "unclear", "peripheral"} - set(self.precedence)
        if missing:
            raise ValueError(f"precedence must list {', '.join(sorted(missing))}")
        unknown = {lv.location_class for lv in self.levels} - set(self.precedence)
        if unknown:
            raise ValueError(f"levels use classes not in precedence: {', '.join(sorted(unknown))}")
        return self


class Lexicon(_Strict):
    version: str
    symptomatic: SymptomTerms
    hemodynamic_instability: BinaryTerms
    numeric: tuple[NumericRule, ...]
    procedure: ProcedureTerms
    management: Terms = Field(min_length=1)
    asking: AskingTerms
    literature: Terms = Field(
        description="A question about what a source did or said, not about this patient."
    )
    exclusions: Terms = Field(description="Spans that look like a term but are not one.")
    population: PopulationTerms
    time: TimeTerms
    context: ContextTerms
    # Loaded from the sibling anatomy.yaml (the validation context), not from lexicon.yaml.
    anatomy: Anatomy

    @model_validator(mode="before")
    @classmethod
    def _with_anatomy(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, Mapping):
            if "anatomy" in data:
                raise ValueError("anatomy: the anatomy vocabulary lives in anatomy.yaml")
            anatomy = (info.context or {}).get("anatomy")
            if anatomy is not None:
                return {**data, "anatomy": anatomy}
        return data

    @model_validator(mode="after")
    def _check(self) -> Lexicon:
        for rule in self.numeric:
            groups = getattr(self, rule.finding).present
            if rule.group not in groups:
                raise ValueError(
                    f"numeric rule {rule.id!r}: group {rule.group!r} is not a present group of "
                    f"{rule.finding} ({', '.join(sorted(groups))})"
                )
        return self


def load_lexicon(path: Path | str | None = None, anatomy_path: Path | str | None = None) -> Lexicon:
    """Load and validate the lexicon and its anatomy vocabulary (``anatomy.yaml`` beside it unless
    given); cached per pair of files and re-read when either changes."""
    resolved = Path(path or DEFAULT_LEXICON_PATH).resolve()
    anatomy = Path(anatomy_path or resolved.with_name(ANATOMY_FILE)).resolve()
    return _load(
        resolved, _mtime(resolved, "lexicon"), anatomy, _mtime(anatomy, "anatomy vocabulary")
    )


def _mtime(path: Path, what: str) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError as exc:
        problem = Problem(path.name, f"cannot read the {what}: {exc.strerror}")
        raise RulesError([problem], path) from exc


@lru_cache(maxsize=8)
def _load(path: Path, mtime_ns: int, anatomy_path: Path, anatomy_mtime_ns: int) -> Lexicon:
    anatomy = load_model(anatomy_path, Anatomy, error=RulesError, what="anatomy vocabulary")
    return load_model(
        path, Lexicon, error=RulesError, context={"anatomy": anatomy}, what="lexicon"
    )
