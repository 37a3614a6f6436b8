"""Passages, index and retriever specifics, with the hash fake and embedded Chroma.

What every retriever, embedder and index backend must do is in tests/test_contracts.py.
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from assistant.errors import ConfigurationError, IndexUnavailableError
from assistant.knowledge.corpus import Corpus, load_corpus
from assistant.knowledge.passages import passages_from_sources
from assistant.retrieval import index as index_module
from assistant.retrieval.embeddings import (
    WEIGHTS_FILE,
    HashEmbedder,
    sha256_of,
    verify_weights,
)
from assistant.retrieval.index import (
    IndexReport,
    Registry,
    VectorIndex,
    ensure_index,
    open_client,
)
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


def collection_names(settings: Settings) -> list[str]:
    """The passage collections (the registry, ``pce.registry``, is not one)."""
    collections = open_client(settings).list_collections()
    names = (c if isinstance(c, str) else c.name for c in collections)
    return sorted(n for n in names if n.startswith("pce-"))


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


def test_the_build_switches_the_active_pointer_to_the_complete_collection(
    small_settings: Settings, hash_embedder: HashEmbedder
) -> None:
    _, index, report = build(small_settings, hash_embedder)
    registry = Registry(index.client, "pce", create=False)
    active = registry.active()
    assert active is not None and active.collection == report.collection
    assert registry.pointer(index.fingerprint) == active
    meta = index.client.get_collection(report.collection).metadata
    assert meta["complete"] is True and meta["fingerprint"] == index.fingerprint


def test_rebuild_flag_builds_beside_the_active_one_then_switches_and_removes_it(
    small_settings: Settings, hash_embedder: HashEmbedder
) -> None:
    corpus, index, first = build(small_settings, hash_embedder)
    _, report = ensure_index(
        small_settings, corpus.passages, hash_embedder, corpus.fingerprint, rebuild=True
    )
    assert report.built and report.collection.startswith(f"{first.collection}-")
    assert report.removed_stale == [first.collection]
    assert collection_names(small_settings) == [report.collection]
    # A reader that had the old collection open follows the pointer to the new one.
    assert index.query(hash_embedder.embed_query(corpus.passages[0].text), 1)[0][0] == (
        corpus.passages[0].id
    )
    assert index.name == report.collection


def _edit(settings: Settings, text: str) -> None:
    path = settings.knowledge_dir / "sources" / "alpha-2020.md"
    path.write_text(path.read_text(encoding="utf-8") + f"\n{text}\n", encoding="utf-8")


def test_changed_knowledge_keeps_the_previous_version_and_removes_older_ones(
    small_settings: Settings, hash_embedder: HashEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_module, "SWITCH_GRACE_S", 0.0)
    _, _, v1 = build(small_settings, hash_embedder)
    _edit(small_settings, "An added sentence.")
    _, _, v2 = build(small_settings, hash_embedder)
    # A worker of the previous version may still be running: its collection stays.
    assert v2.built and v2.collection != v1.collection and v2.removed_stale == []
    assert collection_names(small_settings) == sorted([v1.collection, v2.collection])
    _edit(small_settings, "Another added sentence.")
    _, index, v3 = build(small_settings, hash_embedder)
    assert v3.removed_stale == [v1.collection]
    assert collection_names(small_settings) == sorted([v2.collection, v3.collection])
    fingerprints = {p.fingerprint for p in Registry(index.client, "pce", create=False).pointers()}
    assert len(fingerprints) == 2 and index.fingerprint in fingerprints


def test_another_versions_collection_finished_moments_ago_is_not_removed(
    small_settings: Settings, hash_embedder: HashEmbedder
) -> None:
    # Its writer may be between "complete" and the switch: only an old one is garbage.
    _, _, v1 = build(small_settings, hash_embedder)
    _edit(small_settings, "An added sentence.")
    build(small_settings, hash_embedder)
    _edit(small_settings, "Another added sentence.")
    _, _, v3 = build(small_settings, hash_embedder)
    assert v3.removed_stale == []
    assert v1.collection in collection_names(small_settings)


def test_an_abandoned_build_is_removed_and_a_live_one_is_left_alone(
    small_settings: Settings, hash_embedder: HashEmbedder
) -> None:
    _, index, report = build(small_settings, hash_embedder)
    client = index.client
    old = time.time() - 2 * index_module.STALE_BUILD_S
    for name, heartbeat in (("pce-deadbeef00000000", old), ("pce-0123456789abcdef", time.time())):
        client.create_collection(
            name, embedding_function=None, metadata={"complete": False, "heartbeat": heartbeat}
        )
    _, again = ensure_index(
        small_settings, load_corpus(small_settings).passages, hash_embedder,
        load_corpus(small_settings).fingerprint,
    )
    assert again.removed_stale == ["pce-deadbeef00000000"]
    assert collection_names(small_settings) == sorted([report.collection, "pce-0123456789abcdef"])


def test_a_legacy_complete_collection_is_adopted_without_rebuilding(
    small_settings: Settings, hash_embedder: HashEmbedder
) -> None:
    _, index, first = build(small_settings, hash_embedder)
    index.client.delete_collection("pce.registry")  # as built before the registry existed
    _, _, again = build(small_settings, hash_embedder)
    assert not again.built and again.collection == first.collection
    assert Registry(open_client(small_settings), "pce", create=False).active() is not None


class FlakyClient:
    """A Chroma client whose first ``failures`` calls of ``method`` fail like a network blip."""

    def __init__(self, client: Any, method: str, failures: int) -> None:
        self._client = client
        self._method = method
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name != self._method:
            return attr

        def flaky(*args: Any, **kwargs: Any) -> Any:
            if self.failures > 0:
                self.failures -= 1
                raise httpx.ConnectError("connection refused (simulated)")
            return attr(*args, **kwargs)

        return flaky


def test_a_transient_error_is_retried_and_never_deletes_the_index(
    small_settings: Settings, hash_embedder: HashEmbedder
) -> None:
    corpus, index, first = build(small_settings, hash_embedder)
    before = index.client.get_collection(first.collection).id
    flaky = FlakyClient(open_client(small_settings), "get_collection", failures=2)
    _, again = ensure_index(
        small_settings, corpus.passages, hash_embedder, corpus.fingerprint, client=flaky
    )
    assert flaky.failures == 0, "the blip happened"
    assert not again.built and again.removed_stale == []
    assert open_client(small_settings).get_collection(first.collection).id == before


def test_a_lasting_outage_raises_index_unavailable_and_deletes_nothing(
    small_settings: Settings, hash_embedder: HashEmbedder
) -> None:
    corpus, _, first = build(small_settings, hash_embedder)
    down = FlakyClient(open_client(small_settings), "get_collection", failures=10**6)
    with pytest.raises(IndexUnavailableError, match="ConnectError"):
        ensure_index(small_settings, corpus.passages, hash_embedder, corpus.fingerprint,
                     client=down)
    assert collection_names(small_settings) == [first.collection]


def test_query_with_no_active_collection_is_unavailable_and_names_the_command(
    settings: Settings,
) -> None:
    index = VectorIndex(lambda: open_client(settings), "pce", "0000", str(settings.chroma_path))
    with pytest.raises(IndexUnavailableError, match="pce-assistant index"):
        index.query([0.0] * 8, 3)


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

