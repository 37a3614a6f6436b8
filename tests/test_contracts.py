"""Contract tests: what every implementation of a protocol must do, written once.

Each ``*Contract`` class holds the behaviours; each implementation subclasses it once and only
provides the fixture that builds it (haystack's pattern). Unit subclasses use the hash embedder
and embedded Chroma; the real model and the Chroma server run as ``integration``.
"""

from __future__ import annotations

import math
import shutil
import uuid
from pathlib import Path

import pytest

from assistant.errors import IndexError_, IndexUnavailableError
from assistant.knowledge.corpus import Corpus, load_corpus
from assistant.retrieval.embeddings import Embedder, HashEmbedder, SentenceTransformerEmbedder
from assistant.retrieval.index import (
    IndexReport,
    Registry,
    VectorIndex,
    ensure_index,
    open_client,
    open_index,
)
from assistant.retrieval.retrievers import (
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    Retriever,
    make_retriever,
)
from assistant.settings import Settings

FIXTURE_KNOWLEDGE = Path(__file__).parent / "fixtures" / "knowledge" / "valid"
QUESTION = "Does cement leakage into the azygos vein predict pulmonary cement embolism?"


# --- Retriever ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Corpus]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("contracts") / "data")
    return settings, load_corpus(settings)


@pytest.fixture(scope="module")
def hashed_index(shipped: tuple[Settings, Corpus]) -> VectorIndex:
    settings, corpus = shipped
    index, _ = ensure_index(settings, corpus.passages, HashEmbedder(), corpus.fingerprint)
    return index


