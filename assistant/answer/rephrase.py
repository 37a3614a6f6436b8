"""Optional LLM re-phrasing of the extractive narrative, from the cited passages only.

Off by default (``PCE_LLM`` unset) and the product is complete without it. The LLM sees the
question, the extractive narrative and the numbered passages that narrative cites, and may only
re-word them. Its reply is checked before use: every [n] marker must resolve to a citation of the
answer and none may be dropped, numbers must come from the cited text, and it must not recommend
an action of a tier other than the one the rules table gave (``knowledge/tier_actions.yaml``) nor
name another tier. On any problem, exception or timeout the extractive narrative stays and
``Answer.notes`` says why. The recommendation never passes through the LLM.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from assistant.data import Regex, load_model, report
from assistant.errors import ConfigurationError, RulesError
from assistant.types import TIERS, Citation, Passage, Recommendation, Tier

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
MARKER_RE = re.compile(r"\[(\d+(?:\s*[,;–-]\s*\d+)*)\]")
THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
CLAUSE_RE = re.compile(r"[.;:!?,\n]|\bbut\b|\bhowever\b", re.IGNORECASE)
NEGATION_RE = re.compile(r"\b(?:no|not|never|without|against|nor|avoid\w*)\b|n't\b", re.IGNORECASE)
NUMBER_RE = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve".split()
    )
}
NUMBER_WORD_RE = re.compile(r"\b(" + "|".join(NUMBER_WORDS) + r")\b", re.IGNORECASE)
PROVIDERS = {
    # provider -> (module, chat model class, package to install)
    "ollama": ("langchain_ollama", "ChatOllama", "langchain-ollama"),
    "openai": ("langchain_openai", "ChatOpenAI", "langchain-openai"),
}
SYSTEM_PROMPT = (
    "You re-phrase an evidence summary for a clinician, using ONLY the numbered passages given. "
    "Rules: keep every citation marker such as [1] and [2] attached to the statement it "
    "supports, and use no other marker; add no fact, number, dose, duration or recommendation "
    "that is not in the passages; do not give management advice and do not name a management "
    "tier; keep it about as long as the summary. Reply with the re-phrased summary only."
)


# -- the tier-action phrases (data) ------------------------------------------------------------


class TierAction(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    label: str
    tiers: tuple[Tier, ...] = Field(description="The tiers this action belongs to.")
    phrases: tuple[Regex, ...] = Field(min_length=1)
    negatable: bool = Field(
        default=False, description="A match after a negation in its clause does not count."
    )


class TierActions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int
    actions: tuple[TierAction, ...]

    @model_validator(mode="after")
    def _unique_ids(self) -> TierActions:
        ids = [a.id for a in self.actions]
        duplicates = [(("actions", i, "id"), f"duplicate id '{ident}'")
                      for i, ident in enumerate(ids) if ident in ids[:i]]
        if duplicates:
            raise report(duplicates)
        return self


@dataclass(frozen=True)
class ActionPattern:
    regex: re.Pattern[str]
    label: str
    tiers: frozenset[str]
    names_tier: bool = False
    negatable: bool = False

    def count(self, text: str) -> int:
        """Matches that recommend the action (a negated one, if negatable, does not)."""
        n = 0
        for match in self.regex.finditer(text):
            clause = CLAUSE_RE.split(text[max(0, match.start() - 40) : match.start()])[-1]
            if not (self.negatable and NEGATION_RE.search(clause)):
                n += 1
        return n


@lru_cache(maxsize=8)
def load_tier_actions(path: Path) -> tuple[ActionPattern, ...]:
    """Validate ``tier_actions.yaml`` and compile its phrases, plus each tier id as a word."""
    data = load_model(path, TierActions, error=RulesError, what="tier actions")
    patterns = [
        ActionPattern(re.compile(phrase, re.IGNORECASE), action.label, frozenset(action.tiers),
                      negatable=action.negatable)
        for action in data.actions
        for phrase in action.phrases
    ]
    for tier in TIERS:
        # As an id ('surgical_embolectomy', 'Tier: anticoagulation', 'the surveillance tier'),
        # not as the plain word: 'anticoagulation' and 'surveillance' are ordinary English.
        word = tier.replace("_", r"[\s_-]")
        forms = [rf"\btier\s*(?:is\s*)?[:=]?\s*[`'\"]?{word}\b", rf"\b{word}[`'\"]?\s+tier\b"]
        if "_" in tier:
            forms.append(rf"\b{tier}\b")
        regex = re.compile("|".join(forms), re.IGNORECASE)
        patterns.append(ActionPattern(regex, tier, frozenset({tier}), names_tier=True))
    return tuple(patterns)


# -- the model ---------------------------------------------------------------------------------


def model_from_settings(spec: str, timeout: float = DEFAULT_TIMEOUT_S) -> BaseChatModel:
    """'ollama:<model>' or 'openai:<model>' -> the LangChain chat model (imported only here)."""
    provider, _, name = spec.partition(":")
    provider, name = provider.strip().lower(), name.strip()
    if provider not in PROVIDERS or not name:
        raise ConfigurationError(
            f"PCE_LLM={spec!r} is not understood; use 'ollama:<model>' (e.g. ollama:llama3.1) "
            "or 'openai:<model>' (e.g. openai:gpt-4o-mini), or leave PCE_LLM unset."
        )
    module_name, class_name, package = PROVIDERS[provider]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"PCE_LLM={spec!r} needs the {package} package: pip install {package} "
            "(or unset PCE_LLM to use the extractive narrative only)."
        ) from exc
    chat_class = getattr(module, class_name)
    if provider == "ollama":
        return chat_class(model=name, temperature=0, client_kwargs={"timeout": timeout})
    return chat_class(model=name, temperature=0, timeout=timeout, max_retries=1)


# -- re-phrasing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rephrasing:
    text: str
    accepted: bool
    notes: tuple[str, ...]


def _numbers(text: str) -> set[str]:
    text = MARKER_RE.sub(" ", text)
    text = NUMBER_WORD_RE.sub(lambda m: NUMBER_WORDS[m.group(1).lower()], text)
    found = set()
    for raw in NUMBER_RE.findall(text):
        value = raw.replace(",", "") if re.fullmatch(r"\d{1,3}(?:,\d{3})+", raw) else raw
        found.add(value.replace(",", "."))
    return found


def markers(text: str) -> list[int]:
    """Every marker number in order of appearance; '[1, 2]' and '[1-3]' count each number."""
    found: list[int] = []
    for group in MARKER_RE.findall(text):
        for part in re.split(r"\s*[,;]\s*", group):
            lo, _, hi = re.sub(r"\s", "", part).replace("–", "-").partition("-")
            if hi and int(lo) <= int(hi) <= int(lo) + 50:
                found += range(int(lo), int(hi) + 1)
            else:
                found += [int(lo)] + ([int(hi)] if hi else [])
    return found


def _message_text(message: Any) -> str:
    text = getattr(message, "text", message)
    if not isinstance(text, str) and callable(text):  # langchain-core < 1.0: a method
        text = text()
    if not isinstance(text, str):
        text = str(getattr(message, "content", text))
    return THINK_RE.sub("", text).strip()


class Rephraser:
    """Re-phrase a narrative with a chat model; keep it only if it passes :meth:`check`."""

    def __init__(
        self,
        model: BaseChatModel,
        tier_actions: Path | Sequence[ActionPattern] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        from assistant.settings import default_knowledge_dir

        self.model = model
        self.timeout = timeout
        source = tier_actions or default_knowledge_dir() / "tier_actions.yaml"
        self.patterns = load_tier_actions(source) if isinstance(source, Path) else tuple(source)
        self.name = str(
            getattr(model, "model", None) or getattr(model, "model_name", None) or model._llm_type
        )

    def messages(
        self,
        question: str,
        narrative: str,
        citations: Sequence[Citation],
        passages: Iterable[Passage] = (),
    ) -> list[tuple[str, str]]:
        """The prompt: the question, the extractive narrative and only the cited passages."""
        by_id = {p.id: p for p in passages}
        numbered = []
        for c in sorted(citations, key=lambda c: c.n):
            passage = by_id.get(c.passage_id)
            body = passage.text if passage is not None else c.snippet
            numbered.append(f"[{c.n}] {c.title} ({c.year or 'n.d.'}), {c.section}:\n{body}")
        human = (
            f"Question: {question}\n\nSummary to re-phrase:\n{narrative}\n\n"
            "Passages (the only evidence you may use):\n\n" + "\n\n".join(numbered)
        )
        return [("system", SYSTEM_PROMPT), ("human", human)]

    def check(
        self,
        text: str,
        citations: Sequence[Citation],
        recommendation: Recommendation | None,
        *,
        narrative: str = "",
        evidence: str = "",
    ) -> list[str]:
        """Problems with a re-phrased narrative; an empty list means it may be shown.

        ``narrative`` (the extractive text) tolerates action phrases it already contains;
        ``evidence`` (narrative + cited passages) is where every number must come from.
        """
        problems: list[str] = []
        if not text.strip():
            return ["the reply is empty"]
        cited = {c.n for c in citations}
        found = markers(text)
        if not found:
            problems.append("it has no citation marker")
        unresolved = sorted(set(found) - cited)
        if unresolved:
            shown = ", ".join(f"[{n}]" for n in unresolved)
            problems.append(f"marker(s) {shown} do not resolve to a cited passage")
        dropped = sorted(cited - set(found)) if found else []
        if dropped:
            problems.append(f"it drops marker(s) {', '.join(f'[{n}]' for n in dropped)}")
        tier = recommendation.tier if recommendation is not None else None
        for pattern in self.patterns:
            if tier in pattern.tiers:
                continue
            if pattern.count(text) > pattern.count(narrative):
                what = "names tier" if pattern.names_tier else "recommends"
                problems.append(
                    f"it {what} {pattern.label} ({_quote(pattern.regex.search(text))}) but the "
                    f"rules gave {tier or 'no tier'}"
                )
        if evidence:
            new = sorted(_numbers(text) - _numbers(evidence))
            if new:
                problems.append(f"number(s) not in the cited passages: {', '.join(new)}")
        return list(dict.fromkeys(problems))

    def _invoke(self, messages: list[tuple[str, str]]) -> str:
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                result["message"] = self.model.invoke(messages)
            except BaseException as exc:  # re-raised by the caller below
                result["error"] = exc

        # A daemon thread, so a model that never answers cannot hold up the answer or shutdown.
        worker = threading.Thread(target=run, name="pce-llm-rephrase", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():
            raise TimeoutError(f"no reply within {self.timeout:g} s")
        if "error" in result:
            raise result["error"]
        return _message_text(result["message"])

    def rephrase(
        self,
        question: str,
        narrative: str,
        citations: Sequence[Citation],
        recommendation: Recommendation | None,
        passages: Sequence[Passage] = (),
    ) -> Rephrasing:
        """The checked re-phrasing, or the extractive narrative with a note saying why."""
        if not citations:
            return Rephrasing(narrative, False, ())
        try:
            text = self._invoke(self.messages(question, narrative, citations, passages))
        except Exception as exc:  # any model failure falls back (logged)
            log.warning("LLM re-phrasing failed (%s): %s", self.name, exc, exc_info=exc)
            reason = str(exc) if isinstance(exc, TimeoutError) else type(exc).__name__
            return Rephrasing(narrative, False, (_rejected(f"the model failed ({reason})"),))
        cited_ids = {c.passage_id for c in citations}
        evidence = " ".join(
            [narrative, *(p.text for p in passages if p.id in cited_ids)]
            + [f"{c.title} {c.year or ''} {c.section} {c.snippet}" for c in citations]
        )
        problems = self.check(
            text, citations, recommendation, narrative=narrative, evidence=evidence
        )
        if problems:
            log.info("LLM re-phrasing rejected (%s): %s", self.name, "; ".join(problems))
            return Rephrasing(narrative, False, (_rejected("; ".join(problems)),))
        note = (
            f"Narrative re-phrased by an LLM ({self.name}) from the cited passages only; checked."
        )
        return Rephrasing(text, True, (note,))


def _rejected(reason: str) -> str:
    return f"LLM re-phrasing rejected: {reason}. The extractive narrative is shown."


def _quote(match: re.Match[str] | None) -> str:
    return f"'{match.group(0)}'" if match else "''"
