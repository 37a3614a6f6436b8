"""Build and open the Chroma collection of passage embeddings (embedded or a Chroma server).

The collection name carries a fingerprint of model + chunking + knowledge content, so a change to
any of them makes the old collection stale: it is detected and rebuilt, never silently used.
A collection is marked complete only after every passage is in, so a half-built index is redone.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from assistant.errors import ConfigurationError, IndexError_, IndexUnavailableError
from assistant.retrieval.embeddings import Embedder
from assistant.settings import Settings
from assistant.types import Passage

log = logging.getLogger(__name__)
BATCH = 64


def index_fingerprint(
    embedder_name: str, sha256: str, chunk_size: int, chunk_overlap: int, content: str
) -> str:
    blob = "|".join([embedder_name, sha256, str(chunk_size), str(chunk_overlap), content])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def open_client(settings: Settings) -> Any:
    """An embedded PersistentClient, or an HttpClient when PCE_CHROMA_URL is set. No telemetry."""
    os.environ["ANONYMIZED_TELEMETRY"] = "False"
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigurationError(
                f"PCE_CHROMA_URL '{settings.chroma_url}' is not a URL like http://127.0.0.1:8000"
            )
        try:
            client = chromadb.HttpClient(
                host=url.hostname,
                port=url.port or (443 if url.scheme == "https" else 80),
                ssl=url.scheme == "https",
                settings=chroma_settings,
            )
            client.heartbeat()
        except Exception as exc:
            raise IndexUnavailableError(
                f"Cannot reach the Chroma server at {settings.chroma_url}: {exc}. Start it "
                "(chroma run --path DIR --host 127.0.0.1 --port N) or unset PCE_CHROMA_URL."
            ) from exc
        return client
    try:  # a file where the index directory should be is as corrupt as a bad database
        settings.chroma_path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.chroma_path), settings=chroma_settings)
    except Exception as exc:
        raise IndexError_(
            f"Cannot open the index at {settings.chroma_path}: {exc}. It may be corrupt: remove "
            "that directory and run 'pce-assistant index'."
        ) from exc


def _metadata(p: Passage) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "source_id": p.source_id,
        "section_id": p.section_id,
        "section": p.section,
        "title": p.title,
        "evidence_type": p.evidence_type,
        "user_supplied": p.user_supplied,
    }
    for key in ("year", "doi", "pmid", "url"):
        value = getattr(p, key)
        if value is not None:  # Chroma metadata cannot hold None
            meta[key] = value
    return meta


@dataclass
class IndexReport:
    collection: str
    passages: int
    sources: int
    built: bool
    seconds: float
    removed_stale: list[str] = field(default_factory=list)
    where: str = ""

    def summary(self) -> str:
        verb = "Built" if self.built else "Up to date:"
        text = (
            f"{verb} collection '{self.collection}' ({self.where}): {self.passages} passages from "
            f"{self.sources} sources"
        )
        if self.built:
            text += f" in {self.seconds:.1f} s"
        if self.removed_stale:
            text += f"; removed {len(self.removed_stale)} stale: {', '.join(self.removed_stale)}"
        return text + "."


class VectorIndex:
    """One fingerprinted collection; dense queries return (passage id, cosine similarity)."""

    def __init__(self, client: Any, name: str, prefix: str, where: str) -> None:
        self.client = client
        self.name = name
        self.prefix = prefix
        self.where = where
        self._collection: Any = None

    def _get(self) -> Any:
        if self._collection is None:
            from chromadb.errors import NotFoundError

            try:
                self._collection = self.client.get_collection(self.name, embedding_function=None)
            except NotFoundError as exc:
                raise IndexError_(
                    f"Index collection '{self.name}' is missing ({self.where}); run "
                    "'pce-assistant index'."
                ) from exc
        return self._collection

    def is_complete(self, expected: int) -> bool:
        try:
            collection = self.client.get_collection(self.name, embedding_function=None)
        except Exception:
            return False
        meta = collection.metadata or {}
        return bool(meta.get("complete")) and collection.count() == expected

    def stale_collections(self) -> list[str]:
        names = [c if isinstance(c, str) else c.name for c in self.client.list_collections()]
        return sorted(n for n in names if n.startswith(f"{self.prefix}-") and n != self.name)

    def build(
        self, passages: Sequence[Passage], embedder: Embedder, *, progress: bool = False
    ) -> list[str]:
        """(Re)create the collection from scratch; returns the stale collections removed."""
        removed = self.stale_collections()
        for name in [*removed, self.name]:
            # A missing collection is fine: we are about to create it.
            with contextlib.suppress(Exception):
                self.client.delete_collection(name)
        collection = self.client.create_collection(
            self.name,
            embedding_function=None,
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"complete": False},
        )
        batches = range(0, len(passages), BATCH)
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc="Embedding passages", unit="batch")
        for start in batches:
            chunk = passages[start : start + BATCH]
            collection.add(
                ids=[p.id for p in chunk],
                documents=[p.text for p in chunk],
                metadatas=[_metadata(p) for p in chunk],
                embeddings=embedder.embed_documents([p.text for p in chunk]),
            )
        collection.modify(metadata={"complete": True, "passages": len(passages)})
        self._collection = collection
        return removed

    def query(self, vector: Sequence[float], k: int) -> list[tuple[str, float]]:
        try:
            result = self._get().query(
                query_embeddings=[list(vector)], n_results=k, include=["distances"]
            )
        except IndexError_:
            raise
        except Exception as exc:
            self._collection = None  # reconnect on the next call (e.g. after a server restart)
            raise IndexUnavailableError(f"Dense search failed ({self.where}): {exc}") from exc
        ids = result["ids"][0]
        distances = result["distances"][0]
        return [(i, 1.0 - float(d)) for i, d in zip(ids, distances, strict=True)]


def ensure_index(
    settings: Settings,
    passages: Sequence[Passage],
    embedder: Embedder,
    content_fingerprint: str,
    *,
    rebuild: bool = False,
    progress: bool = False,
    client: Any = None,
) -> tuple[VectorIndex, IndexReport]:
    """Open the current collection, building it if missing, stale, incomplete or asked to."""
    start = time.perf_counter()
    fingerprint = index_fingerprint(
        embedder.name,
        settings.embedding_sha256,
        settings.chunk_size,
        settings.chunk_overlap,
        content_fingerprint,
    )
    name = f"{settings.collection_prefix}-{fingerprint}"
    where = settings.chroma_url or str(settings.chroma_path)
    index = VectorIndex(client or open_client(settings), name, settings.collection_prefix, where)
    built = False
    removed: list[str] = []
    if rebuild or not index.is_complete(len(passages)):
        log.info("Building index collection %s (%d passages)", name, len(passages))
        removed = index.build(passages, embedder, progress=progress)
        built = True
    report = IndexReport(
        collection=name,
        passages=len(passages),
        sources=len({p.source_id for p in passages}),
        built=built,
        seconds=time.perf_counter() - start,
        removed_stale=removed,
        where=where,
    )
    return index, report
