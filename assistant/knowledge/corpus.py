"""The corpus: curated knowledge plus user-supplied documents, as passages, with one fingerprint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from assistant.knowledge.passages import passages_from_sources
from assistant.knowledge.sources import KnowledgeBase, content_fingerprint, load_knowledge
from assistant.knowledge.userdocs import load_user_sources, user_dir, user_document_paths
from assistant.settings import Settings
from assistant.types import Passage, Source


@dataclass(frozen=True)
class Corpus:
    knowledge: KnowledgeBase
    user_sources: dict[str, Source]
    passages: list[Passage]
    fingerprint: str

    @property
    def sources(self) -> dict[str, Source]:
        return {**self.knowledge.sources, **self.user_sources}


def load_corpus(settings: Settings) -> Corpus:
    knowledge = load_knowledge(settings.knowledge_dir)
    user_sources = load_user_sources(settings.data_dir)
    user_paths = user_document_paths(settings.data_dir)
    user_fp = content_fingerprint(user_paths, user_dir(settings.data_dir)) if user_paths else ""
    passages = passages_from_sources(
        [*knowledge.sources.values(), *user_sources.values()],
        settings.chunk_size,
        settings.chunk_overlap,
    )
    # With no user documents the version is the curated knowledge's own fingerprint.
    fingerprint = (
        hashlib.sha256(f"{knowledge.fingerprint}|{user_fp}".encode()).hexdigest()[:12]
        if user_fp
        else knowledge.fingerprint
    )
    return Corpus(knowledge, user_sources, passages, fingerprint)
