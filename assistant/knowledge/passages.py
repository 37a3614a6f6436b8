"""Split sources into retrieval passages: one per section, long sections split by LangChain."""

from __future__ import annotations

from collections.abc import Iterable

from langchain_text_splitters import RecursiveCharacterTextSplitter

from assistant.types import Passage, Source


def passages_from_sources(
    sources: Iterable[Source], chunk_size: int, chunk_overlap: int
) -> list[Passage]:
    """Stable ids: the section id for the first piece, '<section id>~<n>' for later pieces."""
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_size, chunk_overlap=min(chunk_overlap, chunk_size // 2)
    )
    passages: list[Passage] = []
    for source in sources:
        for section in source.sections:
            pieces = (
                [section.text]
                if len(section.text) <= chunk_size
                else splitter.split_text(section.text)
            )
            for i, piece in enumerate(pieces, start=1):
                passages.append(
                    Passage(
                        id=section.id if i == 1 else f"{section.id}~{i}",
                        source_id=source.id,
                        section_id=section.id,
                        section=section.heading,
                        text=piece,
                        title=source.title,
                        year=source.year,
                        doi=source.doi,
                        pmid=source.pmid,
                        url=source.url,
                        evidence_type=source.evidence_type,
                        user_supplied=source.user_supplied,
                    )
                )
    return passages
