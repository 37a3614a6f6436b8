"""Retrieval units: one per claim of the curated knowledge; user documents split by section.

A claim is already one self-contained fact, so it is never split: its id is the claim id and it
carries its source's bibliographic data, locator, topics, population, case flag and ``via``.
User-supplied documents stay passage-level (a section, long sections split by LangChain).
"""

from __future__ import annotations

from collections.abc import Iterable

from langchain_text_splitters import RecursiveCharacterTextSplitter

from assistant.types import Claim, Passage, Source


def claim_passage(source: Source, claim: Claim) -> Passage:
    return Passage(
        id=claim.id,
        kind="claim",
        source_id=source.id,
        section_id=claim.id,
        section=claim.locator,
        text=claim.text,
        locator=claim.locator,
        topics=claim.topics,
        population=claim.population,
        case=claim.case,
        via=claim.via,
        authors=source.authors,
        title=source.title,
        year=source.year,
        doi=source.doi,
        pmid=source.pmid,
        url=source.url,
        evidence_type=source.evidence_type,
    )


def passages_from_sources(
    sources: Iterable[Source], chunk_size: int, chunk_overlap: int
) -> list[Passage]:
    """Claims first as they are; sections: the section id for the first piece,
    '<section id>~<n>' for later pieces (stable ids)."""
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_size, chunk_overlap=min(chunk_overlap, chunk_size // 2)
    )
    passages: list[Passage] = []
    for source in sources:
        passages += [claim_passage(source, claim) for claim in source.claims]
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
                        kind="section",
                        source_id=source.id,
                        section_id=section.id,
                        section=section.heading,
                        text=piece,
                        authors=source.authors,
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
