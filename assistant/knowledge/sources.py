"""Load and validate the curated knowledge base (``knowledge/sources/*.md``).

Each source is Markdown with YAML front matter; its body is ``##`` sections, each a retrieval
passage. Any malformed file fails loading with its path, line and field named (through
``assistant.data``), so a broken knowledge base never reaches a clinician.

What other data files cite is the id index ``KnowledgeBase.citations`` (id -> Citation). The
claim files that will replace the Markdown (``knowledge/sources/*.yaml``) plug in here: a pydantic
model per file read with ``assistant.data.load_model(path, Model, error=KnowledgeError)``, and
their '<source id>#<claim id>' ids in the same index; the rules table needs no change.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from assistant.data import load_front_matter
from assistant.errors import KnowledgeError
from assistant.types import Citation, EvidenceType, Section, Source

DOI_RE = re.compile(r"^10\.\d{4,9}/\S+$")
PMID_RE = re.compile(r"^\d{1,9}$")
ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
HEADING_RE = re.compile(r"^##\s+(.+?)\s*$", re.MULTILINE)
SNIPPET_CHARS = 240


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class SourceMeta(BaseModel):
    """The front matter of a source file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Kebab-case, unique; by convention the file name.")
    title: str = Field(min_length=1)
    authors: list[str] = Field(description="'Surname Initials'; empty when not confirmed.")
    journal: str = Field(min_length=1)
    year: int = Field(ge=1900, le=2100)
    doi: str | None = None
    pmid: str | None = None
    evidence_type: EvidenceType
    url: str = Field(pattern=r"^https://(doi\.org|pubmed\.ncbi\.nlm\.nih\.gov)/")
    facts: list[str] = Field(default_factory=list, description="Dossier fact ids (F1...).")

    @field_validator("id")
    @classmethod
    def _id_format(cls, value: str) -> str:
        if not ID_RE.match(value):
            raise ValueError(f"'{value}' is not lowercase kebab-case")
        return value

    @field_validator("doi")
    @classmethod
    def _doi_format(cls, value: str | None) -> str | None:
        if value is not None and not DOI_RE.match(value):
            raise ValueError(f"'{value}' is not a DOI like 10.1234/abc (no 'doi:' or URL)")
        return value

    @field_validator("pmid", mode="before")
    @classmethod
    def _pmid_format(cls, value: Any) -> str | None:
        if value is None:
            return None
        text = str(value)
        if not PMID_RE.match(text):
            raise ValueError(f"'{text}' is not a PMID (digits only)")
        return text

    @model_validator(mode="after")
    def _needs_identifier(self) -> SourceMeta:
        if not self.doi and not self.pmid:
            raise ValueError("a source needs a doi or a pmid so a clinician can check it")
        return self


@dataclass(frozen=True)
class KnowledgeBase:
    directory: Path
    sources: dict[str, Source]
    fingerprint: str
    user_sources: dict[str, Source] = field(default_factory=dict)

    @property
    def all_sources(self) -> dict[str, Source]:
        return {**self.sources, **self.user_sources}

    @property
    def citations(self) -> dict[str, Citation]:
        """The id index the rules table and other data files cite against (curated only)."""
        return citation_index(self.sources)

    def section(self, section_id: str) -> tuple[Source, Section] | None:
        source_id = section_id.split("#", 1)[0]
        source = self.all_sources.get(source_id)
        if source is None:
            return None
        for section in source.sections:
            if section.id == section_id:
                return source, section
        return None


def parse_sections(
    path: Path, source_id: str, body: str, first_line: int = 1
) -> tuple[Section, ...]:
    """The '## ' sections of a body that starts at ``first_line`` of the file."""

    def fail(field: str, problem: str, offset: int) -> KnowledgeError:
        return KnowledgeError(path, field, problem, line=first_line + body.count("\n", 0, offset))

    headings = list(HEADING_RE.finditer(body))
    if not headings:
        raise fail("sections", "the body needs at least one '## ' section", 0)
    if body[: headings[0].start()].strip():
        raise fail("sections", "text before the first '## ' heading", 0)
    sections: list[Section] = []
    seen: set[str] = set()
    for i, match in enumerate(headings):
        end = headings[i + 1].start() if i + 1 < len(headings) else len(body)
        heading = match.group(1).strip()
        text = body[match.end() : end].strip()
        where = f"section '{heading}'"
        if not text:
            raise fail(where, "is empty", match.start())
        if text.lstrip().startswith("#"):
            raise fail(where, "only '##' headings are allowed", match.start())
        section_id = f"{source_id}#{slugify(heading)}"
        if section_id in seen:
            raise fail(where, "duplicate heading in this file", match.start())
        seen.add(section_id)
        sections.append(Section(id=section_id, heading=heading, text=text))
    return tuple(sections)


def load_source(path: Path) -> Source:
    meta, body, body_line = load_front_matter(path, SourceMeta, error=KnowledgeError)
    return Source(
        id=meta.id,
        title=meta.title,
        authors=tuple(meta.authors),
        journal=meta.journal,
        year=meta.year,
        doi=meta.doi,
        pmid=meta.pmid,
        evidence_type=meta.evidence_type,
        url=meta.url,
        facts=tuple(meta.facts),
        sections=parse_sections(path, meta.id, body, body_line),
    )


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= SNIPPET_CHARS:
        return text
    cut = text.rfind(" ", 0, SNIPPET_CHARS)
    return text[: cut if cut > 0 else SNIPPET_CHARS].rstrip(" ,;:") + "…"


def citation_index(sources: Mapping[str, Source]) -> dict[str, Citation]:
    """Every citable id ('<source id>#<section slug>') -> its citation, for data files to cite.

    The rules table resolves its citations against this mapping and never reads sources itself,
    so a knowledge base of claims ('<source id>#<claim id>') only has to provide its own index.
    """
    index: dict[str, Citation] = {}
    for source in sources.values():
        for section in source.sections:
            index[section.id] = Citation(
                source_id=source.id,
                title=source.title,
                year=source.year,
                doi=source.doi,
                pmid=source.pmid,
                url=source.url,
                passage_id=section.id,
                section=section.heading,
                snippet=_snippet(section.text),
                evidence_type=source.evidence_type,
            )
    return index


def content_fingerprint(paths: Iterable[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def load_knowledge(directory: Path) -> KnowledgeBase:
    """Load every ``sources/*.md`` in ``directory``; raise KnowledgeError on the first bad one."""
    source_dir = directory / "sources"
    if not source_dir.is_dir():
        raise KnowledgeError(source_dir, "directory", "not found; set PCE_KNOWLEDGE_DIR")
    paths = sorted(source_dir.glob("*.md"))
    if not paths:
        raise KnowledgeError(source_dir, "directory", "contains no .md source files")
    sources: dict[str, Source] = {}
    files: dict[str, Path] = {}
    for path in paths:
        source = load_source(path)
        if source.id in sources:
            text = path.read_text(encoding="utf-8")
            line = 1 + text.count("\n", 0, max(text.find("\nid:") + 1, 0))
            raise KnowledgeError(path, "id", f"duplicate id '{source.id}' (also in "
                                 f"{files[source.id].name})", line=line)
        files[source.id] = path
        sources[source.id] = source
    return KnowledgeBase(
        directory=directory, sources=sources, fingerprint=content_fingerprint(paths, directory)
    )
