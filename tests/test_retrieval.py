"""Passages, index and retriever specifics, with the hash fake and embedded Chroma.

What every retriever, embedder and index backend must do is in tests/test_contracts.py.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from assistant.errors import ConfigurationError
from assistant.knowledge.corpus import Corpus, load_corpus
from assistant.knowledge.passages import passages_from_sources
from assistant.retrieval.embeddings import WEIGHTS_FILE, HashEmbedder, sha256_of, verify_weights
from assistant.retrieval.index import IndexReport, VectorIndex, ensure_index, open_client
from assistant.retrieval.retrievers import (
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    make_retriever,
)
from assistant.settings import Settings
from assistant.types import Passage

FIXTURE_KNOWLEDGE = Path(__file__).parent / "fixtures" / "knowledge" / "valid"


def build(settings: Settings, embedder: HashEmbedder) -> tuple[Corpus, VectorIndex, IndexReport]:
    corpus = load_corpus(settings)
    index, report = ensure_index(settings, corpus.passages, embedder, corpus.fingerprint)
    return corpus, index, report


@pytest.fixture
def small_settings(tmp_path: Path) -> Settings:
    """A private, editable copy of the two-source fixture knowledge base."""
    knowledge = tmp_path / "knowledge"
    shutil.copytree(FIXTURE_KNOWLEDGE, knowledge)
    return Settings(knowledge_dir=knowledge, data_dir=tmp_path / "data")


# --- passages ------------------------------------------------------------------------------------


def test_passage_ids_are_section_ids_when_sections_fit_one_chunk(settings: Settings) -> None:
    corpus = load_corpus(settings)
    section_ids = [s.id for src in corpus.knowledge.sources.values() for s in src.sections]
    assert [p.id for p in corpus.passages] == section_ids
    assert [p.id for p in load_corpus(settings).passages] == section_ids


def test_long_sections_split_into_numbered_pieces_with_stable_ids(settings: Settings) -> None:
    sources = list(load_corpus(settings).knowledge.sources.values())
    passages = passages_from_sources(sources, chunk_size=200, chunk_overlap=50)
    again = passages_from_sources(sources, chunk_size=200, chunk_overlap=50)
    assert [(p.id, p.text) for p in passages] == [(p.id, p.text) for p in again]
    assert len({p.id for p in passages}) == len(passages)
    section = sources[0].sections[0]
    assert len(section.text) > 200
    pieces = [p for p in passages if p.section_id == section.id]
    assert [p.id for p in pieces] == [section.id] + [
        f"{section.id}~{n}" for n in range(2, len(pieces) + 1)
    ]
    assert all(len(p.text) <= 200 for p in pieces)
    assert all(p.source_id == sources[0].id and p.section == section.heading for p in pieces)


# --- index lifecycle -----------------------------------------------------------------------------


def test_rebuild_flag_rebuilds_an_up_to_date_index(
    small_settings: Settings, hash_embedder: HashEmbedder
) -> None:
    corpus, _, first = build(small_settings, hash_embedder)
    _, report = ensure_index(
        small_settings, corpus.passages, hash_embedder, corpus.fingerprint, rebuild=True
    )
    assert report.built and report.collection == first.collection


# --- retrievers ----------------------------------------------------------------------------------


def test_bm25_finds_the_passage_with_an_exact_rare_term(settings: Settings) -> None:
    hits = BM25Retriever(load_corpus(settings).passages).retrieve("fishhook", 5)
    assert hits[0].id == "wu-2024#case-summary"
    assert hits[0].ranks == {"bm25": 1} and hits[0].scores["bm25"] > 0


def test_bm25_returns_nothing_for_terms_absent_from_the_corpus(settings: Settings) -> None:
    assert BM25Retriever(load_corpus(settings).passages).retrieve("xylophone zeppelin", 5) == []


def _passage(pid: str) -> Passage:
    return Passage(
        id=pid, source_id=pid, section_id=pid, section="S", text=pid, title=pid,
        evidence_type="cohort",
    )


class FixedRetriever:
    """A retriever that returns a fixed ranking, to test fusion without any index."""

    def __init__(self, name: str, ids: list[str]) -> None:
        self.name = name
        self.ids = ids

    def retrieve(self, query: str, k: int) -> list[Passage]:
        return [
            _passage(pid).model_copy(update={"ranks": {self.name: r}, "scores": {self.name: 1 / r}})
            for r, pid in enumerate(self.ids[:k], start=1)
        ]


def test_rrf_ranks_a_passage_found_by_both_retrievers_above_single_hits() -> None:
    dense = FixedRetriever("dense", ["dense-only", "x", "both"])
    bm25 = FixedRetriever("bm25", ["bm25-only", "y", "both"])
    fused = HybridRetriever([dense, bm25], rrf_k=60).retrieve("q", 3)
    assert fused[0].id == "both"
    assert {p.id for p in fused[1:]} == {"dense-only", "bm25-only"}
    assert fused[0].ranks == {"dense": 3, "bm25": 3}
    assert fused[0].score == pytest.approx(2 / 63)
    assert fused[1].score == pytest.approx(1 / 61)


def test_rrf_ties_break_by_passage_id_so_order_is_deterministic() -> None:
    fused = HybridRetriever([FixedRetriever("dense", ["b"]), FixedRetriever("bm25", ["a"])])
    assert [p.id for p in fused.retrieve("q", 2)] == ["a", "b"]


def test_dense_retriever_drops_index_hits_missing_from_the_loaded_passages(
    small_settings: Settings, hash_embedder: HashEmbedder
) -> None:
    corpus, index, _ = build(small_settings, hash_embedder)
    known = corpus.passages[1:]
    dense = DenseRetriever(index, hash_embedder, known)
    hits = dense.retrieve(corpus.passages[0].text, 4)
    assert corpus.passages[0].id not in {p.id for p in hits}
    assert [p.ranks["dense"] for p in hits] == list(range(1, len(hits) + 1))


@pytest.mark.parametrize(
    ("mode", "kind", "rank_keys"),
    [
        ("dense", DenseRetriever, {"dense"}),
        ("bm25", BM25Retriever, {"bm25"}),
        ("hybrid", HybridRetriever, {"dense", "bm25"}),
    ],
)
def test_make_retriever_selects_each_mode(
    settings: Settings, hash_embedder: HashEmbedder, mode: str, kind: type, rank_keys: set[str]
) -> None:
    corpus, index, _ = build(settings, hash_embedder)
    retriever = make_retriever(mode, settings, corpus, index, hash_embedder)
    assert isinstance(retriever, kind) and retriever.name == mode
    hits = retriever.retrieve("cement leakage into the azygos vein", 5)
    assert len(hits) == 5
    assert set(hits[0].ranks) == rank_keys
    assert "venmans-2010#azygos-vein-leakage-as-a-risk-factor" in {p.id for p in hits}


def test_make_retriever_needs_the_index_for_dense_modes(
    small_settings: Settings, hash_embedder: HashEmbedder
) -> None:
    corpus = load_corpus(small_settings)
    assert make_retriever("bm25", small_settings, corpus, None, hash_embedder).name == "bm25"
    with pytest.raises(ConfigurationError, match="vector index"):
        make_retriever("hybrid", small_settings, corpus, None, hash_embedder)


# --- Chroma server configuration -----------------------------------------------------------------


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://127.0.0.1:8000", "http://"])
def test_malformed_chroma_url_raises_configuration_error(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigurationError, match="PCE_CHROMA_URL"):
        open_client(Settings(data_dir=tmp_path, chroma_url=url))


def test_unit_tests_cannot_open_non_loopback_connections_or_resolve_names() -> None:
    with pytest.raises(OSError, match="blocked"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with socket.socket() as sock, pytest.raises(OSError, match="blocked"):
        sock.connect(("192.0.2.1", 80))
    for host in ("huggingface.co", b"example.org", "192.0.2.1"):
        with pytest.raises(OSError, match="name resolution blocked"):
            socket.getaddrinfo(host, 443)
    assert socket.getaddrinfo("127.0.0.1", 80)  # loopback still works (local servers in tests)
    assert socket.getaddrinfo("localhost", 80)


# --- model weights -------------------------------------------------------------------------------


def test_weights_matching_the_expected_hash_pass_verification(tmp_path: Path) -> None:
    # Altered and missing weights are refused end to end in tests/test_faults.py.
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / WEIGHTS_FILE).write_bytes(b"weights")
    expected = sha256_of(model_dir / WEIGHTS_FILE)
    verify_weights(model_dir, expected)
    verify_weights(model_dir, expected.upper())

