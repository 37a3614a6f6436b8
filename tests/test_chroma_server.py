"""The index on a real Chroma server (``chroma run`` on loopback): parity, CLI, outage, recovery."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from assistant.cli import main
from assistant.errors import IndexUnavailableError
from assistant.knowledge.corpus import load_corpus
from assistant.retrieval.embeddings import SentenceTransformerEmbedder
from assistant.retrieval.index import ensure_index
from assistant.retrieval.retrievers import make_retriever
from assistant.settings import Settings

if TYPE_CHECKING:
    from conftest import ChromaServer, RealIndex

pytestmark = pytest.mark.integration

QUESTIONS = [
    "How does bone cement reach the pulmonary arteries?",
    "Should asymptomatic patients receive prophylactic low-molecular-weight heparin?",
    "Does leakage into the azygos vein predict pulmonary cement embolism?",
    "How should cement in the right atrium be managed?",
]


def test_server_index_gives_the_same_top_passages_as_the_embedded_index(
    chroma_server: str, real_index: RealIndex, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", chroma_url=chroma_server)
    corpus = real_index.corpus
    index, report = ensure_index(settings, corpus.passages, real_index.embedder, corpus.fingerprint)
    assert report.where == chroma_server and report.passages == len(corpus.passages)
    server = make_retriever("hybrid", settings, corpus, index, real_index.embedder)
    embedded = make_retriever(
        "hybrid", real_index.settings, corpus, real_index.index, real_index.embedder
    )
    for question in QUESTIONS:
        assert [p.id for p in server.retrieve(question, 5)] == [
            p.id for p in embedded.retrieve(question, 5)
        ], question
    assert not (tmp_path / "data" / "chroma").exists(), "server mode must not create a local index"


def test_cli_index_with_chroma_url_rebuilds_then_reports_up_to_date(
    chroma_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["index", "--chroma-url", chroma_server, "--data-dir", str(tmp_path / "data")]
    assert main([*argv, "--rebuild"]) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0
    second = capsys.readouterr().out
    print(first, second)
    assert first.startswith("Built collection 'pce-") and f"({chroma_server})" in first
    assert second.startswith("Up to date: collection 'pce-") and f"({chroma_server})" in second
    assert not (tmp_path / "data" / "chroma").exists()


def test_query_during_server_outage_raises_index_unavailable_and_recovers_after_restart(
    chroma_server_factory: Callable[..., ChromaServer],
    real_embedder: SentenceTransformerEmbedder,
    tmp_path: Path,
) -> None:
    server = chroma_server_factory(tmp_path / "db")
    settings = Settings(data_dir=tmp_path / "data", chroma_url=server.url)
    corpus = load_corpus(settings)
    index, _ = ensure_index(settings, corpus.passages, real_embedder, corpus.fingerprint)
    retriever = make_retriever("hybrid", settings, corpus, index, real_embedder)
    question = QUESTIONS[0]
    before = [p.id for p in retriever.retrieve(question, 5)]

    server.stop()
    for _ in range(2):  # the second attempt runs without the cached collection handle
        with pytest.raises(IndexUnavailableError) as caught:
            retriever.retrieve(question, 5)
        assert server.url in str(caught.value)

    chroma_server_factory(server.path, server.port)
    assert [p.id for p in retriever.retrieve(question, 5)] == before
    _, report = ensure_index(settings, corpus.passages, real_embedder, corpus.fingerprint)
    assert not report.built, "the restarted server should serve the index it persisted"
