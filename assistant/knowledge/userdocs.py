"""A user's own documents (.txt, .md, .pdf), loaded with LangChain loaders, tagged user-supplied.

Added files are copied into ``<data_dir>/user_sources/<hash>/`` so that every later index build
includes them and the index fingerprint covers them: a rebuild never drops what a user added.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

from assistant.errors import InputError
from assistant.knowledge.sources import HEADING_RE, slugify
from assistant.types import Section, Source

SUPPORTED = (".txt", ".md", ".pdf")


def user_dir(data_dir: Path) -> Path:
    return data_dir / "user_sources"


def _source_id(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    return f"user-{slugify(path.stem)[:40] or 'doc'}-{digest}"


def _read_pages(path: Path) -> list[tuple[str, str]]:
    """(heading, text) pairs: PDF pages, Markdown '##' sections, or the whole text file."""
    if path.suffix.lower() == ".pdf":
        from langchain_community.document_loaders import PyPDFLoader

        docs = PyPDFLoader(str(path)).load()
        return [(f"Page {i}", d.page_content) for i, d in enumerate(docs, start=1)]
    from langchain_community.document_loaders import TextLoader

    text = TextLoader(str(path), encoding="utf-8", autodetect_encoding=True).load()[0].page_content
    if path.suffix.lower() == ".md":
        heads = list(HEADING_RE.finditer(text))
        if heads:
            pairs = []
            lead = text[: heads[0].start()].strip()
            if lead:
                pairs.append(("Introduction", lead))
            for i, m in enumerate(heads):
                end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
                pairs.append((m.group(1).strip(), text[m.end() : end]))
            return pairs
    return [("Document", text)]


def load_user_document(path: Path) -> Source:
    if path.suffix.lower() not in SUPPORTED:
        raise InputError(
            f"{path}: unsupported file type '{path.suffix}'; use one of {', '.join(SUPPORTED)}",
            field="path",
        )
    if not path.is_file():
        raise InputError(f"{path}: no such file", field="path")
    source_id = _source_id(path)
    sections: list[Section] = []
    seen: set[str] = set()
    for heading, text in _read_pages(path):
        text = re.sub(r"[ \t]+\n", "\n", text).strip()
        if not text:
            continue
        section_id = f"{source_id}#{slugify(heading) or 'section'}"
        n = 2
        while section_id in seen:  # repeated headings in a user's file stay distinct
            section_id = f"{source_id}#{slugify(heading)}-{n}"
            n += 1
        seen.add(section_id)
        sections.append(Section(id=section_id, heading=heading, text=text))
    if not sections:
        raise InputError(f"{path}: no text could be extracted", field="path")
    return Source(
        id=source_id,
        title=path.stem,
        evidence_type="user-supplied",
        user_supplied=True,
        sections=tuple(sections),
    )


def add_user_documents(paths: list[Path], data_dir: Path) -> list[Source]:
    """Validate every file first, then copy them in: a bad file adds nothing."""
    sources = [load_user_document(p) for p in paths]
    for path, source in zip(paths, sources, strict=True):
        # '<hash>/<original name>' keeps the name (the title) and recomputes the same id later.
        folder = user_dir(data_dir) / source.id.rsplit("-", 1)[1]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / path.name)
    return sources


def user_document_paths(data_dir: Path) -> list[Path]:
    folder = user_dir(data_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*/*") if p.suffix.lower() in SUPPORTED)


def load_user_sources(data_dir: Path) -> dict[str, Source]:
    sources = (load_user_document(p) for p in user_document_paths(data_dir))
    return {s.id: s for s in sources}
