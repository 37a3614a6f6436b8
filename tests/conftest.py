"""Shared fixtures: an offline, hermetic environment; fakes for unit tests; real model and Chroma.

Unit tests (no ``integration`` marker) may only open loopback sockets. Integration tests get the
real bundled model, a real embedded index and a real Chroma server, each built once per session.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Set before anything imports huggingface_hub, chromadb or gradio: they read these at import time.
os.environ.update(
    HF_HUB_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    ANONYMIZED_TELEMETRY="False",
    GRADIO_ANALYTICS_ENABLED="False",
)
# A developer's own PCE_* settings (e.g. PCE_CHROMA_URL) must not leak into tests.
for _name in [n for n in os.environ if n.startswith("PCE_")]:
    del os.environ[_name]

from servers import PostgresServer, free_port  # noqa: E402

from assistant.knowledge.corpus import Corpus, load_corpus  # noqa: E402
from assistant.retrieval.embeddings import (  # noqa: E402
    HashEmbedder,
    SentenceTransformerEmbedder,
    bundled_model_dir,
)
from assistant.retrieval.index import VectorIndex, ensure_index  # noqa: E402
from assistant.settings import Settings  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DIR = REPO_ROOT.parent / "shared"


# --- network -------------------------------------------------------------------------------------


def _is_loopback(host: Any) -> bool:
    if not isinstance(host, str):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _block_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests may connect to and resolve 127.0.0.1/localhost/::1 only; integration tests are
    unrestricted."""
    if request.node.get_closest_marker("integration") is not None:
        return

    def guard(address: Any) -> None:
        if isinstance(address, (str, bytes)):  # AF_UNIX path
            return
        host = address[0] if isinstance(address, tuple) and address else address
        if not _is_loopback(host):
            raise OSError(f"network access blocked in unit tests: {address!r} (mark 'integration')")

    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_create_connection = socket.create_connection
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        guard(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        guard(address)
        return real_connect_ex(self, address)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        guard(address)  # before name resolution, so no DNS query leaves either
        return real_create_connection(address, *args, **kwargs)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        # A DNS query leaves the machine even when no connection follows (e.g. httpx, urllib3).
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and not _is_loopback(name):
            raise OSError(f"name resolution blocked in unit tests: {host!r} (mark 'integration')")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


# --- settings and embedders ----------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Shipped knowledge/, embedded index and user documents under this test's temp dir."""
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def hash_embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture(scope="session")
def real_embedder() -> SentenceTransformerEmbedder:
    """The bundled MiniLM, hash-checked and loaded once per session."""
    defaults = Settings()
    embedder = SentenceTransformerEmbedder(
        bundled_model_dir(), defaults.embedding_sha256, defaults.embedding_model_name
    )
    embedder.warm_up()
    return embedder


@dataclass(frozen=True)
class RealIndex:
    settings: Settings
    corpus: Corpus
    index: VectorIndex
    embedder: SentenceTransformerEmbedder


@pytest.fixture(scope="session")
def real_index(
    tmp_path_factory: pytest.TempPathFactory, real_embedder: SentenceTransformerEmbedder
) -> RealIndex:
    """Embedded Chroma over the shipped knowledge/, embedded with the real model, built once."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("real-index"))
    corpus = load_corpus(settings)
    index, _ = ensure_index(settings, corpus.passages, real_embedder, corpus.fingerprint)
    return RealIndex(settings, corpus, index, real_embedder)


# --- Chroma server -------------------------------------------------------------------------------



class ChromaServer:
    """``chroma run`` as a subprocess on loopback; output goes to a log file for failure reports."""

    def __init__(self, path: Path, port: int | None = None) -> None:
        self.path = path
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = path.parent / f"{path.name}-chroma-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> ChromaServer:
        executable = Path(sys.executable).parent / "chroma"
        if not executable.exists():
            pytest.fail(f"chroma executable not found next to {sys.executable}")
        self.path.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(executable), "run", "--path", str(self.path),
                 "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with opener.open(f"{self.url}/api/v2/heartbeat", timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        output = self.log.read_text(errors="replace")[-4000:]
        pytest.fail(f"Chroma server at {self.url} did not answer within {timeout:.0f} s:\n{output}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a Chroma server shared by the session."""
    server = ChromaServer(tmp_path_factory.mktemp("chroma-server") / "db").start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def chroma_server_factory() -> Iterator[Callable[..., ChromaServer]]:
    """Start extra servers (e.g. to stop and restart one); all are stopped after the test."""
    started: list[ChromaServer] = []

    def start(path: Path, port: int | None = None) -> ChromaServer:
        server = ChromaServer(path, port).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# --- PostgreSQL ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster on loopback shared by the session (Debian's postgresql package)."""
    server = PostgresServer().init()
    try:
        yield server
    finally:
        server.destroy()
