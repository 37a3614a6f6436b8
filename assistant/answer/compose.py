"""Compose the narrative from claims: the point first, each sentence cited by its own source.

Extractive and deterministic (DESIGN §3a). The parts:

1. For a question about a patient (the rules table gave a recommendation and the question states
   a finding), one plain sentence with THIS patient's tier, templated from the recommendation's
   data. A management question that states no finding, or a knowledge question that mentions
   one, is answered by the evidence first; the table's sentence closes the narrative.
2. The claims that answer the question, best first: the claims of the patient's cell of the table
   (``key_points.yaml`` ``cells``, the rule's own citations first), the key points of the kinds
   the question is routed to, the claims of a source the question names, and what retrieval
   found -- each scored by its prior and its word overlap with the question, then picked with
   maximal marginal relevance so that no two sentences say nearly the same thing.
3. A "sources disagree" note, only when the question is about the disputed topic.

Never shown: a claim whose population contradicts the patient's findings, or (for a definite
tier) a claim that is the evidence of another cell of the table. A case claim is introduced as a
published case, so it cannot read as a finding of this patient. Every claim sentence carries the
marker of its own claim; markers are numbered by first use and resolve to citations, and an id
that does not resolve is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from assistant.answer.disagreements import PLACEHOLDER_RE, Topic
from assistant.answer.lexical import Idf, jaccard, split_sentences, terms
from assistant.answer.route import Route, Router
from assistant.knowledge.keypoints import KeyPoints
from assistant.types import Citation, Findings, Passage, Recommendation

Role = Literal["tier", "claim", "note", "convention"]

# Priors of where a claim comes from (tuned on the evaluation's dev split, evals/README.md).
CELL_PRIOR = 1.6  # the evidence for this patient's cell of the table
RULE_CITED_BONUS = 0.15  # ... of which the rule itself cites
ESCALATION_PRIOR = 1.3
GENERIC_CELL_PRIOR = 0.7  # the cell of a management question that states no finding at all
PRIMARY_KIND_PRIOR = 1.0  # key points of the kind the question is routed to first
OTHER_KIND_PRIOR = 0.6
NAMED_SOURCE_PRIOR = 1.3  # every claim of a source the question names
OTHER_SOURCE_FACTOR = 0.6  # ... and claims of other sources count less then
TOPIC_PRIOR = (0.5, 0.25)  # a claim on a topic of the first / second kind routed to
RETRIEVAL_PRIOR = 1.2  # retrieval reads this very question; key points are per kind
VIGNETTE_RETRIEVAL_FACTOR = 0.5
OFF_TOPIC_FACTOR = 0.7  # a claim on none of the topics the question's cues route it to
STEP = 0.07  # lower priors further down an ordered list
RETRIEVAL_DECAY = 0.3
EXTRA_ROLE_SHARE = 0.3  # a claim found by several routes gets part of its other priors
LEXICAL_WEIGHT = 2.0  # word overlap with the question (specific words decide the lead)
VIGNETTE_LEXICAL_WEIGHT = 0.5  # a vignette's many words describe the patient, not the point
NUMBER_BONUS = 0.4
MMR_LAMBDA = 0.75
NEAR_DUPLICATE = 0.55
MAX_CLAIMS = 5
MAX_CLAIMS_WITH_TIER = 4
MAX_CLAIMS_WITH_NOTE = 3
MIN_CLAIMS = 2
RELATIVE_FLOOR = 0.7  # after MIN_CLAIMS, stop below this share of the best score
PER_SOURCE = 2  # sentences per source, unless the question names that source
ROUTES_USED = 3
# A question asking "how often / how long / how much" is answered by a sentence with a number.
QUANTITY_RE = re.compile(
    r"\b(how (often|common|frequent|long|many|much|soon|late)|incidence|rate|percent|dose|"
    r"duration|interval|months?|volume|risk|odds|proportion|figures?|what (?:range|share))\b|%",
    re.IGNORECASE,
)
NUMBER_RE = re.compile(r"\d")
# What shape of answer a question asks for, and what a sentence of that shape contains: "how
# often" is answered by a rate, "how long" or "the longest interval" by a duration, "what dose"
# by a dose, "why" by a sentence that gives a reason, "where" by one that names a site.
ANSWER_SHAPES: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = tuple(
    (re.compile(asked, re.IGNORECASE), re.compile(given, re.IGNORECASE))
    for asked, given in (
        (r"\bhow\s+(?:often|common|frequent\w*|likely|rare)\b|\bincidence\b|\brates?\b|"
         r"\bpercent\w*|\bproportion\b|\bwhat\s+share\b|\bhow\s+many\s+(?:patients|cases|people)",
         r"\d\s*%|\b\d+\s+of\s+(?:the\s+)?\d+|\bodds\s+ratio\b"),
        (r"\bhow\s+(?:long|soon|late)\b|\bduration\b|\bhow\s+many\s+(?:months|weeks|days|years)\b|"
         r"\binterval\b|\b(?:longest|shortest|earliest|latest)\b|\bat\s+what\s+point\b|"
         r"\btime\s+(?:to|from|between|until)\b",
         r"\b\d+(?:\s*-\s*\d+)?\s*(?:days?|weeks?|months?|years?)\b|"
         r"\b(?:one|two|three|four|six|ten|twelve)\s+(?:days?|weeks?|months?|years?)\b"),
        (r"\bdos(?:e|es|ing)\b|\bhow\s+much\b",
         r"\bmg\b|\bdose\b|\bcc\b|\bmL\b|\bvolume\b"),
        (r"\bwhy\b|\brationale\b|\breasons?\b|\bhow\s+come\b|\bexplain\w*",
         r"\b(?:because|until|so\s+that|due\s+to|owing\s+to|as\s+a\s+result|reflects?|"
         r"explain\w*|rationale|reasons?|attributed|caused\s+by|leads?\s+to|results?\s+from)\b"),
        (r"\bwhere\b|\bwhich\s+(?:vessels?|arter\w*|part|parts|lobes?|site|sites|branch\w*)\b",
         r"\b(?:peripheral|central|lobar|segmental|subsegmental|main\s+pulmonary|pulmonary\s+trunk|"
         r"right\s+(?:atri\w*|ventric\w*)|vena\s+cava|lobes?|branch\w*|vessels?|venous\s+plexus)\b"),
    )
)
ANSWER_SHAPE_BONUS = 0.3
# Words that ask rather than tell: they must not make a claim look relevant ("how long" is not
# about a claim saying "long after").
QUESTION_WORDS_RE = re.compile(
    r"\bhow\s+(?:often|common|frequent(?:ly)?|long|many|much|soon|late|likely)\b", re.IGNORECASE
)
# Verbs that ask what a named source said: they pick no fact of it.
LITERATURE_VERBS_RE = re.compile(
    r"\b(?:recommend|say|said|says|find|found|report|suggest|advise|propose|conclude|think|"
    r"describe|state|identif|argue|write|wrote)\w*",
    re.IGNORECASE,
)
# A sentence that asks something (a vignette's other sentences only describe the patient).
ASKING_RE = re.compile(
    r"\?|\b(?:what|how|which|when|why|who|where|whether|any)\b", re.IGNORECASE
)
# A question about the literature ("the ED case", "in that series", "ever reported?"): its
# findings are a published patient's, not this patient's.
LITERATURE_RE = re.compile(
    r"\b(?:case|cases|report|reports|reported|study|studies|series|review|trial|cohort|"
    r"meta-analysis|published|literature|described|abstract|authors?)\b",
    re.IGNORECASE,
)
# A case claim that already says it is a case needs no introduction.
SAYS_CASE_RE = re.compile(r"^\W*(?:\w+\W+){0,6}?case\b", re.IGNORECASE)
# Words for the table inputs in the tier sentence (descriptions of the inputs, not advice).
INPUT_WORDS: Mapping[str, Mapping[str, str]] = {
    "symptomatic": {"yes": "with symptoms", "no": "without symptoms"},
    "location": {"central": "central emboli", "peripheral": "peripheral emboli"},
}
MISSING_WORDS: Mapping[str, str] = {
    "symptomatic": "whether the emboli cause symptoms",
    "location": "whether the most proximal emboli are central or peripheral",
    "hemodynamic_instability": "whether the patient is haemodynamically stable",
    "intracardiac_cement": "whether there is cement in the heart",
}
SNIPPET_CHARS = 300


@dataclass(frozen=True)
class Sentence:
    """One sentence of the narrative, with the ids it rests on (none for the tier sentence)."""

    text: str
    cites: tuple[str, ...]
    role: Role


@dataclass(frozen=True)
class Composition:
    text: str
    citations: tuple[Citation, ...]
    sentences: tuple[Sentence, ...] = ()
    cited: tuple[Passage, ...] = ()
    kinds: tuple[str, ...] = ()


@dataclass
class _Unit:
    """A candidate sentence: a claim, or one sentence of a user-supplied passage."""

    passage: Passage
    text: str
    priors: list[float] = field(default_factory=list)
    score: float = 0.0
    off_topic: bool = False  # on none of the topics the question's cues route it to
    other_source: bool = False  # the question names a source, and this is another one's

    @property
    def key(self) -> str:
        return self.passage.id if self.passage.kind == "claim" else f"{self.passage.id}|{self.text}"

    def prior(self) -> float:
        ordered = sorted(self.priors, reverse=True)
        return ordered[0] + EXTRA_ROLE_SHARE * sum(ordered[1:]) if ordered else 0.0


def tier_sentence(rec: Recommendation) -> str:
    """This patient's tier in one plain sentence, from the recommendation's data."""
    if rec.tier == "needs_information":
        asked = [MISSING_WORDS[m.finding] for m in rec.missing if m.finding in MISSING_WORDS]
        table = [MISSING_WORDS[n] for n in ("symptomatic", "location") if n in rec.inputs]
        if all(rec.inputs.get(n) == "unknown" for n in ("symptomatic", "location")):
            return (
                "Which tier of the decision table applies depends on "
                f"{_join(table or asked)}; it gives none until both are known."
            )
        return (
            "For this patient the decision table needs more information before it gives a "
            f"tier: {_join(asked or table)}."
        )
    described = [
        INPUT_WORDS[name][value]
        for name, value in rec.inputs.items()
        if name in INPUT_WORDS and value in INPUT_WORDS[name]
    ]
    who = f"For a patient {_join(described)}, t" if described else "T"
    text = f"{who}he decision table gives: {rec.label}"
    if rec.escalations:
        text += f", with the escalation for {_join([e.label for e in rec.escalations])}"
    return text + "."


def _join(parts: Sequence[str]) -> str:
    parts = list(dict.fromkeys(parts))
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


class Composer:
    def __init__(
        self,
        passages: Sequence[Passage],
        key_points: KeyPoints | None = None,
        topic_texts: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        names: Mapping[str, Sequence[str]] | None = None,
        conventions: Mapping[str, str] | None = None,
    ) -> None:
        self.by_id = {p.id: p for p in passages}
        # Built once, read by every question: each claim's words, and the claims of each topic
        # and of each source, in knowledge order.
        self.order = {p.id: i for i, p in enumerate(passages)}
        self.claim_terms: dict[str, frozenset[str]] = {
            p.id: frozenset(terms(p.text)) for p in passages if p.kind == "claim"
        }
        self.by_topic: dict[str, list[Passage]] = {}
        self.by_source: dict[str, list[Passage]] = {}
        for p in passages:
            self.by_source.setdefault(p.source_id, []).append(p)
            if p.kind == "claim":
                for topic in dict.fromkeys(p.topics):
                    self.by_topic.setdefault(topic, []).append(p)
        # Conventions of the rules table a kind of question is answered by (key_points
        # ``convention``): this tool's own definitions, shown first and labelled as such.
        self.conventions = {k: " ".join(v.split()) for k, v in (conventions or {}).items()}
        self.idf = Idf(p.text for p in passages)
        self.key_points = key_points
        self.labels = dict(labels or {})
        # Words that name a source (surname, year, alias): not evidence of relevance once the
        # question has named that source.
        self.name_terms = {
            sid: set(terms(" ".join(words))) for sid, words in (names or {}).items()
        }
        self.router = (
            Router(key_points, {p.id: p.text for p in passages}, topic_texts or {}, self.idf)
            if key_points is not None
            else None
        )
        self.cell_of: dict[str, set[str]] = {}
        for cell, ids in (key_points.cells if key_points is not None else {}).items():
            for claim_id in ids:
                self.cell_of.setdefault(claim_id, set()).add(cell)

    # -- routing -----------------------------------------------------------------------------

    def route(self, question: str, expanded: str | None = None) -> list[Route]:
        return self.router.route(question, expanded) if self.router is not None else []

    # -- candidates --------------------------------------------------------------------------

    def _candidates(
        self,
        retrieved: Sequence[Passage],
        rec: Recommendation | None,
        findings: Findings | None,
        routes: Sequence[Route],
        named: Sequence[str],
        *,
        cell_leads: bool,
    ) -> dict[str, _Unit]:
        units: dict[str, _Unit] = {}
        definite = rec is not None and rec.tier != "needs_information"

        def add(passage: Passage | None, prior: float) -> None:
            if passage is None:
                return
            texts = (
                [passage.text]
                if passage.kind == "claim"
                else [s for s in split_sentences(passage.text) if len(s.split()) >= 4][:6]
            )
            for text in texts:
                unit = _Unit(passage, text)
                units.setdefault(unit.key, unit).priors.append(prior)

        cells = self.key_points.cells if self.key_points is not None else {}
        if rec is not None:
            rule_cited = {c.passage_id for c in rec.citations}
            cell = list(cells.get(rec.rule_id, ()))
            ordered = sorted(cell, key=lambda c: c not in rule_cited)  # stable: cell order kept
            # For a patient the table cannot place yet, an overlay (instability, cement in the
            # heart) is what can be acted on: its evidence comes before the row's.
            waiting = rec.tier == "needs_information" and bool(rec.escalations)
            base = CELL_PRIOR if cell_leads and not waiting else GENERIC_CELL_PRIOR
            for i, claim_id in enumerate(ordered):
                bonus = RULE_CITED_BONUS if claim_id in rule_cited else 0.0
                add(self.by_id.get(claim_id), base + bonus - STEP * i)
            overlay = CELL_PRIOR if cell_leads and rec.tier == "needs_information" else (
                ESCALATION_PRIOR)
            for escalation in rec.escalations:
                for i, claim_id in enumerate(cells.get(escalation.id, ())):
                    add(self.by_id.get(claim_id), overlay - STEP * i)
        for r, route in enumerate(routes[:ROUTES_USED]):
            if definite and cell_leads and route.kind.id == "management":
                continue  # the patient's cell answers the management question
            base = PRIMARY_KIND_PRIOR if r == 0 else OTHER_KIND_PRIOR / r
            for i, claim_id in enumerate(route.kind.key_points):
                add(self.by_id.get(claim_id), base - STEP * i)
        for source_id in named:
            for i, passage in enumerate(self.by_source.get(source_id, ())):
                add(passage, NAMED_SOURCE_PRIOR - 0.01 * i)
        # Retrieval reads all of a vignette's words (CT, routine, day 2): for a patient whose
        # cell leads, it counts half.
        weight = RETRIEVAL_PRIOR * (VIGNETTE_RETRIEVAL_FACTOR if cell_leads else 1.0)
        for rank, passage in enumerate(retrieved):
            prior = weight / (1 + RETRIEVAL_DECAY * rank)
            add(self.by_id.get(passage.id, passage), prior)
        # Every claim on the topic the question is routed to is a candidate (cues only: a kind
        # found by word overlap alone is too weak a signal to promote every claim of its topics).
        for r, route in enumerate([r for r in routes if r.cues][: len(TOPIC_PRIOR)]):
            on_topic = {p.id: p for t in route.kind.topics for p in self.by_topic.get(t, ())}
            for passage in sorted(on_topic.values(), key=lambda p: self.order[p.id]):
                add(passage, TOPIC_PRIOR[r])
        # Off the question: a claim on none of the topics of the kinds the cues route it to
        # (the patient's cell and a named source's claims are never off the question).
        cued_topics = {t for r in routes if r.cues for t in r.kind.topics}
        cued_topics.discard("source-recommendations")  # a named source's kind: any topic
        keep = set(cells.get(rec.rule_id, ())) if rec is not None and cell_leads else set()
        keep |= {p.id for source_id in named for p in self.by_source.get(source_id, ())}
        if cued_topics:
            for unit in units.values():
                p = unit.passage
                if (p.kind == "claim" and p.id not in keep
                        and not cued_topics & set(p.topics)):
                    unit.priors[:] = [x * OFF_TOPIC_FACTOR for x in unit.priors]
                    unit.off_topic = True
        if named:
            cell_ids = set(cells.get(rec.rule_id, ())) if rec is not None else set()
            for unit in units.values():
                if unit.passage.source_id not in named and unit.passage.id not in cell_ids:
                    unit.priors[:] = [p * OTHER_SOURCE_FACTOR for p in unit.priors]
                    unit.other_source = True
        return units

    def _allowed(self, unit: _Unit, rec: Recommendation | None, findings: Findings | None) -> bool:
        p = unit.passage
        if findings is not None and p.population is not None and p.population.conflicts(findings):
            return False
        if rec is not None and p.population is not None and p.population.conflicts(
            _as_findings(rec.inputs)
        ):
            return False  # an input the table derived (instability counts as symptoms)
        if rec is not None and rec.tier != "needs_information" and p.id in self.cell_of:
            mine = {rec.rule_id, *(e.id for e in rec.escalations)}
            return bool(self.cell_of[p.id] & mine)  # another cell's evidence is not this patient's
        return True

    # -- selection ---------------------------------------------------------------------------

    def _select(
        self,
        query: set[str],
        units: Sequence[_Unit],
        *,
        limit: int,
        lexical_weight: float,
        wants_number: bool,
        named: Sequence[str],
        noted: set[str],
        shapes: Sequence[re.Pattern[str]] = (),
    ) -> list[_Unit]:
        """Best first, then maximal marginal relevance; no near-duplicates, at most PER_SOURCE
        sentences from a source the question does not name; a claim the disagreement note
        states may only lead. ``shapes``: what a sentence of the shape of answer asked for
        contains (a rate, a duration, a dose, a reason, a site)."""
        unit_terms = {
            u.key: self.claim_terms.get(u.key) or frozenset(terms(u.text)) for u in units
        }
        for u in units:
            lexical = lexical_weight * self.idf.coverage(query, unit_terms[u.key])
            if u.other_source:  # its words do not make another source's claim the answer
                lexical *= OTHER_SOURCE_FACTOR
            u.score = u.prior() + lexical
            if wants_number and NUMBER_RE.search(u.text):
                u.score += NUMBER_BONUS
            if any(given.search(u.text) for given in shapes):
                u.score += ANSWER_SHAPE_BONUS  # the very thing asked for
        pool = sorted(units, key=lambda u: (-u.score, u.key))
        chosen: list[_Unit] = []
        per_source: dict[str, int] = {}

        def mmr(u: _Unit) -> float:
            overlap = max(
                (jaccard(unit_terms[u.key], unit_terms[c.key]) for c in chosen), default=0.0
            )
            return MMR_LAMBDA * u.score - (1 - MMR_LAMBDA) * 2 * overlap

        while pool and len(chosen) < limit:
            unit = max(pool, key=mmr)
            pool.remove(unit)
            if any(
                jaccard(unit_terms[unit.key], unit_terms[c.key]) >= NEAR_DUPLICATE for c in chosen
            ):
                continue
            sid = unit.passage.source_id
            if sid not in named and per_source.get(sid, 0) >= PER_SOURCE:
                continue
            if chosen and unit.passage.id in noted:
                continue
            if len(chosen) >= MIN_CLAIMS and unit.off_topic:
                break  # beyond the minimum, no filler off the question
            if len(chosen) >= MIN_CLAIMS and unit.score < RELATIVE_FLOOR * chosen[0].score:
                break
            chosen.append(unit)
            per_source[sid] = per_source.get(sid, 0) + 1
        return chosen

    # -- wording -----------------------------------------------------------------------------

    def sentence_text(self, unit: _Unit) -> str:
        p = unit.passage
        text = unit.text.rstrip()
        if p.user_supplied:
            return f"A user-supplied document ({p.title}) says: {text}"
        if not p.case or SAYS_CASE_RE.match(text):
            return text
        label = self.labels.get(p.source_id, "")
        if p.via and p.via not in text:  # "the Tozzi 2002 patient" already names it
            label = f"{p.via}, in {label}" if label else p.via
        head = f"In a published case ({label}), " if label else "In a published case, "
        return head + _lower_first(text)

    # -- the narrative -----------------------------------------------------------------------

    def compose(
        self,
        question: str,
        retrieved: Sequence[Passage],
        topics: Sequence[Topic] = (),
        *,
        findings: Findings | None = None,
        recommendation: Recommendation | None = None,
        routes: Sequence[Route] | None = None,
        named: Sequence[str] = (),
        expanded: str | None = None,
    ) -> Composition:
        """``expanded``: the question with its abbreviations spelt out (for word matching)."""
        expanded = expanded or question
        routes = self.route(question, expanded) if routes is None else routes
        rec = recommendation
        stated = findings is not None and findings.has_clinical_finding()
        definite = rec is not None and rec.tier != "needs_information"
        asks = findings is not None and findings.asks_management
        # A question whose cues route it to a kind other than management, and that does not ask
        # what to do, is a knowledge question even when it mentions a finding ("typical
        # features of symptomatic PCE?"): the evidence leads, the tier follows.
        # The cues are read in the asking part only ("...; CT shows segmental emboli. Next
        # step?"): a vignette's findings mention CT or symptoms without asking about them.
        # Typed questions often go on in lower case ("...after kyphoplasty. do anything?").
        parts = re.split(r"(?<=[.!?;])\s+", question.strip())
        asking = " ".join(s for s in parts if ASKING_RE.search(s))
        if not asking and not definite and _search_style(question):
            asking = question.strip()  # "LMWH dose used for intracardiac cement"
        cued = [r.kind.id for r in routes if r.kind.cue_hits(asking)] if asking else []
        # A management word among the findings ("warfarin", "symptomatic") does not make "how
        # many months of warfarin?" a question about what to do: only a management cue in the
        # asking part does. A question that asks nothing of management, about a patient the
        # table cannot place yet, is a knowledge question.
        wants_action = "management" in cued
        knowledge_focus = (
            (bool(cued) and cued[0] != "management" and not (asks and wants_action))
            or (bool(asking) and not asks and not wants_action and not definite)
            or bool(named or LITERATURE_RE.search(asking))  # about a published case or a source
        )
        # About this patient: the tier leads (a definite tier always does). A management
        # question that states no finding at all, or a knowledge question that mentions one, is
        # answered by the evidence first; the table's sentence follows it.
        about_patient = rec is not None and (definite or (stated and not knowledge_focus))
        cell_leads = about_patient and not knowledge_focus
        notes = self.relevant_topics(topics, rec, routes)
        noted = {cid for t in notes for cid in t.section_ids}
        if cell_leads:  # only what the patient's question asks adds evidence to the cell's
            routes = [r for r in routes if not r.cues or r.kind.cue_hits(asking)]
        units = [
            u
            for u in self._candidates(
                retrieved, rec, findings, routes, named, cell_leads=cell_leads
            ).values()
            if self._allowed(u, rec, findings)
        ]
        if notes:
            limit = MAX_CLAIMS_WITH_NOTE
        else:
            limit = MAX_CLAIMS_WITH_TIER if rec is not None else MAX_CLAIMS
        asked = QUESTION_WORDS_RE.sub(" ", expanded)
        if named:  # the name picks the source; the rest of the question picks the fact
            asked = LITERATURE_VERBS_RE.sub(" ", asked)
        query = set(terms(asked))
        for source_id in named:
            query -= self.name_terms.get(source_id, set())
        chosen = self._select(
            query,
            units,
            limit=limit,
            lexical_weight=VIGNETTE_LEXICAL_WEIGHT if cell_leads else LEXICAL_WEIGHT,
            wants_number=bool(QUANTITY_RE.search(question)),
            named=named,
            noted=noted,
            shapes=[g for asked, g in ANSWER_SHAPES if asked.search(asking or question)],
        )
        sentences = [Sentence(self.sentence_text(u), (u.passage.id,), "claim") for u in chosen]
        convention = self._convention(routes, asking)
        if convention is not None:  # "what counts as central?": the tool's own definition
            sentences.insert(0, convention)
        if rec is not None:
            # About this patient, the tier is the answer; otherwise the evidence answers and
            # the table's need for findings closes the narrative.
            tier = Sentence(tier_sentence(rec), (), "tier")
            sentences.insert(0 if about_patient else len(sentences), tier)
        for topic in notes:
            note = re.sub(r"\s+", " ", topic.note).strip()
            sentences.append(Sentence(note, tuple(topic.section_ids), "note"))
        return self.render(sentences, kinds=tuple(r.kind.id for r in routes))

    def _convention(self, routes: Sequence[Route], asking: str) -> Sentence | None:
        """The convention of the first kind the question's asking part is cued to, if any."""
        for route in routes:
            if route.cues and (not asking or route.kind.cue_hits(asking)):
                text = self.conventions.get(route.kind.convention or "")
                return Sentence(text, (), "convention") if text else None
        return None

    def relevant_topics(
        self, topics: Sequence[Topic], rec: Recommendation | None, routes: Sequence[Route]
    ) -> list[Topic]:
        """A disagreement note only when the question is about the disputed topic: its cited
        claims share a topic with the kinds the question is routed to, and for a patient with a
        definite tier only the note about that very cell."""
        overlays = {e.id for e in rec.escalations} if rec is not None else set()
        if rec is not None and rec.tier != "needs_information":
            return [t for t in topics if t.id == rec.rule_id or t.id in overlays]
        wanted = {t for r in routes[:2] for t in r.kind.topics}
        relevant = []
        for topic in topics:
            if topic.id in overlays:  # the dispute about this patient's overlay
                relevant.append(topic)
                continue
            cited = {
                t for cid in topic.section_ids if cid in self.by_id for t in self.by_id[cid].topics
            }
            if cited & wanted:
                relevant.append(topic)
        return relevant

    def render(self, sentences: Sequence[Sentence], kinds: tuple[str, ...] = ()) -> Composition:
        """Markers [n] numbered by first use; ids that do not resolve are dropped, and a claim
        sentence whose claim does not resolve is left out."""
        numbers: dict[str, int] = {}
        used: dict[str, Passage] = {}
        snippets: dict[str, list[str]] = {}

        def marker(pid: str, snippet: str) -> str:
            passage = self.by_id.get(pid)
            if passage is None:
                return ""
            if pid not in numbers:
                numbers[pid] = len(numbers) + 1
                used[pid] = passage
            snippets.setdefault(pid, []).append(snippet)
            return f"[{numbers[pid]}]"

        def placeholder(m: re.Match[str]) -> str:
            pid = m.group(1)
            return marker(pid, self.by_id[pid].text) if pid in self.by_id else ""

        kept: list[Sentence] = []
        parts: list[str] = []
        paragraphs: list[str] = []
        for s in sentences:
            if s.role == "note":
                text = re.sub(r"\s+", " ", PLACEHOLDER_RE.sub(placeholder, s.text))
                paragraphs.append(re.sub(r"\s+([.,;])", r"\1", text).strip())
                kept.append(s)
                continue
            marks = " ".join(filter(None, (marker(pid, s.text) for pid in s.cites)))
            if s.role == "claim" and not marks:
                continue
            parts.append(f"{s.text} {marks}" if marks else s.text)
            kept.append(s)
        text = "\n\n".join(p for p in [" ".join(parts), *paragraphs] if p)
        citations = tuple(
            Citation(
                n=numbers[pid],
                source_id=p.source_id,
                title=p.title,
                year=p.year,
                doi=p.doi,
                pmid=p.pmid,
                url=p.url,
                passage_id=p.id,
                section=p.section,
                snippet=_snippet(p.text if p.kind == "claim" else " … ".join(snippets[pid])),
                evidence_type=p.evidence_type,
                locator=p.locator,
                via=p.via,
                user_supplied=p.user_supplied,
            )
            for pid, p in used.items()
        )
        return Composition(text, citations, tuple(kept), tuple(used.values()), kinds)

    def passages_by_id(self, ids: Sequence[str]) -> list[Passage]:
        return [self.by_id[i] for i in dict.fromkeys(ids) if i in self.by_id]


SEARCH_STYLE_WORDS = 15


def _search_style(text: str) -> bool:
    """A short query typed as into a search box: one phrase, no sentence-final punctuation
    ("typical signs of symptomatic PCE"); a vignette is sentences."""
    text = text.strip()
    return bool(text) and text[-1] not in ".!;" and len(text.split()) <= SEARCH_STYLE_WORDS \
        and not re.search(r"[.!?;]\s", text)


def _as_findings(inputs: Mapping[str, str]) -> Findings:
    """The table's evaluated inputs as findings ('unknown' stays unknown)."""
    flag = {"yes": True, "no": False}
    location = inputs.get("location")
    return Findings(
        symptomatic=flag.get(inputs.get("symptomatic", "")),
        location="central" if location == "central" else (
            "peripheral" if location == "peripheral" else None),
    )


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1].rstrip() + "…"


def _lower_first(text: str) -> str:
    """Lower-case the first word unless it is an acronym or a name (CT, PMMA, L2, Tozzi)."""
    first = text.split(" ", 1)[0]
    if len(first) > 1 and (first[1:].lower() != first[1:] or any(ch.isdigit() for ch in first)):
        return text
    return text[:1].lower() + text[1:]
