"""The corpus: curated knowledge plus user-supplied documents, as passages, with one fingerprint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from assistant.embeddings import Embedder
from assistant.errors import ConfigurationError
from assistant.index import VectorIndex
from assistant.knowledge import KnowledgeBase, content_fingerprint, load_knowledge
from assistant.passages import passages_from_sources
from assistant.retrieval import BM25Retriever, DenseRetriever, HybridRetriever, Retriever
from assistant.settings import Settings
from assistant.types import Passage, Source
from assistant.userdocs import load_user_sources, user_dir, user_document_paths


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


def make_retriever(
    mode: str,
    settings: Settings,
    corpus: Corpus,
    index: VectorIndex | None,
    embedder: Embedder,
    bm25: BM25Retriever | None = None,
) -> Retriever:
    if mode not in ("hybrid", "dense", "bm25"):
        raise ConfigurationError(f"unknown retriever mode '{mode}'; use hybrid, dense or bm25")
    bm25 = bm25 if bm25 is not None else BM25Retriever(corpus.passages)
    if mode == "bm25":
        return bm25
    if index is None:
        raise ConfigurationError("dense and hybrid retrieval need the vector index")
    dense = DenseRetriever(index, embedder, corpus.passages)
    if mode == "dense":
        return dense
    return HybridRetriever(
        [dense, bm25],
        rrf_k=settings.rrf_k,
        candidates=settings.candidates,
        weights={"dense": settings.dense_weight},
    )
