"""Retrieval behind one protocol: dense (Chroma), BM25 (bm25s), and their rank fusion."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from assistant.errors import ConfigurationError
from assistant.knowledge.corpus import Corpus
from assistant.retrieval.embeddings import Embedder
from assistant.retrieval.index import VectorIndex
from assistant.settings import Settings
from assistant.types import Passage


@runtime_checkable
class Retriever(Protocol):
    name: str

    def retrieve(self, query: str, k: int) -> list[Passage]: ...


def _tag(p: Passage, name: str, rank: int, score: float) -> Passage:
    return p.model_copy(update={"score": score, "ranks": {name: rank}, "scores": {name: score}})


class DenseRetriever:
    name = "dense"

    def __init__(self, index: VectorIndex, embedder: Embedder, passages: Sequence[Passage]) -> None:
        self.index = index
        self.embedder = embedder
        self.by_id = {p.id: p for p in passages}

    def retrieve(self, query: str, k: int) -> list[Passage]:
        hits = self.index.query(self.embedder.embed_query(query), k)
        # Ids the index has but the loaded knowledge lacks cannot be cited: drop them.
        found = [(self.by_id[i], s) for i, s in hits if i in self.by_id]
        return [_tag(p, self.name, r, s) for r, (p, s) in enumerate(found, start=1)]


class BM25Retriever:
    name = "bm25"

    def __init__(self, passages: Sequence[Passage]) -> None:
        import bm25s
        from bm25s.tokenization import Tokenizer

        # bm25s sets its own logger to DEBUG on import; keep its chatter out of our output.
        logging.getLogger("bm25s").setLevel(logging.WARNING)

        self.passages = list(passages)
        self.tokenizer = Tokenizer(stopwords="en")
        # Title and section heading are part of what a passage is about.
        texts = [f"{p.title}. {p.section}. {p.text}" for p in self.passages]
        ids = self.tokenizer.tokenize(texts, return_as="ids", show_progress=False)
        self.model = bm25s.BM25()
        self.model.index(ids, show_progress=False)

    def retrieve(self, query: str, k: int) -> list[Passage]:
        if not self.passages:
            return []
        tokens = self.tokenizer.tokenize(
            [query], update_vocab=False, return_as="ids", show_progress=False
        )
        # n_threads=0 scores in-line; any other value starts a thread pool on every query.
        docs, scores = self.model.retrieve(
            tokens, k=min(k, len(self.passages)), show_progress=False, n_threads=0
        )
        hits = [(int(d), float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]
        return [_tag(self.passages[d], self.name, r, s) for r, (d, s) in enumerate(hits, start=1)]


class HybridRetriever:
    """Weighted reciprocal rank fusion: score = sum of weight / (rrf_k + rank) per retriever."""

    name = "hybrid"

    def __init__(
        self,
        retrievers: Sequence[Retriever],
        rrf_k: int = 60,
        candidates: int = 20,
        weights: Mapping[str, float] | None = None,
    ):
        self.retrievers = list(retrievers)
        self.rrf_k = rrf_k
        self.candidates = candidates
        self.weights = dict(weights or {})

    def retrieve(self, query: str, k: int) -> list[Passage]:
        fused: dict[str, float] = {}
        ranks: dict[str, dict[str, int]] = {}
        scores: dict[str, dict[str, float]] = {}
        first: dict[str, Passage] = {}
        for retriever in self.retrievers:
            for p in retriever.retrieve(query, max(k, self.candidates)):
                rank = p.ranks[retriever.name]
                weight = self.weights.get(retriever.name, 1.0)
                fused[p.id] = fused.get(p.id, 0.0) + weight / (self.rrf_k + rank)
                ranks.setdefault(p.id, {})[retriever.name] = rank
                scores.setdefault(p.id, {})[retriever.name] = p.scores[retriever.name]
                first.setdefault(p.id, p)
        order = sorted(fused, key=lambda pid: (-fused[pid], pid))[:k]
        return [
            first[pid].model_copy(
                update={"score": fused[pid], "ranks": ranks[pid], "scores": scores[pid]}
            )
            for pid in order
        ]


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
