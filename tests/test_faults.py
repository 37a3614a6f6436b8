"""Faults the assistant must survive or refuse clearly: the Chroma server down at start or killed
mid-run, a missing, stale or corrupt index, missing or altered model weights, malformed knowledge
and rules files, and an audit database that is locked or read-only.

The hash embedder stands in for the model wherever the model is not the point; tests that need a
Chroma server are marked ``integration``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

from assistant import Answer, Assistant, Settings
from assistant.audit import AuditLog
from assistant.cli import main
from assistant.errors import (
    DataError,
    IndexError_,
    IndexUnavailableError,
    ModelError,
)
from assistant.knowledge.corpus import load_corpus
from assistant.retrieval.embeddings import (
    WEIGHTS_FILE,
    HashEmbedder,
    bundled_model_dir,
    sha256_of,
)
from assistant.retrieval.index import ensure_index, open_client
from assistant.settings import DEFAULT_MODEL_SHA256
from assistant.web.api import create_app

REPO_ROOT = Path(__file__).resolve().parent.parent

if TYPE_CHECKING:
    from conftest import ChromaServer

QUESTION = "Asymptomatic peripheral cement emboli after kyphoplasty: anticoagulate?"
FALLBACK_NOTE = "keyword search"
KNOWLEDGE = REPO_ROOT / "knowledge"


# --- helpers --------------------------------------------------------------------------------------


def closed_loopback_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def collections(settings: Settings) -> list[str]:
    """The passage collections (not the registry that points to the active one)."""
    listed = open_client(settings).list_collections()
    names = (c if isinstance(c, str) else c.name for c in listed)
    return sorted(n for n in names if n.startswith("pce-"))


def dense_used(answer: Answer) -> bool:
    return any("dense" in p.ranks for p in answer.passages)


@pytest.fixture
def knowledge_copy(tmp_path: Path) -> Path:
    """A private, editable copy of the shipped knowledge base."""
    target = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, target)
    return target


@pytest.fixture(scope="module")
def healthy_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding a complete embedded index (hash embedder), built once."""
    data_dir = tmp_path_factory.mktemp("healthy") / "data"
    Assistant.from_settings(Settings(data_dir=data_dir), embedder=HashEmbedder(), audit=False)
    return data_dir


