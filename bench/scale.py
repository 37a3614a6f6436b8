"""Retrieval at 1k / 10k / 100k synthetic passages: BM25, Chroma embedded and a Chroma server.

Each size runs in a fresh interpreter (``python -m bench.scale --child N``) so its resident memory
is its own. Passages are synthetic text (Zipf-distributed words, ~100 per passage, like a real
1,200-character section) with random unit vectors of dimension 384 as precomputed embeddings;
queries are 6 words with a random unit vector. The product classes do the work: BM25Retriever,
VectorIndex + DenseRetriever over a Chroma collection, and HybridRetriever fusing the two.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    PYTHON,
    REPO_ROOT,
    VENV_BIN,
    apply_env,
    bench_env,
    free_port,
    peak_rss_mb,
    rss_mb,
    stop,
    summary_ms,
    time_calls,
    wait_http,
)

DIM = 384
WORDS_PER_PASSAGE = 100
VOCABULARY = 30_000
QUERY_WORDS = 6
TOP_K = 5
CANDIDATES = 20


class SyntheticEmbedder:
    """Returns the precomputed vector of each benchmark query (the model is not what we time)."""

    name = "synthetic-384"

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def embed_query(self, text: str) -> list[float]:
        return self.vectors[text]

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vectors[t] for t in texts]


def _corpus(n: int, queries: int, seed: int) -> tuple[list[Any], Any, list[str], Any]:
    import numpy as np

    from assistant.types import Passage

    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(3, 11, size=VOCABULARY)
    vocab = ["".join(rng.choice(letters, size=k)) for k in lengths]
    weights = 1.0 / np.arange(1, VOCABULARY + 1) ** 1.07  # Zipf-like word frequencies
    weights /= weights.sum()
    words = rng.choice(VOCABULARY, size=(n, WORDS_PER_PASSAGE), p=weights)
    passages = [
        Passage(
            id=f"syn-{i // 4}#s{i % 4}",
            source_id=f"syn-{i // 4}",
            section_id=f"syn-{i // 4}#s{i % 4}",
            section=f"Section {i % 4}",
            text=" ".join(vocab[w] for w in row) + ".",
            title=f"Synthetic source {i // 4}",
            evidence_type="cohort",
        )
        for i, row in enumerate(words)
    ]
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    # Queries mix common and rarer words, as clinical questions do.
    query_words = rng.choice(VOCABULARY // 10, size=(queries, QUERY_WORDS))
    query_texts = [" ".join(vocab[w] for w in row) for row in query_words]
    query_vectors = rng.standard_normal((queries, DIM)).astype(np.float32)
    query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)
    return passages, vectors, query_texts, query_vectors


def _fill(client: Any, name: str, passages: Sequence[Any], vectors: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    collection = client.create_collection(
        name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
    )
    batch = min(5000, int(client.get_max_batch_size()))
    for i in range(0, len(passages), batch):
        chunk = passages[i : i + batch]
        collection.add(
            ids=[p.id for p in chunk],
            documents=[p.text for p in chunk],
            embeddings=vectors[i : i + batch],
        )
    return collection, time.perf_counter() - start


def _query_stats(
    index: Any, bm25: Any, texts: list[str], embedder: SyntheticEmbedder, passages: Sequence[Any]
) -> dict[str, Any]:
    from assistant.retrieval.retrievers import DenseRetriever, HybridRetriever

    dense = DenseRetriever(index, embedder, passages)
    hybrid = HybridRetriever([dense, bm25], rrf_k=60, candidates=CANDIDATES)
    cycle = iter(texts * 3)
    for text in texts[:5]:  # warm caches and connections
        hybrid.retrieve(text, TOP_K)
    dense_s = time_calls(lambda: index.query(embedder.embed_query(next(cycle)), CANDIDATES),
                         len(texts))
    cycle = iter(texts * 3)
    hybrid_s = time_calls(lambda: hybrid.retrieve(next(cycle), TOP_K), len(texts))
    return {"dense_query": summary_ms(dense_s), "hybrid_retrieve": summary_ms(hybrid_s)}


def child(n: int, queries: int, server: bool, seed: int = 7) -> dict[str, Any]:
    apply_env()
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from assistant.retrieval.index import VectorIndex
    from assistant.retrieval.retrievers import BM25Retriever

    result: dict[str, Any] = {"passages": n, "queries": queries}
    start = time.perf_counter()
    passages, vectors, texts, qvectors = _corpus(n, queries, seed)
    result["generate_s"] = round(time.perf_counter() - start, 2)
    embedder = SyntheticEmbedder({t: list(map(float, v)) for t, v in zip(texts, qvectors,
                                                                           strict=True)})
    base = rss_mb()

    start = time.perf_counter()
    bm25 = BM25Retriever(passages)
    result["bm25_build_s"] = round(time.perf_counter() - start, 3)
    result["bm25_rss_mb"] = round(rss_mb() - base, 1)
    cycle = iter(texts * 3)
    result["bm25_query"] = summary_ms(
        time_calls(lambda: bm25.retrieve(next(cycle), CANDIDATES), len(texts))
    )

    with tempfile.TemporaryDirectory(prefix="pce-bench-scale-") as tmp:
        settings = ChromaSettings(anonymized_telemetry=False)
        before = rss_mb()
        client = chromadb.PersistentClient(path=str(Path(tmp) / "embedded"), settings=settings)
        collection, build_s = _fill(client, "bench", passages, vectors)
        index = VectorIndex(lambda: client, "bench", "bench", "embedded", client=client)
        index._collection = collection
        result["embedded"] = {
            "build_s": round(build_s, 2),
            "rss_mb": round(rss_mb() - before, 1),
            **_query_stats(index, bm25, texts, embedder, passages),
        }
        del collection, index  # the client goes with the lambda that holds it

        if server:
            result["server"] = _server_run(Path(tmp) / "server", passages, vectors, texts,
                                           embedder, bm25)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return result


def _server_run(
    path: Path,
    passages: Sequence[Any],
    vectors: Any,
    texts: list[str],
    embedder: SyntheticEmbedder,
    bm25: Any,
) -> dict[str, Any]:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from assistant.retrieval.index import VectorIndex

    port = free_port()
    path.mkdir(parents=True)
    log = (path / "chroma.log").open("wb")
    process = subprocess.Popen(
        [str(VENV_BIN / "chroma"), "run", "--path", str(path), "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=bench_env(NO_COLOR="1"),
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", process, timeout=60)
        idle = rss_mb(process.pid)
        client = chromadb.HttpClient(
            host="127.0.0.1", port=port, settings=ChromaSettings(anonymized_telemetry=False)
        )
        collection, build_s = _fill(client, "bench", passages, vectors)
        index = VectorIndex(lambda: client, "bench", "bench", f"http://127.0.0.1:{port}",
                            client=client)
        index._collection = collection
        stats = _query_stats(index, bm25, texts, embedder, passages)
        return {
            "build_s": round(build_s, 2),
            "server_rss_mb": round(rss_mb(process.pid), 1),
            "server_rss_growth_mb": round(rss_mb(process.pid) - idle, 1),
            **stats,
        }
    finally:
        stop(process)
        log.close()


def run(sizes: Sequence[int], queries: int, server_sizes: Sequence[int],
        timeout: float) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        args = ["--child", str(n), "--queries", str(queries)]
        if n in server_sizes:
            args.append("--server")
        print(f"  scale: {n:,} passages{' (+ Chroma server)' if n in server_sizes else ''} ...",
              flush=True)
        proc = subprocess.run(
            [PYTHON, "-m", "bench.scale", *args], cwd=REPO_ROOT, env=bench_env(),
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"scale child {n} failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", type=int, required=True, help="number of passages")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--server", action="store_true", help="also against a Chroma server")
    args = parser.parse_args()
    print(json.dumps(child(args.child, args.queries, args.server)))


if __name__ == "__main__":
    main()
