"""The orchestrator: findings -> scope -> retrieval -> rules -> composed, cited Answer.

``Assistant.ask`` is the one entry point every surface uses (UI, HTTP, CDS Hooks, CLI, evals).
The tier comes only from the rules table; nothing here produces or alters it.
"""

from __future__ import annotations

import logging
import time
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import Runnable, RunnableConfig

from assistant.answer.compose import Composer
from assistant.answer.disagreements import Disagreements, load_disagreements
from assistant.audit import AuditLog, elapsed_ms
from assistant.clinical.findings import extract_findings, resolve_findings
from assistant.clinical.lexicon import Lexicon, load_lexicon
from assistant.clinical.rules import RuleTable, load_rules
from assistant.clinical.scope import ScopeGuard, load_scope_terms
from assistant.errors import IndexUnavailableError, InputError, KnowledgeError
from assistant.knowledge.corpus import Corpus, load_corpus
from assistant.knowledge.keypoints import cell_problems
from assistant.knowledge.mentions import SourceMentions, naming_words, source_label
from assistant.knowledge.synonyms import load_synonyms
from assistant.retrieval.embeddings import Embedder, embedder_from_settings
from assistant.retrieval.index import VectorIndex, ensure_index, open_index
from assistant.retrieval.retrievers import BM25Retriever, Retriever, make_retriever
from assistant.settings import Settings
from assistant.types import (
    Answer,
    ExplicitFindings,
    Findings,
    NarrativeSentence,
    Passage,
    Recommendation,
    Source,
    Versions,
)

if TYPE_CHECKING:
    from assistant.answer.rephrase import Rephraser

log = logging.getLogger(__name__)

DISCLAIMER = (
    "Decision support only. PCE Assistant summarises published reviews, cohorts and case reports "
    "and applies a fixed, cited decision table; the evidence base is small and there is no "
    "standard of care. It does not replace clinical judgement, local protocols or specialist "
    "advice: check the cited sources and the basis before acting."
)
CONTROL_OK = {"\n", "\r", "\t"}
# Retrieval depth for composition: the answer records the top_k, the composer sees more claims.
COMPOSE_DEPTH = 15


def app_version() -> str:
    try:
        return version("pce-assistant")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def check_text(text: str, what: str, field: str) -> None:
    """Reject text that is not valid UTF-8 (lone surrogates) or holds control characters."""
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise InputError(f"{what} is not valid UTF-8 text; re-type or re-paste it.", field=field)
    bad = sorted({c for c in text if unicodedata.category(c) == "Cc" and c not in CONTROL_OK})
    if bad:
        shown = ", ".join(f"U+{ord(c):04X}" for c in bad[:5])
        raise InputError(f"{what} contains control characters ({shown}); remove them.", field=field)


def validate_question(question: object, max_chars: int) -> str:
    if not isinstance(question, str):
        raise InputError(f"The question must be text, not {type(question).__name__}.")
    check_text(question, "The question", "question")
    text = question.strip()
    if not text:
        raise InputError("The question is empty; type a question about cement embolism.")
    if len(text) > max_chars:
        raise InputError(
            f"The question is {len(text):,} characters long; the limit is {max_chars:,}. "
            "Shorten it to the clinical question and key findings."
        )
    return text


def history_user_turns(history: object, max_turns: int, max_chars: int) -> list[str]:
    """Accept OpenAI/Gradio-style messages or plain strings; keep the user turns' text."""
    if history is None:
        return []
    if not isinstance(history, Sequence) or isinstance(history, (str, bytes)):
        raise InputError("history must be a list of messages", field="history")
    # The limit counts the clinician's turns; the cap on all messages bounds the work per request.
    if len(history) > 4 * max_turns:
        raise InputError(
            f"history has {len(history)} messages; the limit is {4 * max_turns}. Start a new "
            "conversation or send only the recent turns.",
            field="history",
        )
    turns: list[str] = []
    for i, item in enumerate(history):
        if isinstance(item, str):
            role, content = "user", item
        elif isinstance(item, Mapping):
            role, content = item.get("role", "user"), item.get("content", "")
        else:
            raise InputError(f"history[{i}] must be a message object or text", field="history")
        if isinstance(content, list):  # Gradio 6 content blocks
            content = " ".join(str(b.get("text", "")) for b in content if isinstance(b, Mapping))
        if not isinstance(content, str):
            raise InputError(f"history[{i}].content must be text", field="history")
        if len(content) > max_chars:
            raise InputError(
                f"history[{i}] is longer than {max_chars:,} characters", field="history"
            )
        check_text(content, f"history[{i}]", "history")
        if role == "user" and content.strip():
            turns.append(content)
    if len(turns) > max_turns:
        raise InputError(
            f"history has {len(turns)} user turns; the limit is {max_turns}. Start a new "
            "conversation or send only the recent turns.",
            field="history",
        )
    return turns


