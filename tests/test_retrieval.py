"""Passages, the fingerprinted index and the retrievers, with the hash fake and embedded Chroma."""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

import pytest

from assistant.errors import (
    ConfigurationError,
    IndexError_,
    IndexUnavailableError,
    ModelError,
)
from assistant.knowledge.corpus import Corpus, load_corpus
from assistant.knowledge.passages import passages_from_sources
from assistant.retrieval.embeddings import (
    WEIGHTS_FILE,
    HashEmbedder,
    SentenceTransformerEmbedder,
    sha256_of,
    verify_weights,
)
from assistant.retrieval.index import IndexReport, VectorIndex, ensure_index, open_client
from assistant.retrieval.retrievers import (
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    make_retriever,
)
from assistant.settings import DEFAULT_MODEL_SHA256, Settings
from assistant.types import Passage, Section, Source

FIXTURE_KNOWLEDGE = Path(__file__).parent / "fixtures" / "knowledge" / "valid"


def build(settings: Settings, embedder: HashEmbedder) -> tuple[Corpus, VectorIndex, IndexReport]:
    corpus = load_corpus(settings)
    index, report = ensure_index(settings, corpus.passages, embedder, corpus.fingerprint)
    return corpus, index, report


def collection_names(settings: Settings) -> list[str]:
    collections = open_client(settings).list_collections()
    return sorted(c if isinstance(c, str) else c.name for c in collections)


@pytest.fixture
def small_settings(tmp_path: Path) -> Settings:
    """A private, editable copy of the two-source fixture knowledge base."""
    knowledge = tmp_path / "knowledge"
    shutil.copytree(FIXTURE_KNOWLEDGE, knowledge)
    return Settings(knowledge_dir=knowledge, data_dir=tmp_path / "data")


# --- passages ------------------------------------------------------------------------------------


def test_curated_passages_are_the_claims_with_their_ids_and_metadata(settings: Settings) -> None:
    corpus = load_corpus(settings)
    claim_ids = [c.id for src in corpus.knowledge.sources.values() for c in src.claims]
    assert [p.id for p in corpus.passages] == claim_ids
    assert [p.id for p in load_corpus(settings).passages] == claim_ids
    passage = next(p for p in corpus.passages if p.id == "wang-2012#tozzi-case-embolectomy")
    claim = corpus.knowledge.claims[passage.id]
    assert passage.kind == "claim" and passage.text == claim.text
    assert passage.locator == claim.locator == passage.section
    assert passage.case and passage.via == "Tozzi 2002" and passage.topics == claim.topics
    assert passage.doi == corpus.knowledge.sources["wang-2012"].doi


def test_user_document_sections_split_into_numbered_pieces_with_stable_ids() -> None:
    text = " ".join(f"Sentence {i} about cement in the pulmonary arteries." for i in range(30))
    source = Source(
        id="user-notes-0000", title="notes", evidence_type="user-supplied", user_supplied=True,
        sections=(Section(id="user-notes-0000#notes", heading="Notes", text=text),),
    )
    passages = passages_from_sources([source], chunk_size=200, chunk_overlap=50)
    again = passages_from_sources([source], chunk_size=200, chunk_overlap=50)
    assert [(p.id, p.text) for p in passages] == [(p.id, p.text) for p in again]
    assert len(passages) > 1 and len({p.id for p in passages}) == len(passages)
    section = source.sections[0]
    assert [p.id for p in passages] == [section.id] + [
        f"{section.id}~{n}" for n in range(2, len(passages) + 1)
    ]
    assert all(len(p.text) <= 200 for p in passages)
    assert all(p.kind == "section" and p.user_supplied and p.section == "Notes" for p in passages)


# --- index lifecycle -----------------------------------------------------------------------------


def test_ensure_index_builds_once_then_reports_up_to_date(
    small_settings: Settings, hash_embedder: HashEmbedder
) -> None:
    _, _, first = build(small_settings, hash_embedder)
    _, _, second = build(small_settings, hash_embedder)
    assert first.built and first.passages == 4 and first.sources == 2
    assert not second.built and second.collection == first.collection
    assert second.summary().startswith("Up to date")
    assert collection_names(small_settings) == [first.collection]


def test_rebuild_flag_rebuilds_an_up_to_date_index(
    small_settings: Settings, hash_embedder: HashEmbedder
) -> None:
    corpus, _, first = build(small_settings, hash_embedder)
    _, report = ensure_index(
        small_settings, corpus.passages, hash_embedder, corpus.fingerprint, rebuild=True
    )
    assert report.built and report.collection == first.collection


def test_changed_knowledge_file_gives_new_collection_and_removes_the_stale_one(
    small_settings: Settings, hash_embedder: HashEmbedder
) -> None:
    _, _, old = build(small_settings, hash_embedder)
    path = small_settings.knowledge_dir / "sources" / "alpha-2020.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("fixture cohort, cement", "fixture cohort, bone cement", 1),
                    encoding="utf-8")
    _, _, new = build(small_settings, hash_embedder)
    assert new.built and new.collection != old.collection
    assert new.removed_stale == [old.collection]
    assert collection_names(small_settings) == [new.collection]


def test_changed_chunk_size_gives_new_collection_and_removes_the_stale_one(
    small_settings: Settings, hash_embedder: HashEmbedder
) -> None:
    _, _, old = build(small_settings, hash_embedder)
    resized = small_settings.model_copy(update={"chunk_size": 600})
    _, _, new = build(resized, hash_embedder)
    assert new.built and new.collection != old.collection
    assert new.removed_stale == [old.collection]
    assert collection_names(resized) == [new.collection]