class RetrieverContract:
    """Every retriever returns at most k ranked passages of the corpus, best first."""

    @pytest.fixture
    def retriever(self) -> Retriever:
        raise NotImplementedError("each implementation provides its retriever")

    def test_a_passages_own_text_retrieves_it_first(
        self, retriever: Retriever, shipped: tuple[Settings, Corpus]
    ) -> None:
        passages = shipped[1].passages
        for target in passages[:: max(1, len(passages) // 6)]:
            assert retriever.retrieve(target.text, 5)[0].id == target.id, target.id

    def test_returns_at_most_k_distinct_passages_of_the_corpus(
        self, retriever: Retriever, shipped: tuple[Settings, Corpus]
    ) -> None:
        assert isinstance(retriever, Retriever) and retriever.name in ("bm25", "dense", "hybrid")
        known = {p.id: p for p in shipped[1].passages}
        for k in (1, 4, len(known) + 10):
            hits = retriever.retrieve(QUESTION, k)
            assert 0 < len(hits) <= min(k, len(known))
            assert len({p.id for p in hits}) == len(hits)
            for p in hits:
                assert p.text == known[p.id].text and p.source_id == known[p.id].source_id

    def test_ranks_and_scores_say_how_each_passage_was_found(self, retriever: Retriever) -> None:
        hits = retriever.retrieve(QUESTION, 6)
        scores = [p.score for p in hits]
        assert scores == sorted(scores, reverse=True)
        for p in hits:
            assert p.ranks and set(p.ranks) == set(p.scores)
            assert all(rank >= 1 for rank in p.ranks.values())
        if retriever.name in hits[0].ranks:  # a single retriever ranks 1, 2, 3...
            assert [p.ranks[retriever.name] for p in hits] == list(range(1, len(hits) + 1))


class TestBM25Retriever(RetrieverContract):
    @pytest.fixture
    def retriever(self, shipped: tuple[Settings, Corpus]) -> Retriever:
        return BM25Retriever(shipped[1].passages)


class TestDenseRetriever(RetrieverContract):
    @pytest.fixture
    def retriever(self, shipped: tuple[Settings, Corpus], hashed_index: VectorIndex) -> Retriever:
        return DenseRetriever(hashed_index, HashEmbedder(), shipped[1].passages)


class TestHybridRetriever(RetrieverContract):
    @pytest.fixture
    def retriever(self, shipped: tuple[Settings, Corpus], hashed_index: VectorIndex) -> Retriever:
        settings, corpus = shipped
        hybrid = make_retriever("hybrid", settings, corpus, hashed_index, HashEmbedder())
        assert isinstance(hybrid, HybridRetriever)
        return hybrid


# --- Embedder -------------------------------------------------------------------------------------


class EmbedderContract:
    """Every embedder maps text to a fixed-size unit vector; similar text lands closer."""

    @pytest.fixture
    def embedder(self) -> Embedder:
        raise NotImplementedError("each implementation provides its embedder")

    def test_documents_and_queries_are_unit_vectors_of_one_size(self, embedder: Embedder) -> None:
        assert isinstance(embedder, Embedder) and embedder.name
        texts = ["Pulmonary cement embolism after vertebroplasty.", "Kyphoplasty", "x" * 3000]
        vectors = [*embedder.embed_documents(texts), embedder.embed_query("cement in the lung")]
        assert len({len(v) for v in vectors}) == 1
        for v in vectors:
            assert all(math.isfinite(x) for x in v)
            assert math.sqrt(sum(x * x for x in v)) == pytest.approx(1.0, abs=1e-3)
        assert embedder.embed_documents([]) == []

    def test_a_query_and_the_same_document_text_embed_alike(self, embedder: Embedder) -> None:
        text = "Cement embolism to the pulmonary arteries after kyphoplasty."
        (document,) = embedder.embed_documents([text])
        assert _cosine(document, embedder.embed_query(text)) == pytest.approx(1.0, abs=1e-3)

    def test_related_text_is_closer_than_unrelated_text(self, embedder: Embedder) -> None:
        anchor = embedder.embed_query("bone cement emboli in the pulmonary arteries")
        related, unrelated = embedder.embed_documents(
            ["cement emboli lodged in the pulmonary arteries", "a recipe for sourdough bread"]
        )
        assert _cosine(anchor, related) > _cosine(anchor, unrelated)


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


class TestHashEmbedder(EmbedderContract):
    @pytest.fixture
    def embedder(self) -> Embedder:
        return HashEmbedder()


@pytest.mark.integration
class TestSentenceTransformerEmbedder(EmbedderContract):
    @pytest.fixture
    def embedder(self, real_embedder: SentenceTransformerEmbedder) -> Embedder:
        return real_embedder


# --- the vector index -----------------------------------------------------------------------------


class IndexContract:
    """Every index backend: one writer builds, marks complete, then switches the active pointer;
    an unchanged build is reused; a change or damage gives a new collection beside the old one;
    readers never build; a passage's own vector finds it with cosine one.

    Subclasses provide ``index_settings``: where the collections live (a fresh place per test).
    """

    @pytest.fixture
    def index_settings(self, tmp_path: Path) -> Settings:
        raise NotImplementedError("each backend provides its settings")

    @pytest.fixture
    def small(self, index_settings: Settings, tmp_path: Path) -> Settings:
        """The two-source fixture knowledge base, in an editable copy."""
        knowledge = tmp_path / "knowledge"
        shutil.copytree(FIXTURE_KNOWLEDGE, knowledge)
        return index_settings.model_copy(update={"knowledge_dir": knowledge})

    @staticmethod
    def build(settings: Settings) -> tuple[Corpus, VectorIndex, IndexReport]:
        corpus = load_corpus(settings)
        index, report = ensure_index(settings, corpus.passages, HashEmbedder(), corpus.fingerprint)
        return corpus, index, report

    @staticmethod
    def collections(settings: Settings) -> list[str]:
        names = [c if isinstance(c, str) else c.name
                 for c in open_client(settings).list_collections()]
        return sorted(n for n in names if n.startswith(f"{settings.collection_prefix}-"))

    @staticmethod
    def active(settings: Settings) -> str | None:
        pointer = Registry(open_client(settings), settings.collection_prefix, create=False).active()
        return pointer.collection if pointer else None

    def test_builds_once_then_reuses_the_active_collection(self, small: Settings) -> None:
        _, _, first = self.build(small)
        _, _, again = self.build(small)
        assert first.built and not again.built and again.collection == first.collection
        assert self.active(small) == first.collection
        assert self.collections(small) == [first.collection]

    def test_a_passage_vector_finds_that_passage_with_cosine_one(self, small: Settings) -> None:
        corpus, index, _ = self.build(small)
        target = corpus.passages[0]
        hits = index.query(HashEmbedder().embed_query(target.text), 2)
        assert len(hits) == 2 and hits[0][0] == target.id
        assert hits[0][1] == pytest.approx(1.0, abs=1e-4) and hits[1][1] < hits[0][1]

    @pytest.mark.parametrize("change", ["knowledge-file", "chunk-size"])
    def test_a_change_switches_to_a_new_collection_and_keeps_the_previous_one(
        self, small: Settings, change: str
    ) -> None:
        _, _, old = self.build(small)
        if change == "knowledge-file":
            path = next((small.knowledge_dir / "sources").glob("alpha-2020.*"))
            path.write_text(path.read_text(encoding="utf-8") + "\n# reviewed\n", "utf-8")
        else:
            small = small.model_copy(update={"chunk_size": 600})
        _, _, new = self.build(small)
        assert new.built and new.collection != old.collection and new.removed_stale == []
        # A worker of the previous version may still be reading it: it stays.
        assert self.collections(small) == sorted([old.collection, new.collection])
        assert self.active(small) == new.collection

    @pytest.mark.parametrize("damage", ["marked-incomplete", "passage-missing"])
    def test_a_damaged_collection_is_rebuilt_beside_it_then_removed(
        self, small: Settings, damage: str
    ) -> None:
        corpus, index, first = self.build(small)
        collection = index.client.get_collection(first.collection)
        if damage == "marked-incomplete":  # what a build interrupted after one batch leaves
            collection.modify(metadata={"complete": False})
        else:
            collection.delete(ids=[corpus.passages[0].id])
        _, _, again = self.build(small)
        assert again.built and again.collection != first.collection
        assert again.removed_stale == [first.collection]
        assert self.collections(small) == [again.collection]
        assert self.active(small) == again.collection

    def test_a_reader_without_an_active_index_names_the_command_and_builds_nothing(
        self, index_settings: Settings
    ) -> None:
        corpus = load_corpus(index_settings)
        with pytest.raises(IndexError_, match="pce-assistant index") as caught:
            open_index(index_settings, HashEmbedder().name, corpus.fingerprint)
        assert not isinstance(caught.value, IndexUnavailableError)
        assert self.collections(index_settings) == []
        assert self.active(index_settings) is None


class TestEmbeddedChroma(IndexContract):
    @pytest.fixture
    def index_settings(self, tmp_path: Path) -> Settings:
        return Settings(data_dir=tmp_path / "data")


@pytest.mark.integration
class TestChromaServer(IndexContract):
    @pytest.fixture
    def index_settings(self, tmp_path: Path, chroma_server: str) -> Settings:
        # One server for the session: a prefix of its own keeps each test's collections apart.
        prefix = f"t{uuid.uuid4().hex[:10]}"
        return Settings(data_dir=tmp_path / "data", chroma_url=chroma_server,
                        collection_prefix=prefix)