@dataclass
class Components:
    """Everything ask() needs, built once; tests build it with fakes."""

    settings: Settings
    corpus: Corpus
    retriever: Retriever
    bm25: BM25Retriever
    rules: RuleTable
    lexicon: Lexicon
    scope: ScopeGuard
    disagreements: Disagreements
    embedder: Embedder
    index: VectorIndex | None
    index_name: str = ""


class Assistant(Runnable[Any, Answer]):
    """Ask questions; get cited answers and, when relevant, the rules table's recommendation."""

    def __init__(
        self,
        components: Components,
        audit: AuditLog | None = None,
        rephraser: Rephraser | None = None,
    ) -> None:
        # The wiring, for tests and benchmarks; faces use the accessors below.
        self.components = components
        self.settings = components.settings
        self.audit = audit
        # Optional LLM re-phrasing of the narrative (PCE_LLM); never sees or sets the tier.
        self.rephraser = rephraser
        knowledge = components.corpus.knowledge
        sources = components.corpus.sources
        self.composer = Composer(
            components.corpus.passages,
            key_points=knowledge.key_points,
            topic_texts={t.id: f"{t.label}. {t.description}" for t in knowledge.topics.values()},
            labels={sid: source_label(s) for sid, s in sources.items()},
            names={sid: naming_words(s) for sid, s in knowledge.sources.items()},
            conventions={"location": components.rules.location_convention},
        )
        self.mentions = SourceMentions.of(knowledge.sources.values())
        # Abbreviations in a question also count as the words the claims use (IVC, RV, CXR).
        self.synonyms = load_synonyms(self.settings.knowledge_dir / "synonyms.yaml")
        self.versions = Versions(
            app=app_version(),
            knowledge=components.corpus.fingerprint,
            rules=f"{components.rules.version} ({components.rules.fingerprint})",
            model=f"{components.embedder.name} ({self.settings.embedding_sha256[:12]})",
            index=components.index_name,
            llm=self.settings.llm or "",
            settings=self.settings.fingerprint(),
        )

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        embedder: Embedder | None = None,
        retriever: str | None = None,
        audit: bool = True,
        build_index: bool = True,
        index_required: bool = True,
    ) -> Assistant:
        """Load knowledge, rules and lexicon (validated), open or build the index, wire it all.

        The embedded index is built here on first use (behind a file lock). A Chroma server's
        index is only opened: ``pce-assistant index`` is its one writer. ``index_required=False``
        (a restarted worker) starts even if the server is briefly unreachable, with keyword search
        and a note until it is back.
        """
        settings = settings or Settings()
        rephraser = None
        if settings.llm:  # imported only when PCE_LLM asks for one; fails before the heavy work
            from assistant.answer.rephrase import Rephraser, model_from_settings

            rephraser = Rephraser(
                model_from_settings(settings.llm), settings.knowledge_dir / "tier_actions.yaml"
            )
        corpus = load_corpus(settings)
        rules = load_rules(settings.knowledge_dir / "rules.yaml", corpus.knowledge.citations)
        if corpus.knowledge.key_points is not None:
            rule_ids = [*(r.id for r in rules.rows), *(e.id for e in rules.escalations)]
            problems = cell_problems(corpus.knowledge.key_points, rule_ids)
            if problems:
                raise KnowledgeError(
                    settings.knowledge_dir / "key_points.yaml", "cells", "; ".join(problems)
                )
        lexicon = load_lexicon(settings.knowledge_dir / "lexicon.yaml")
        scope = ScopeGuard(
            load_scope_terms(settings.knowledge_dir / "scope.yaml"), settings.scope_threshold
        )
        disagreements = load_disagreements(
            settings.knowledge_dir / "disagreements.yaml", set(corpus.knowledge.claims)
        )
        embedder = embedder or embedder_from_settings(
            settings.embedding_model_dir, settings.embedding_sha256, settings.embedding_model_name
        )
        mode = retriever or settings.retriever
        index: VectorIndex | None = None
        index_name = ""
        if mode != "bm25" or build_index:
            if settings.chroma_url:
                index = open_index(
                    settings,
                    embedder.name,
                    corpus.fingerprint,
                    wait_s=settings.index_wait_s,
                    required=index_required,
                )
                index_name = index.name or index.base_name
            else:
                index, report = ensure_index(
                    settings, corpus.passages, embedder, corpus.fingerprint, rebuild=False
                )
                index_name = report.collection
                if report.built:
                    log.warning("%s", report.summary())
        bm25 = BM25Retriever(corpus.passages)  # one index serves hybrid and the fallback
        components = Components(
            settings=settings,
            corpus=corpus,
            retriever=make_retriever(mode, settings, corpus, index, embedder, bm25),
            bm25=bm25,
            rules=rules,
            lexicon=lexicon,
            scope=scope,
            disagreements=disagreements,
            embedder=embedder,
            index=index,
            index_name=index_name,
        )
        return cls(components, AuditLog.from_settings(settings) if audit else None, rephraser)

    def warm_up(self) -> None:
        """Load the model and touch the index now, so the first clinician does not wait."""
        self.components.embedder.embed_query("pulmonary cement embolism")
        if self.components.index is not None:
            self.components.retriever.retrieve("pulmonary cement embolism", 1)

    # -- what the faces may read -------------------------------------------------------------

    @property
    def sources(self) -> Mapping[str, Source]:
        """Every source answers can cite (curated and user-supplied), by id."""
        return self.components.corpus.sources

    @property
    def passage_count(self) -> int:
        return len(self.components.corpus.passages)

    @property
    def lexicon(self) -> Lexicon:
        """The term lexicon and its numeric conventions (the CDS service reads vitals with it)."""
        return self.components.lexicon

    @property
    def location_convention(self) -> str:
        """The rules table's statement of what central and peripheral mean in this tool."""
        return self.components.rules.location_convention

    # -- answering ---------------------------------------------------------------------------

    def _retrieve(self, question: str) -> tuple[list[Passage], list[str]]:
        notes: list[str] = []
        depth = max(self.settings.top_k, COMPOSE_DEPTH)
        query = self.synonyms.expand(question)
        try:
            passages = self.components.retriever.retrieve(query, depth)
        except IndexUnavailableError as exc:
            log.error("dense retrieval unavailable, falling back to keyword search: %s", exc)
            notes.append("The vector index is unreachable; this answer used keyword search only.")
            passages = self.components.bm25.retrieve(query, depth)
        return passages, notes

    def _similarity(self, question: str, passages: Sequence[Passage]) -> float | None:
        dense = [p.scores["dense"] for p in passages if "dense" in p.scores]
        if dense:
            return max(dense)
        if self.components.index is None:
            return None
        try:  # keyword-only modes still judge scope the same way
            hits = self.components.index.query(self.components.embedder.embed_query(question), 1)
        except IndexUnavailableError:
            return None
        return hits[0][1] if hits else None

    def recommend(self, findings: Findings) -> Recommendation:
        return self.components.rules.recommend(findings)

    def recommend_from(
        self,
        explicit: ExplicitFindings | Mapping[str, Any],
        *,
        user: str | None = None,
        surface: str = "python",
    ) -> tuple[Findings, Recommendation, str]:
        """Structured findings only (forms, EHRs): the tier without retrieval or free text.

        Findings that are all unknown are valid input: the table answers needs_information and
        says what to ask.
        """
        stated = ExplicitFindings.parse(explicit)
        findings = resolve_findings("", self.components.lexicon, explicit=stated)
        rec, event_id = self.recommend_findings(findings, user=user, surface=surface)
        return findings, rec, event_id

    def recommend_findings(
        self, findings: Findings, *, user: str | None = None, surface: str = "python"
    ) -> tuple[Recommendation, str]:
        """The table's recommendation for findings read elsewhere (an EHR record), audited."""
        start = time.perf_counter()
        rec = self.components.rules.recommend(findings)
        event_id = uuid.uuid4().hex
        if self.audit is not None:
            self.audit.record(
                "cds" if surface == "cds" else "recommend",
                id=event_id,
                surface=surface,
                user=user,
                findings=findings.model_dump(mode="json"),
                tier=rec.tier,
                rule_id=rec.rule_id,
                escalations=[e.id for e in rec.escalations],
                citations=[c.model_dump(mode="json") for c in rec.citations],
                versions=self.versions.model_dump(mode="json"),
                latency_ms=elapsed_ms(start),
            )
        return rec, event_id

    def record_feedback(
        self,
        ref: str,
        outcome: str,
        comment: str | None = None,
        *,
        user: str | None = None,
        surface: str = "python",
    ) -> str | None:
        """Feedback on an answer or card (helpful, evidence wrong, accepted, overridden...)."""
        if self.audit is None:
            return None
        return self.audit.record(
            "feedback", ref=ref, outcome=outcome, comment=comment, user=user, surface=surface
        )

    def ask(
        self,
        question: str,
        findings: ExplicitFindings | Mapping[str, Any] | None = None,
        history: Sequence[Any] | None = None,
        *,
        user: str | None = None,
        surface: str = "python",
    ) -> Answer:
        start = time.perf_counter()
        s = self.settings
        text = validate_question(question, s.max_question_chars)
        turns = history_user_turns(history, s.max_history_turns, s.max_question_chars)
        explicit = ExplicitFindings.parse(findings)
        resolved = resolve_findings(text, self.components.lexicon, explicit=explicit, history=turns)
        deep, notes = self._retrieve(text)
        passages = deep[: s.top_k]
        named = self.mentions.find(text)
        history_in_scope = any(self.components.scope.names_domain(t) for t in turns)
        # Read this turn's own findings again only when the scope guard can use them (a
        # follow-up in an in-scope conversation); resolve_findings has merged them away.
        said_now = extract_findings(text, self.components.lexicon) if history_in_scope else None
        decision = self.components.scope.decide(
            text,
            self._similarity(text, passages),
            history_in_scope=history_in_scope,
            states_finding=said_now is not None
            and (said_now.has_clinical_finding() or said_now.asks_management),
            names_source=bool(named),
            explicit_findings=not explicit.is_empty(),
        )
        if not decision.in_scope:
            answer = Answer(
                question=text,
                in_scope=False,
                text="This question appears to be outside what I cover. "
                + self.components.scope.statement,
                findings=resolved,
                disclaimer=DISCLAIMER,
                versions=self.versions,
                notes=(*notes, f"Scope: {decision.reason}."),
                latency_ms=elapsed_ms(start),
            )
            return self._audited(answer, user, surface)
        recommendation = None
        if resolved.has_clinical_finding() or resolved.asks_management:
            recommendation = self.components.rules.recommend(resolved)
        composed = self.composer.compose(
            text,
            deep,
            self.components.disagreements.matching(text),
            expanded=self.synonyms.expand(text),
            findings=resolved,
            recommendation=recommendation,
            named=named,
        )
        shown = {p.id for p in passages}
        cited_extra = [p for p in composed.cited if p.id not in shown]
        follow_ups = tuple(m.question for m in recommendation.missing) if recommendation else ()
        narrative = composed.text or "No claim in the knowledge base answers this question."
        if self.rephraser is not None and composed.citations:
            rephrased = self.rephraser.rephrase(
                text, narrative, composed.citations, recommendation, (*passages, *cited_extra)
            )
            narrative = rephrased.text
            notes.extend(rephrased.notes)
        answer = Answer(
            question=text,
            in_scope=True,
            text=narrative,
            citations=composed.citations,
            recommendation=recommendation,
            findings=resolved,
            follow_up_questions=follow_ups,
            passages=(*passages, *cited_extra),
            sentences=tuple(
                NarrativeSentence(text=x.text, role=x.role, cites=x.cites)
                for x in composed.sentences
            ),
            disclaimer=DISCLAIMER,
            versions=self.versions,
            notes=tuple(notes),
            latency_ms=elapsed_ms(start),
        )
        return self._audited(answer, user, surface)

    def _audited(self, answer: Answer, user: str | None, surface: str) -> Answer:
        if self.audit is None:
            return answer
        rec = answer.recommendation
        self.audit.record(
            "ask",
            id=answer.id,
            surface=surface,
            user=user,
            question=answer.question,
            in_scope=int(answer.in_scope),
            findings=answer.findings.model_dump(mode="json"),
            tier=rec.tier if rec else None,
            rule_id=rec.rule_id if rec else None,
            escalations=[e.id for e in rec.escalations] if rec else [],
            citations=[c.model_dump(mode="json") for c in answer.citations],
            versions=answer.versions.model_dump(mode="json"),
            latency_ms=answer.latency_ms,
        )
        return answer

    # -- LangChain Runnable ------------------------------------------------------------------

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Answer:
        """Input: a question string, or {"question", "findings"?, "history"?}."""
        if isinstance(input, str):
            return self.ask(input, surface="langchain")
        if isinstance(input, Mapping):
            unknown = set(input) - {"question", "findings", "history"}
            if unknown:
                raise InputError(f"unknown input keys: {', '.join(sorted(unknown))}")
            return self.ask(
                input.get("question", ""),
                findings=input.get("findings"),
                history=input.get("history"),
                surface="langchain",
            )
        raise InputError("input must be a question string or a mapping with 'question'")
