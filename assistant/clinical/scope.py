"""Is a question about cement embolism / vertebral augmentation? If not, the assistant abstains.

Deterministic: the terms in ``knowledge/scope.yaml`` decide first; a question that names a source
of the knowledge base ("What did Krueger 2009 recommend?") is in scope; only a question that names
neither the domain, nor a source, nor another condition falls back to its dense similarity to the
knowledge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from assistant.data import Regex, load_model
from assistant.errors import RulesError


class ScopeTerms(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    statement: str
    core: list[Regex]
    procedure: list[Regex]
    context: list[Regex]
    other_conditions: list[Regex]


@dataclass(frozen=True)
class ScopeDecision:
    in_scope: bool
    reason: str


class ScopeGuard:
    def __init__(self, terms: ScopeTerms, threshold: float) -> None:
        self.statement = terms.statement
        self.threshold = threshold

        def compile_all(patterns: list[str]) -> re.Pattern[str]:
            return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE | re.DOTALL)

        self.core = compile_all(terms.core)
        self.procedure = compile_all(terms.procedure)
        self.context = compile_all(terms.context)
        self.other = compile_all(terms.other_conditions)

    def names_domain(self, text: str) -> bool:
        return bool(
            self.core.search(text) or (self.procedure.search(text) and self.context.search(text))
        )

    def decide(
        self,
        question: str,
        similarity: float | None,
        history_in_scope: bool = False,
        states_finding: bool = False,
        names_source: bool = False,
        explicit_findings: bool = False,
    ) -> ScopeDecision:
        # Findings sent as data (form, API, CDS Hooks) say the question is about this patient's
        # cement embolism, whatever its wording ("What is the recommended management?").
        if explicit_findings:
            return ScopeDecision(True, "structured findings were given")
        core = bool(self.core.search(question))
        if self.other.search(question) and not core:
            return ScopeDecision(False, "names another condition")
        if self.names_domain(question):
            return ScopeDecision(True, "names cement embolism or vertebral augmentation")
        if names_source:
            return ScopeDecision(True, "names a source of the knowledge base")
        if history_in_scope and (states_finding or self.context.search(question)):
            return ScopeDecision(True, "follows up an in-scope conversation")
        if similarity is not None and similarity >= self.threshold:
            return ScopeDecision(True, f"close to the knowledge base ({similarity:.2f})")
        return ScopeDecision(False, "not about cement embolism")


@lru_cache(maxsize=8)
def load_scope_terms(path: Path) -> ScopeTerms:
    return load_model(path, ScopeTerms, error=RulesError, what="scope terms")