def test_collection_marked_incomplete_is_rebuilt(
    small_settings: Settings, hash_embedder: HashEmbedder
) -> None:
    _, index, first = build(small_settings, hash_embedder)
    # What a build interrupted after its first batch leaves behind.
    index.client.get_collection(first.collection).modify(metadata={"complete": False})
    _, index, again = build(small_settings, hash_embedder)
    assert again.built and again.collection == first.collection
    assert index.is_complete(first.passages)


def test_collection_missing_passages_is_rebuilt(
    small_settings: Settings, hash_embedder: HashEmbedder
) -> None:
    corpus, index, first = build(small_settings, hash_embedder)
    index.client.get_collection(first.collection).delete(ids=[corpus.passages[0].id])
    assert not index.is_complete(first.passages)
    _, index, again = build(small_settings, hash_embedder)
    assert again.built and index.is_complete(first.passages)


def test_dense_query_returns_cosine_similarity_of_the_matching_passage(
    small_settings: Settings, hash_embedder: HashEmbedder
) -> None:
    corpus, index, _ = build(small_settings, hash_embedder)
    target = corpus.passages[0]
    hits = index.query(hash_embedder.embed_query(target.text), 2)
    assert hits[0][0] == target.id
    assert hits[0][1] == pytest.approx(1.0, abs=1e-4)


def test_query_on_a_missing_collection_says_to_run_the_index_command(settings: Settings) -> None:
    index = VectorIndex(open_client(settings), "pce-0000", "pce", str(settings.chroma_path))
    with pytest.raises(IndexError_, match="pce-assistant index") as caught:
        index.query([0.0] * 8, 3)
    assert not isinstance(caught.value, IndexUnavailableError)


# --- retrievers ----------------------------------------------------------------------------------


def test_bm25_finds_the_passage_with_an_exact_rare_term(settings: Settings) -> None:
    passages = load_corpus(settings).passages
    holders = [p.id for p in passages if "cushing" in p.text.lower()]
    assert len(holders) == 1
    hits = BM25Retriever(passages).retrieve("Cushing", 5)
    assert [h.id for h in hits] == holders
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
    assert "venmans-2010#azygos-leakage-risk-factor" in {p.id for p in hits}


def test_make_retriever_needs_the_index_for_dense_modes(
    small_settings: Settings, hash_embedder: HashEmbedder
) -> None:
    corpus = load_corpus(small_settings)
    assert make_retriever("bm25", small_settings, corpus, None, hash_embedder).name == "bm25"
    with pytest.raises(ConfigurationError, match="vector index"):
        make_retriever("hybrid", small_settings, corpus, None, hash_embedder)


# --- Chroma server configuration -----------------------------------------------------------------


def _closed_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_chroma_url_raises_index_unavailable_naming_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hash_embedder: HashEmbedder
) -> None:
    url = f"http://127.0.0.1:{_closed_loopback_port()}"
    monkeypatch.setenv("PCE_CHROMA_URL", url)
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.chroma_url == url
    with pytest.raises(IndexUnavailableError, match=re.escape(url)):
        open_client(settings)
    corpus = load_corpus(settings)
    with pytest.raises(IndexUnavailableError, match=re.escape(url)):
        ensure_index(settings, corpus.passages, hash_embedder, corpus.fingerprint)


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://127.0.0.1:8000", "http://"])
def test_malformed_chroma_url_raises_configuration_error(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigurationError, match="PCE_CHROMA_URL"):
        open_client(Settings(data_dir=tmp_path, chroma_url=url))


def test_unit_tests_cannot_open_non_loopback_connections() -> None:
    with pytest.raises(OSError, match="blocked"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with socket.socket() as sock, pytest.raises(OSError, match="blocked"):
        sock.connect(("192.0.2.1", 80))


# --- model weights -------------------------------------------------------------------------------


def _fake_model_dir(tmp_path: Path, content: bytes | None) -> Path:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    if content is not None:
        (model_dir / WEIGHTS_FILE).write_bytes(content)
    return model_dir


def test_weights_with_a_different_hash_raise_model_error(tmp_path: Path) -> None:
    model_dir = _fake_model_dir(tmp_path, b"not the real weights")
    embedder = SentenceTransformerEmbedder(model_dir, DEFAULT_MODEL_SHA256, "fake")
    with pytest.raises(ModelError, match="hash mismatch") as caught:
        embedder.embed_query("anything")
    assert DEFAULT_MODEL_SHA256 in str(caught.value)
    assert sha256_of(model_dir / WEIGHTS_FILE) in str(caught.value)


def test_missing_weights_file_raises_model_error(tmp_path: Path) -> None:
    model_dir = _fake_model_dir(tmp_path, None)
    embedder = SentenceTransformerEmbedder(model_dir, DEFAULT_MODEL_SHA256, "fake")
    with pytest.raises(ModelError, match="not found"):
        embedder.warm_up()


def test_weights_matching_the_expected_hash_pass_verification(tmp_path: Path) -> None:
    model_dir = _fake_model_dir(tmp_path, b"weights")
    expected = sha256_of(model_dir / WEIGHTS_FILE)
    verify_weights(model_dir, expected)
    verify_weights(model_dir, expected.upper())

