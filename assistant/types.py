"""Value objects: the typed chain Source -> Passage -> Citation -> Recommendation -> Answer.

Everything here is a frozen pydantic model with ``extra="forbid"``. The UI, HTTP API, CLI and the
evaluation read ``model_dump()`` of these objects and never parse prose.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Tier = Literal["surveillance", "anticoagulation", "surgical_embolectomy", "needs_information"]
TIERS: tuple[Tier, ...] = (
    "surveillance",
    "anticoagulation",
    "surgical_embolectomy",
    "needs_information",
)
EscalationId = Literal["hemodynamic_instability", "intracardiac_cement"]
ESCALATIONS: tuple[EscalationId, ...] = ("hemodynamic_instability", "intracardiac_cement")
EvidenceType = Literal[
    "systematic review", "cohort", "case report", "in-vitro", "narrative/secondary", "user-supplied"
]
Location = Literal["central", "peripheral"]
FindingName = Literal[
    "symptomatic", "location", "hemodynamic_instability", "intracardiac_cement", "procedure"
]
# Where a finding came from: free text of this question, a form/API field, or an earlier turn.
Origin = Literal["text", "explicit", "history"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Section(Frozen):
    id: str = Field(description="Stable section id: '<source id>#<heading slug>'.")
    heading: str
    text: str


class Source(Frozen):
    id: str = Field(description="Reviewed, stable source id (kebab-case).")
    title: str
    authors: tuple[str, ...] = ()
    journal: str | None = None
    year: int | None = None
    doi: str | None = None
    pmid: str | None = None
    evidence_type: EvidenceType
    url: str | None = None
    facts: tuple[str, ...] = Field(default=(), description="Dossier fact ids this source draws on.")
    user_supplied: bool = False
    sections: tuple[Section, ...] = ()


class Passage(Frozen):
    """One retrieval unit: a section, or a piece of a long section."""

    id: str = Field(description="'<section id>' or '<section id>~<n>' for later pieces.")
    source_id: str
    section_id: str
    section: str = Field(description="Section heading.")
    text: str
    title: str
    year: int | None = None
    doi: str | None = None
    pmid: str | None = None
    url: str | None = None
    evidence_type: EvidenceType
    user_supplied: bool = False
    score: float = Field(default=0.0, description="Score of the retriever that returned it.")
    ranks: dict[str, int] = Field(
        default_factory=dict, description="1-based rank per underlying retriever (dense, bm25)."
    )
    scores: dict[str, float] = Field(
        default_factory=dict, description="Raw score per underlying retriever (cosine, BM25)."
    )


class Citation(Frozen):
    n: int = Field(default=0, description="Marker number in the narrative ([n]); 0 if unnumbered.")
    source_id: str
    title: str
    year: int | None = None
    doi: str | None = None
    pmid: str | None = None
    url: str | None = None
    passage_id: str
    section: str
    snippet: str
    evidence_type: EvidenceType


class Evidence(Frozen):
    """Why a finding has its value: the span and where it came from."""

    finding: FindingName
    value: str = Field(
        description="The value this evidence supports, as a string ('yes', 'central')."
    )
    text: str = Field(description="The span as written, or the form field for explicit values.")
    origin: Origin
    start: int | None = Field(
        default=None, description="Character offset in the text it came from."
    )
    end: int | None = None
    turn: int | None = Field(default=None, description="Index of the earlier user turn, if any.")
    negated: bool = False


class Conflict(Frozen):
    finding: FindingName
    evidence: tuple[Evidence, ...] = Field(description="The spans that disagree.")


class Findings(Frozen):
    symptomatic: bool | None = None
    location: Location | None = None
    hemodynamic_instability: bool | None = None
    intracardiac_cement: bool | None = None
    procedure: str | None = None
    evidence: tuple[Evidence, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    unclear_location: str | None = Field(
        default=None, description="A location term that maps to neither class (e.g. 'lobar')."
    )
    asks_management: bool = Field(
        default=False, description="The question asks what to do (manage, treat, next step...)."
    )

    def has_clinical_finding(self) -> bool:
        return any(
            v is not None
            for v in (
                self.symptomatic,
                self.location,
                self.hemodynamic_instability,
                self.intracardiac_cement,
            )
        ) or bool(self.conflicts or self.unclear_location)


class MissingFinding(Frozen):
    finding: FindingName
    question: str = Field(description="What to ask the clinician.")
    outcomes: dict[str, str] = Field(description="Each possible answer -> what it would lead to.")


class TraceStep(Frozen):
    rule_id: str
    condition: str
    matched: bool


class Escalation(Frozen):
    id: EscalationId
    label: str
    actions: tuple[str, ...]
    rationale: str
    citations: tuple[Citation, ...]


class Recommendation(Frozen):
    tier: Tier
    label: str
    rule_id: str
    rules_version: str
    actions: tuple[str, ...]
    rationale: str
    caveats: tuple[str, ...] = ()
    escalations: tuple[Escalation, ...] = ()
    citations: tuple[Citation, ...] = ()
    missing: tuple[MissingFinding, ...] = ()
    inputs: dict[str, str] = Field(
        default_factory=dict, description="The table inputs as evaluated ('yes'/'no'/'unknown'...)."
    )
    trace: tuple[TraceStep, ...] = ()


class Versions(Frozen):
    app: str
    knowledge: str
    rules: str
    model: str
    index: str = ""
    llm: str = Field(default="", description="The re-phrasing chat model, if PCE_LLM is set.")


class Answer(Frozen):
    id: str = Field(
        default_factory=lambda: uuid.uuid4().hex, description="For feedback and the audit trail."
    )
    question: str
    in_scope: bool
    text: str
    citations: tuple[Citation, ...] = ()
    recommendation: Recommendation | None = None
    findings: Findings = Findings()
    follow_up_questions: tuple[str, ...] = ()
    passages: tuple[Passage, ...] = Field(
        default=(), description="What retrieval returned, ranked."
    )
    disclaimer: str = ""
    versions: Versions
    latency_ms: float = 0.0
    notes: tuple[str, ...] = Field(
        default=(), description="Non-clinical notices (e.g. LLM fallback)."
    )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
