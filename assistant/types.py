"""Value objects: the typed chain Source -> Passage -> Citation -> Recommendation -> Answer.

Everything here is a frozen pydantic model with ``extra="forbid"``. The UI, HTTP API, CLI and the
evaluation read ``model_dump()`` of these objects and never parse prose.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from assistant.errors import InputError

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
    "systematic review",
    "meta-analysis",
    "cohort",
    "case series",
    "case report",
    "in-vitro",
    "narrative/secondary",
    "user-supplied",
]
Location = Literal["central", "peripheral"]
FindingName = Literal[
    "symptomatic", "location", "hemodynamic_instability", "intracardiac_cement", "procedure"
]
# Where a finding came from: free text of this question, a form/API field, an earlier turn, or a
# coded resource of the patient's record (an EHR's FHIR Observation or Procedure).
Origin = Literal["text", "explicit", "history", "ehr"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- what a clinician, a form, an API client or an EHR sends -------------------------------------

MAX_PROCEDURE_CHARS = 200
_YES = frozenset({"yes", "true"})
_NO = frozenset({"no", "false"})
_UNKNOWN = frozenset({"unknown", ""})


def _word(raw: object) -> str | None:
    """The value as one lower-case word; only ASCII is folded, as the JSON schema says."""
    if not isinstance(raw, str):
        return None
    word = raw.strip()
    return word.lower() if word.isascii() else word


def _yes_no(raw: object) -> bool | None:
    if raw is None or isinstance(raw, bool):
        return raw
    word = _word(raw)
    if word in _YES:
        return True
    if word in _NO:
        return False
    if word in _UNKNOWN:
        return None
    raise ValueError(f"must be one of: yes, no, unknown (or true, false, null) (got {raw!r})")


def _location(raw: object) -> str | None:
    if raw is None:
        return None
    word = _word(raw)
    if word in _UNKNOWN:
        return None
    if word in ("central", "peripheral"):
        return word
    raise ValueError(f"must be one of: central, peripheral, unknown (got {raw!r})")


def _procedure(raw: object) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ValueError(
            f"must be text such as 'vertebroplasty' or 'kyphoplasty', or null (got {raw!r})"
        )
    if len(raw) > MAX_PROCEDURE_CHARS:
        raise ValueError(f"must be at most {MAX_PROCEDURE_CHARS} characters (got {len(raw)})")
    text = raw.strip()
    return None if text.lower() in _UNKNOWN else text


def _spelled(*words: str) -> dict[str, str]:
    """A JSON-schema pattern for the words as the validators read them: any ASCII case, the
    empty string (= unknown), surrounding white space. So the schema accepts exactly what the
    validators accept, and a third-party tester finds no value one rejects and the other allows."""
    cased = "|".join("".join(f"[{c.upper()}{c.lower()}]" for c in word) for word in words)
    return {"type": "string", "pattern": rf"^\s*(?:{cased})?\s*$"}


YesNo = Annotated[
    bool | None,
    BeforeValidator(_yes_no),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "boolean"},
                {"type": "string", "enum": ["yes", "no", "unknown"]},
                _spelled("yes", "no", "true", "false", "unknown"),
                {"type": "null"},
            ]
        }
    ),
]
LocationInput = Annotated[
    Location | None,
    BeforeValidator(_location),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "enum": ["central", "peripheral", "unknown"]},
                _spelled("central", "peripheral", "unknown"),
                {"type": "null"},
            ]
        }
    ),
]
ProcedureInput = Annotated[
    str | None,
    BeforeValidator(_procedure),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "maxLength": MAX_PROCEDURE_CHARS}, {"type": "null"}]}
    ),
]


class ExplicitFindings(Frozen):
    """Findings stated as data (the UI's panel, the API, the CLI flags, an EHR, an eval case).

    They win over what the text says. ``unknown`` (or null) leaves a finding to the text. Every
    face validates findings with this one model.
    """

    symptomatic: YesNo = Field(default=None, description="Symptoms attributed to the emboli.")
    location: LocationInput = Field(
        default=None, description="Most proximal emboli: 'central' or 'peripheral'."
    )
    hemodynamic_instability: YesNo = None
    intracardiac_cement: YesNo = Field(default=None, description="Cement in the right heart.")
    procedure: ProcedureInput = Field(
        default=None, description="'vertebroplasty', 'kyphoplasty' or as written."
    )

    @model_validator(mode="before")
    @classmethod
    def _known_names(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for key in data:
                if key not in cls.model_fields:
                    names = ", ".join(sorted(cls.model_fields))
                    raise ValueError(f"findings.{key} is not a known finding; use one of: {names}")
        return data

    def stated(self) -> dict[str, Any]:
        """Only the findings that say something (not None)."""
        return self.model_dump(exclude_none=True)

    def is_empty(self) -> bool:
        return not self.stated()

    @classmethod
    def parse(cls, raw: object) -> ExplicitFindings:
        """Validate findings from Python callers; a bad value raises ``InputError`` naming it."""
        if isinstance(raw, ExplicitFindings):
            return raw
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise InputError(
                "findings must be a mapping of finding name to value, e.g. {'symptomatic': 'no'}",
                field="findings",
            )
        try:
            return cls.model_validate(dict(raw))
        except ValidationError as exc:
            raise input_error(exc, prefix="findings") from exc


def input_error(exc: ValidationError, prefix: str = "") -> InputError:
    """One InputError naming the first invalid field ('findings.symptomatic must be one of...')."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    message = str(err["msg"]).removeprefix("Value error, ")
    if message.startswith(f"{prefix}."):  # the message names the field itself
        return InputError(message, field=message.split()[0].split(".", 1)[-1])
    name = ".".join([prefix, *loc] if prefix else loc)
    return InputError(f"{name} {message}", field=loc[-1] if loc else prefix or "input")


class AskRequest(BaseModel):
    """A question as every face sends it: text, optional findings as data, earlier messages."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(description="The clinician's question, free text.")
    findings: ExplicitFindings | None = Field(
        default=None, description="Findings as data; they win over what the text says."
    )
    history: list[dict[str, Any] | str] | None = Field(
        default=None, description="Earlier messages ({role, content}) of this conversation."
    )
    user: str | None = Field(default=None, max_length=200, description="Who asks, for the audit.")


class Section(Frozen):
    """A section of a user-supplied document (curated knowledge is held as claims)."""

    id: str = Field(description="Stable section id: '<source id>#<heading slug>'.")
    heading: str
    text: str


YesNoValue = Literal["yes", "no"]


class Population(Frozen):
    """The group of patients a claim is about, in the decision table's terms (None: any)."""

    symptomatic: YesNoValue | None = None
    location: Location | None = None
    intracardiac_cement: YesNoValue | None = None
    hemodynamic_instability: YesNoValue | None = None

    def conflicts(self, findings: Findings) -> tuple[str, ...]:
        """The findings this population contradicts ('symptomatic', ...); unknowns never do."""
        clashes: list[str] = []
        for name, wanted in self.model_dump(exclude_none=True).items():
            have = getattr(findings, name)
            if have is None:
                continue
            value = have if isinstance(have, str) else ("yes" if have else "no")
            if value != wanted:
                clashes.append(name)
        return tuple(clashes)


class Claim(Frozen):
    """One fact from one source, in our own words: the unit that is indexed, retrieved, cited."""

    id: str = Field(description="Global id '<source id>#<claim id>'.")
    source_id: str
    text: str
    locator: str = Field(description="Where in the source it was read (abstract, table 1...).")
    topics: tuple[str, ...]
    facts: tuple[str, ...] = Field(default=(), description="Dossier fact ids (F1...).")
    population: Population | None = None
    case: bool = Field(default=False, description="One patient's story (a case fact).")
    via: str | None = Field(default=None, description="The study this source relays, if any.")
    compares: tuple[str, ...] = Field(default=(), description="Source ids it compares with.")


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
    read: str | None = Field(default=None, description="What of the source could be read.")
    user_supplied: bool = False
    claims: tuple[Claim, ...] = Field(default=(), description="Curated knowledge: its claims.")
    sections: tuple[Section, ...] = Field(default=(), description="User documents: sections.")


class Passage(Frozen):
    """One retrieval unit: a claim of the curated knowledge, or a piece of a user document."""

    id: str = Field(
        description="Claim id '<source id>#<claim id>'; for a user document '<section id>' or "
        "'<section id>~<n>' for later pieces."
    )
    kind: Literal["claim", "section"] = "section"
    source_id: str
    section_id: str = Field(description="The claim id, or the user document's section id.")
    section: str = Field(description="Where it was read: the claim's locator, or the heading.")
    text: str
    locator: str | None = None
    topics: tuple[str, ...] = ()
    population: Population | None = None
    case: bool = False
    via: str | None = None
    authors: tuple[str, ...] = ()
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
    passage_id: str = Field(description="The claim id (or a user document's passage id).")
    section: str = Field(description="Where it was read: the claim's locator, or the heading.")
    snippet: str = Field(description="The claim's text (or an excerpt of the passage).")
    evidence_type: EvidenceType
    locator: str | None = Field(default=None, description="Where in the source the claim is.")
    via: str | None = Field(default=None, description="The study the source relays, if any.")
    user_supplied: bool = False

    @property
    def identifier(self) -> str:
        """DOI, else PMID, else the URL with a note that no identifier is recorded."""
        if self.doi:
            return f"doi:{self.doi}"
        if self.pmid:
            return f"PMID {self.pmid}"
        return f"{self.url or self.source_id} (no DOI or PMID recorded)"


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
    resource: str | None = Field(
        default=None,
        description="The FHIR resource it was read from ('DiagnosticReport/ct-1'), if any; the "
        "offsets then refer to that resource's text.",
    )
    resource_date: str | None = Field(
        default=None, description="When that resource's content applies (ISO 8601), if known."
    )


class Conflict(Frozen):
    finding: FindingName
    evidence: tuple[Evidence, ...] = Field(description="The spans that disagree.")


# Evidence values that leave a finding open: the record mentions it without settling it (a hedged
# or a not-assessed heart: "possible cement in the right atrium", "heart not imaged"). They never
# set the finding; the rules table asks about it.
POSSIBLE = "possible"
NOT_ASSESSED = "not assessed"
OPEN_VALUES: tuple[str, ...] = (POSSIBLE, NOT_ASSESSED)


class Findings(Frozen):
    symptomatic: bool | None = None
    location: Location | None = None
    hemodynamic_instability: bool | None = None
    intracardiac_cement: bool | None = None
    procedure: str | None = None
    evidence: tuple[Evidence, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    overridden: tuple[Evidence, ...] = Field(
        default=(),
        description="Earlier statements a later one superseded (the latest stated state wins): "
        "shown with the basis, never used for the value.",
    )
    unclear_location: str | None = Field(
        default=None, description="A location term that maps to neither class (e.g. 'lobar')."
    )
    asks_management: bool = Field(
        default=False,
        description="The clinician asks what to do (manage, treat, next step...) in a sentence "
        "that asks; a pasted report's own 'Follow-up CT recommended' does not.",
    )

    def open_findings(self) -> tuple[FindingName, ...]:
        """Findings the record mentions without settling them (hedged or not assessed): no
        value, no conflict, and evidence with an open value ('possible', 'not assessed')."""
        conflicted = {c.finding for c in self.conflicts}
        return tuple(dict.fromkeys(
            e.finding for e in self.evidence
            if e.value in OPEN_VALUES and getattr(self, e.finding) is None
            and e.finding not in conflicted
        ))

    def has_clinical_finding(self) -> bool:
        # An open finding alone is not one: a hedge asserts nothing ('what was the patient with RV
        # cement sent home on?' asks about a published case). It is asked about on a card that
        # something else brings.
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


class Certainty(Frozen):
    """How certain the evidence behind a row or escalation is, and who judged it."""

    level: Literal["very low", "low", "moderate", "high"]
    basis: str = Field(min_length=1, description="Why this level (study designs, consistency).")
    appraisal: Literal["tool", "source"] = Field(
        description="'tool': this tool's appraisal; 'source': stated by the cited source."
    )


class DerivedInput(Frozen):
    """A table input the rules table filled in from other findings, and why (shown in the basis)."""

    id: str = Field(description="Id of the derivation in the rules table.")
    input: FindingName
    value: str = Field(description="The value it counts as ('yes').")
    because: str = Field(description="The conditions that held ('hemodynamic_instability = yes').")
    rationale: str
    citations: tuple[Citation, ...]
    evidence: tuple[Evidence, ...] = Field(
        default=(), description="The spans behind those conditions, relabelled for this input."
    )


class Escalation(Frozen):
    id: EscalationId
    label: str
    actions: tuple[str, ...]
    rationale: str
    citations: tuple[Citation, ...]
    certainty: Certainty | None = None


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
    certainty: Certainty | None = None
    missing: tuple[MissingFinding, ...] = ()
    inputs: dict[str, str] = Field(
        default_factory=dict, description="The table inputs as evaluated ('yes'/'no'/'unknown'...)."
    )
    trace: tuple[TraceStep, ...] = ()
    derived: tuple[DerivedInput, ...] = Field(
        default=(), description="Inputs filled in by the table's derivations (in the trace too)."
    )


class Versions(Frozen):
    app: str
    knowledge: str
    rules: str
    model: str
    index: str = ""
    llm: str = Field(default="", description="The re-phrasing chat model, if PCE_LLM is set.")
    settings: str = Field(
        default="", description="Fingerprint of the settings that change answers (top_k...)."
    )


class NarrativeSentence(Frozen):
    """A sentence of the extractive narrative and the claims it rests on."""

    text: str = Field(description="As composed, without its [n] markers.")
    role: Literal["tier", "claim", "note", "convention"] = Field(
        description="'tier': this patient's tier from the table; 'claim': one claim; "
        "'note': a 'sources disagree' note citing several claims; 'convention': a convention "
        "of this tool from the rules table (what central and peripheral mean), labelled as such."
    )
    cites: tuple[str, ...] = Field(default=(), description="Claim (passage) ids it cites.")


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
    sentences: tuple[NarrativeSentence, ...] = Field(
        default=(),
        description="The extractive narrative's sentences and their claims (before any LLM "
        "re-phrasing), so attribution can be checked structurally.",
    )
    disclaimer: str = ""
    versions: Versions
    latency_ms: float = 0.0
    notes: tuple[str, ...] = Field(
        default=(), description="Non-clinical notices (e.g. LLM fallback)."
    )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