def copy_of(healthy_index: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(healthy_index, target)
    return target


# --- the Chroma server ----------------------------------------------------------------------------


def test_unreachable_chroma_server_at_start_names_the_url(tmp_path: Path) -> None:
    url = closed_loopback_url()
    settings = Settings(data_dir=tmp_path / "data", chroma_url=url)
    with pytest.raises(IndexUnavailableError, match=re.escape(url)) as caught:
        Assistant.from_settings(settings, embedder=HashEmbedder())
    assert "PCE_CHROMA_URL" in str(caught.value)  # says what to do, too


def test_serve_with_an_unreachable_chroma_server_exits_with_one_line_naming_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = closed_loopback_url()
    monkeypatch.setenv("PCE_DATA_DIR", str(tmp_path / "data"))
    assert main(["serve", "--chroma-url", url]) == 2
    err = capsys.readouterr().err
    assert url in err and "Traceback" not in err


@pytest.mark.integration
def test_chroma_server_killed_mid_run_falls_back_to_keywords_then_recovers_on_restart(
    chroma_server_factory: Callable[..., ChromaServer], tmp_path: Path
) -> None:
    server = chroma_server_factory(tmp_path / "db")
    settings = Settings(data_dir=tmp_path / "data", chroma_url=server.url)
    corpus = load_corpus(settings)
    ensure_index(settings, corpus.passages, HashEmbedder(), corpus.fingerprint)  # the one writer
    assistant = Assistant.from_settings(settings, embedder=HashEmbedder())
    collection_id = assistant.components.index.collection_id  # type: ignore[union-attr]
    api = TestClient(create_app(assistant), raise_server_exceptions=False)
    before = assistant.ask(QUESTION)
    assert dense_used(before) and not before.notes

    server.stop()  # killed under a running app
    for _ in range(2):  # the second ask runs without the cached collection handle
        during = assistant.ask(QUESTION)
        assert during.text and during.recommendation is not None
        assert during.recommendation.tier == before.recommendation.tier  # type: ignore[union-attr]
        assert not dense_used(during)
        assert any(FALLBACK_NOTE in note for note in during.notes)
    over_http = api.post("/api/v1/ask", json={"question": QUESTION})
    assert over_http.status_code == 200
    assert any(FALLBACK_NOTE in note for note in over_http.json()["notes"])
    assert api.get("/healthz").json()["status"] == "ok"

    chroma_server_factory(server.path, server.port)  # back on the same port, same data
    after = assistant.ask(QUESTION)
    assert dense_used(after) and not after.notes
    assert [p.id for p in after.passages] == [p.id for p in before.passages]
    assert assistant.components.index.collection_id == collection_id  # type: ignore[union-attr]


def test_serve_on_a_chroma_server_without_an_active_index_names_the_command(
    chroma_server_factory: Callable[..., ChromaServer], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    server = chroma_server_factory(tmp_path / "db")
    monkeypatch.setenv("PCE_DATA_DIR", str(tmp_path / "data"))
    assert main(["serve", "--chroma-url", server.url]) == 2
    err = capsys.readouterr().err
    assert f"PCE_CHROMA_URL={server.url} pce-assistant index" in err and "Traceback" not in err
    listed = open_client(Settings(chroma_url=server.url)).list_collections()
    assert [c.name for c in listed if c.name.startswith("pce-")] == [], "serve built nothing"


# --- the embedded index: missing, stale, corrupt --------------------------------------------------


@pytest.mark.parametrize("state", ["never-built", "directory-deleted"])
def test_missing_index_is_built_by_from_settings(
    healthy_index: Path, tmp_path: Path, state: str
) -> None:
    if state == "never-built":
        settings = Settings(data_dir=tmp_path / "data")
        assert not settings.chroma_path.exists()
    else:
        settings = Settings(data_dir=copy_of(healthy_index, tmp_path))
        shutil.rmtree(settings.chroma_path)
    assistant = Assistant.from_settings(settings, embedder=HashEmbedder())
    assert collections(settings) == [assistant.versions.index]
    assert dense_used(assistant.ask(QUESTION))


def test_deleted_index_directory_is_rebuilt_by_from_settings(
    healthy_index: Path, tmp_path: Path
) -> None:
    data_dir = copy_of(healthy_index, tmp_path)
    shutil.rmtree(data_dir / "chroma")
    assistant = Assistant.from_settings(Settings(data_dir=data_dir), embedder=HashEmbedder())
    assert dense_used(assistant.ask(QUESTION))


def test_changed_knowledge_file_gives_a_new_collection_and_keeps_the_previous_one(
    knowledge_copy: Path, tmp_path: Path
) -> None:
    settings = Settings(knowledge_dir=knowledge_copy, data_dir=tmp_path / "data")
    old = Assistant.from_settings(settings, embedder=HashEmbedder(), audit=False)
    source = knowledge_copy / "sources" / "krueger-2009.md"
    source.write_text(source.read_text(encoding="utf-8") + "\nA reviewed addition.\n",
                      encoding="utf-8")
    new = Assistant.from_settings(settings, embedder=HashEmbedder(), audit=False)
    assert new.versions.index != old.versions.index
    assert new.versions.knowledge != old.versions.knowledge
    # The previous version's collection stays while its workers may still run (see index.py).
    assert collections(settings) == sorted([old.versions.index, new.versions.index])
    assert dense_used(new.ask(QUESTION)) and dense_used(old.ask(QUESTION))


@pytest.mark.parametrize(
    "damage",
    ["database-garbage", "database-truncated", "directory-is-a-file"],
)
def test_corrupt_index_is_detected_with_a_message_naming_the_fix(
    healthy_index: Path, tmp_path: Path, damage: str
) -> None:
    data_dir = copy_of(healthy_index, tmp_path)
    database = data_dir / "chroma" / "chroma.sqlite3"
    if damage == "database-garbage":
        database.write_bytes(os.urandom(256 * 1024))
    elif damage == "database-truncated":
        database.write_bytes(database.read_bytes()[: database.stat().st_size // 3])
    else:
        shutil.rmtree(data_dir / "chroma")
        (data_dir / "chroma").write_text("not an index")
    with pytest.raises(IndexError_) as caught:
        Assistant.from_settings(Settings(data_dir=data_dir), embedder=HashEmbedder())
    message = str(caught.value)
    assert "pce-assistant index" in message and str(data_dir / "chroma") in message


def test_garbage_vector_segment_files_do_not_change_the_answers(
    healthy_index: Path, tmp_path: Path
) -> None:
    # Chroma re-reads the vectors of a collection this size from its database, so damaged
    # segment files must give exactly the healthy answers, never silently different ones.
    healthy = Assistant.from_settings(Settings(data_dir=healthy_index), embedder=HashEmbedder(),
                                      audit=False)
    data_dir = copy_of(healthy_index, tmp_path)
    segments = list((data_dir / "chroma").glob("*/*.bin"))
    assert segments, "expected HNSW segment files in the embedded index"
    for path in segments:
        path.write_bytes(os.urandom(max(path.stat().st_size, 64)))
    damaged = Assistant.from_settings(Settings(data_dir=data_dir), embedder=HashEmbedder(),
                                      audit=False)
    for question in (QUESTION, "cement leakage into the azygos vein",
                     "surgical embolectomy for central cement emboli"):
        assert [(p.id, p.ranks) for p in damaged.ask(question).passages] == [
            (p.id, p.ranks) for p in healthy.ask(question).passages
        ]


# --- model weights --------------------------------------------------------------------------------


@pytest.fixture
def altered_model(tmp_path: Path) -> Path:
    """The bundled model directory with one byte of its weights flipped."""
    source = bundled_model_dir()
    target = tmp_path / "model"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(WEIGHTS_FILE))
    weights = bytearray((source / WEIGHTS_FILE).read_bytes())
    weights[len(weights) // 2] ^= 0xFF
    (target / WEIGHTS_FILE).write_bytes(bytes(weights))
    return target


def test_altered_weights_are_refused_naming_expected_and_actual_hash(
    altered_model: Path, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model_dir=altered_model)
    with pytest.raises(ModelError, match="hash mismatch") as caught:
        Assistant.from_settings(settings)  # the index build needs the model
    message = str(caught.value)
    assert DEFAULT_MODEL_SHA256 in message
    assert sha256_of(altered_model / WEIGHTS_FILE) in message
    assert "PCE_EMBEDDING_SHA256" in message


def test_altered_weights_under_an_existing_index_are_refused_before_serving(
    altered_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import uvicorn

    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: served.append(a))
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir, embedding_model_dir=altered_model)
    # An index built for these settings already exists; the weights changed afterwards.
    Assistant.from_settings(settings, embedder=_NamedHash(), audit=False)
    assistant = Assistant.from_settings(settings)  # opens the index; the model is lazy
    with pytest.raises(ModelError, match="hash mismatch"):
        assistant.ask(QUESTION)
    monkeypatch.setenv("PCE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("PCE_EMBEDDING_MODEL_DIR", str(altered_model))
    assert main(["serve"]) == 2
    assert not served, "the server must not start with unverified weights"
    err = capsys.readouterr().err
    assert "hash mismatch" in err and DEFAULT_MODEL_SHA256 in err and "Traceback" not in err


class _NamedHash(HashEmbedder):
    """The hash embedder under the real model's name, to pre-build that model's index cheaply."""

    def __init__(self) -> None:
        super().__init__(dimension=384)
        self.name = Settings().embedding_model_name


def test_missing_weights_are_refused_naming_the_file(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(bundled_model_dir(), model_dir, ignore=shutil.ignore_patterns(WEIGHTS_FILE))
    settings = Settings(data_dir=tmp_path / "data", embedding_model_dir=model_dir)
    with pytest.raises(ModelError, match="not found") as caught:
        Assistant.from_settings(settings)
    assert str(model_dir / WEIGHTS_FILE) in str(caught.value)


@pytest.mark.integration  # sentence-transformers and torch try to load the model
def test_model_directory_that_cannot_be_loaded_is_a_clear_error(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(bundled_model_dir(), model_dir)
    (model_dir / "modules.json").write_text("{not json", encoding="utf-8")
    settings = Settings(data_dir=tmp_path / "data", embedding_model_dir=model_dir)
    with pytest.raises(ModelError, match="Could not load the model from") as caught:
        Assistant.from_settings(settings).warm_up()
    assert str(model_dir) in str(caught.value)


# --- malformed knowledge and rules ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "edit", "says"),
    [
        ("sources/krueger-2009.md", lambda t: t.replace("year: 2009", "year: 2009\nreviewer: x"),
         "reviewer: unknown field"),
        ("rules.yaml", lambda t: t.replace("tier: surveillance", "tier: observation", 1),
         "unknown value 'observation'"),
        ("lexicon.yaml", lambda t: t.replace("symptomatic:", "symptomatik:", 1),
         "symptomatik: unknown field"),
        ("scope.yaml", lambda t: t.replace("core:", "kore:", 1), "kore: unknown field"),
        ("disagreements.yaml",
         lambda t: t.replace("{krueger-2009#incidence}", "{krueger-2009#incidense}"),
         "'krueger-2009#incidense' does not resolve"),
    ],
    ids=["source", "rules", "lexicon", "scope", "disagreements"],
)
def test_a_malformed_data_file_fails_at_start_naming_file_line_and_field(
    knowledge_copy: Path, tmp_path: Path, file: str, edit: Callable[[str], str], says: str
) -> None:
    # Every way each file can be malformed is tested with its loader (test_rules, test_data,
    # test_knowledge, test_findings); here: the assistant refuses to start and builds nothing.
    path = knowledge_copy / file
    original = path.read_text(encoding="utf-8")
    broken = edit(original)
    assert broken != original, "the edit did not apply to the fixture text"
    path.write_text(broken, encoding="utf-8")
    settings = Settings(knowledge_dir=knowledge_copy, data_dir=tmp_path / "data")
    with pytest.raises(DataError) as caught:
        Assistant.from_settings(settings, embedder=HashEmbedder())
    assert Path(caught.value.path).resolve() == path.resolve()
    assert says in str(caught.value) and str(path) in str(caught.value)
    assert all(d.line for d in caught.value.details), caught.value.details
    assert not settings.chroma_path.exists(), "nothing is built from a broken knowledge base"


# --- the audit database ---------------------------------------------------------------------------


class ImpatientAuditLog(AuditLog):
    """The real audit log with a 0.2 s lock wait instead of 10 s, so a test can hold the lock."""

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=0.2)
        conn.execute("PRAGMA busy_timeout = 200")
        return conn


class ReadOnlyAuditLog(AuditLog):
    """The real audit log over a database opened read-only (root ignores file permissions)."""

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)


@pytest.fixture
def http_assistant(healthy_index: Path, tmp_path: Path) -> Iterator[tuple[Assistant, TestClient]]:
    assistant = Assistant.from_settings(
        Settings(data_dir=copy_of(healthy_index, tmp_path)), embedder=HashEmbedder()
    )
    with TestClient(create_app(assistant), raise_server_exceptions=False) as client:
        yield assistant, client


def test_locked_audit_database_still_answers_and_logs_the_failure(
    http_assistant: tuple[Assistant, TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    assistant, client = http_assistant
    audit = ImpatientAuditLog(assistant.settings.audit_path)
    audit.record("ask", id="before-the-lock")
    assistant.audit = audit
    holder = sqlite3.connect(audit.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with caplog.at_level(logging.ERROR, logger="assistant.audit"):
            response = client.post("/api/v1/ask", json={"question": QUESTION})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert response.status_code == 200
    assert response.json()["recommendation"]["tier"] == "surveillance"
    assert "audit write failed" in caplog.text and "locked" in caplog.text
    assert client.get("/healthz").json()["audit_failures"] == 1
    after = client.post("/api/v1/ask", json={"question": QUESTION}).json()
    audit.drain()  # the spool replays in order once the lock is gone: nothing lost
    assert [r["id"] for r in audit.rows("ask")] == [
        "before-the-lock", response.json()["id"], after["id"],
    ]


def test_read_only_audit_database_still_answers_and_logs_the_failure(
    http_assistant: tuple[Assistant, TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    assistant, client = http_assistant
    AuditLog(assistant.settings.audit_path).record("ask", id="written-before")
    audit = ReadOnlyAuditLog(assistant.settings.audit_path)
    assistant.audit = audit
    with caplog.at_level(logging.ERROR, logger="assistant.audit"):
        response = client.post("/api/v1/ask", json={"question": QUESTION})
        feedback = client.post(
            "/api/v1/feedback", json={"answer_id": response.json()["id"], "rating": "helpful"}
        )
    assert response.status_code == 200 and response.json()["text"]
    # Kept in the spool until the database takes writes again, so recorded, not lost.
    assert feedback.status_code == 200 and feedback.json()["recorded"] is True
    assert "audit write failed" in caplog.text and "readonly" in caplog.text
    assert client.get("/healthz").json()["audit_failures"] == 2
    assert [r["id"] for r in audit.rows()] == ["written-before"]  # readable, untouched
    assert audit.pending() == 2 and audit.lost == 0
