"""Load and validate the curated knowledge base: one YAML file of claims per source.

``knowledge/sources/<source id>.yaml`` holds a source's bibliographic data and its **claims**
(one fact each, in our own words; see /work/notes/claims-format.md and DESIGN §3a). Around them:
``topics.yaml`` (the controlled vocabulary), ``key_points.yaml`` (question kinds and the claims a
reviewer puts first) and ``coverage.yaml`` (dossier facts kept out, with the reason). Everything is
checked when it is loaded; the first problem raises ``KnowledgeError`` naming the file, the claim
and what is wrong, so a broken knowledge base never reaches a clinician.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from assistant.errors import KnowledgeError
from assistant.knowledge.claimcheck import Names, attribution_problems, text_problems
from assistant.knowledge.coverage import Coverage, load_coverage
from assistant.knowledge.keypoints import KeyPoints, load_key_points
from assistant.knowledge.validate import validate
from assistant.types import Citation, Claim, Population, Source

DOI_RE = re.compile(r"^10\.\d{4,9}/\S+$")
PMID_RE = re.compile(r"^\d{1,9}$")
ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
FACT_RE = r"^F[1-9]\d*$"
HEADING_RE = re.compile(r"^##\s+(.+?)\s*$", re.MULTILINE)  # user Markdown documents
SNIPPET_CHARS = 300

KebabId = Annotated[str, StringConstraints(pattern=ID_RE.pattern)]
Text = Annotated[str, BeforeValidator(lambda v: " ".join(v.split()) if isinstance(v, str) else v)]
CuratedEvidence = Literal[
    "systematic review", "meta-analysis", "cohort", "case series", "case report", "in-vitro",
    "narrative/secondary",
]


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClaimEntry(_Strict):
    """One claim as written in a source file."""

    id: KebabId = Field(description="Unique in its file; the global id is '<source>#<id>'.")
    text: Text = Field(min_length=1)
    locator: Text = Field(min_length=1, description="abstract, table 1, case description ...")
    topics: list[KebabId] = Field(min_length=1)
    facts: list[Annotated[str, StringConstraints(pattern=FACT_RE)]]
    population: Population | None = None
    case: bool
    via: Text | None = Field(default=None, min_length=1)
    compares: list[KebabId] = Field(default_factory=list)

    @field_validator("compares", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return [] if value is None else value


class SourceFile(_Strict):
    """A source file: bibliographic data and claims. At least a URL; DOI/PMID when known."""

    id: KebabId
    title: Text = Field(min_length=1)
    authors: list[str] = Field(description="'Surname Initials'; empty when not confirmed.")
    journal: Text = Field(description="Empty when the dossier does not show it.")
    year: int | None = Field(ge=1900, le=2100, description="null when the dossier gives none.")
    doi: str | None = None
    pmid: str | None = None
    evidence_type: CuratedEvidence
    url: str = Field(pattern=r"^https?://\S+$")
    read: Text = Field(min_length=1, description="What of the source could be read.")
    claims: list[ClaimEntry] = Field(min_length=1)

    @field_validator("doi")
    @classmethod
    def _doi_format(cls, value: str | None) -> str | None:
        if value is not None and not DOI_RE.match(value):
            raise ValueError(f"'{value}' is not a DOI like 10.1234/abc (no 'doi:' or URL)")
        return value

    @field_validator("pmid", mode="before")
    @classmethod
    def _pmid_format(cls, value: object) -> str | None:
        if value is None:
            return None
        text = str(value)
        if not PMID_RE.match(text):
            raise ValueError(f"'{text}' is not a PMID (digits only)")
        return text


class Topic(_Strict):
    id: KebabId
    label: str = Field(min_length=1)
    description: str = Field(min_length=1)


class TopicsFile(_Strict):
    topics: list[Topic] = Field(min_length=1)


@dataclass(frozen=True)
class KnowledgeBase:
    directory: Path
    sources: dict[str, Source]
    fingerprint: str
    claims: dict[str, Claim] = field(default_factory=dict)
    topics: dict[str, Topic] = field(default_factory=dict)
    key_points: KeyPoints | None = None
    coverage: Coverage | None = None

    def claim(self, claim_id: str) -> Claim | None:
        return self.claims.get(claim_id)

    @property
    def citations(self) -> dict[str, Citation]:
        """Claim id -> its Citation (the rules table and key points resolve ids through it)."""
        return {cid: citation_for(self.sources[c.source_id], c) for cid, c in self.claims.items()}


def citation_for(source: Source, claim: Claim, n: int = 0) -> Citation:
    return Citation(
        n=n,
        source_id=source.id,
        title=source.title,
        year=source.year,
        doi=source.doi,
        pmid=source.pmid,
        url=source.url,
        passage_id=claim.id,
        section=claim.locator,
        snippet=_snippet(claim.text),
        evidence_type=source.evidence_type,
        locator=claim.locator,
        via=claim.via,
    )


def _snippet(text: str) -> str:
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1].rstrip() + "…"


def _claim_error(path: Path, claim_id: str, problem: str) -> KnowledgeError:
    return KnowledgeError(path, f"claims[{claim_id}]", problem)


def load_source(path: Path, topics: Iterable[str] | None = None) -> Source:
    """One source file, its claims checked on their own (the cross-source checks come later)."""
    entry = validate(path, SourceFile)
    if entry.id != path.stem:
        raise KnowledgeError(path, "id", f"'{entry.id}' must equal the file name '{path.stem}'")
    known_topics = set(topics) if topics is not None else None
    claims: list[Claim] = []
    seen: set[str] = set()
    for c in entry.claims:
        if c.id in seen:
            raise _claim_error(path, c.id, "duplicate claim id in this file")
        seen.add(c.id)
        problems = text_problems(c.text)
        if known_topics is not None:
            problems += [
                f"unknown topic '{t}' (not in topics.yaml)" for t in c.topics
                if t not in known_topics
            ]
        if entry.id in c.compares:
            problems.append("compares the source with itself")
        if problems:
            raise _claim_error(path, c.id, problems[0])
        claims.append(
            Claim(
                id=f"{entry.id}#{c.id}",
                source_id=entry.id,
                text=c.text,
                locator=c.locator,
                topics=tuple(c.topics),
                facts=tuple(c.facts),
                population=c.population,
                case=c.case,
                via=c.via,
                compares=tuple(c.compares),
            )
        )
    return Source(
        id=entry.id,
        title=entry.title,
        authors=tuple(entry.authors),
        journal=entry.journal or None,
        year=entry.year,
        doi=entry.doi,
        pmid=entry.pmid,
        evidence_type=entry.evidence_type,
        url=entry.url,
        read=entry.read,
        facts=tuple(dict.fromkeys(f for c in claims for f in c.facts)),
        claims=tuple(claims),
    )


def content_fingerprint(paths: Iterable[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def load_topics(path: Path) -> dict[str, Topic]:
    topics: dict[str, Topic] = {}
    for topic in validate(path, TopicsFile).topics:
        if topic.id in topics:
            raise KnowledgeError(path, f"topics[{topic.id!r}]", "duplicate topic id")
        topics[topic.id] = topic
    return topics


def load_knowledge(directory: Path) -> KnowledgeBase:
    """Load ``sources/*.yaml`` and the files around them; raise KnowledgeError on the first
    problem, naming the file and the claim."""
    source_dir = directory / "sources"
    if not source_dir.is_dir():
        raise KnowledgeError(source_dir, "directory", "not found; set PCE_KNOWLEDGE_DIR")
    paths = sorted(source_dir.glob("*.yaml"))
    if not paths:
        raise KnowledgeError(source_dir, "directory", "contains no .yaml source files")
    leftovers = sorted(source_dir.glob("*.md"))
    if leftovers:
        raise KnowledgeError(
            leftovers[0], "file", "Markdown sources are no longer read; write it as claims (.yaml)"
        )
    topics_path = directory / "topics.yaml"
    topics = load_topics(topics_path) if topics_path.is_file() else None
    sources: dict[str, Source] = {}
    for path in paths:
        source = load_source(path, topics)
        if source.id in sources:
            raise KnowledgeError(path, "id", f"duplicate id '{source.id}' (also in another file)")
        sources[source.id] = source
    names = Names.of(sources.values())
    claims: dict[str, Claim] = {}
    for source in sources.values():
        for claim in source.claims:
            problems = attribution_problems(claim, source, names)
            if problems:
                path = source_dir / f"{source.id}.yaml"
                raise _claim_error(path, claim.id.split("#", 1)[1], problems[0])
            claims[claim.id] = claim
    extra = [
        p for p in (topics_path, directory / "key_points.yaml", directory / "coverage.yaml")
        if p.is_file()
    ]
    key_points = (
        load_key_points(directory / "key_points.yaml", claims, topics)
        if (directory / "key_points.yaml").is_file()
        else None
    )
    coverage = (
        load_coverage(directory / "coverage.yaml", claims)
        if (directory / "coverage.yaml").is_file()
        else None
    )
    return KnowledgeBase(
        directory=directory,
        sources=sources,
        fingerprint=content_fingerprint([*paths, *extra], directory),
        claims=claims,
        topics=topics or {},
        key_points=key_points,
        coverage=coverage,
    )
