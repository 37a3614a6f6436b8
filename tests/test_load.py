"""Load on a real ``pce-assistant serve`` subprocess on loopback: 16 concurrent clients x 200 asks
with no error, and an audit trail holding every answer exactly once. Then bad traffic at the
socket level, after which the same worker still answers.

Behaviour only: no timing is asserted (the machine is shared). Loops are bounded in count, and the
whole run by a deadline.
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

CLIENTS = 16
REQUESTS_PER_CLIENT = 200
DEADLINE_S = 1500  # a bound, not a measurement: the load stops here even if unfinished
QUESTIONS = [
    "Asymptomatic peripheral cement emboli after kyphoplasty: anticoagulate?",
    "Dyspnoea and chest pain after L1 vertebroplasty; CT shows cement in the left main pulmonary "
    "artery. What is the next step?",
    "How often does pulmonary cement embolism occur after vertebroplasty?",
    "Is PMMA thrombogenic?",
    "Hypotensive after vertebroplasty, echo shows cement in the right ventricle. What now?",
    "Cement emboli seen on CT after kyphoplasty. How should we manage them?",
    "Does leakage into the azygos vein predict pulmonary cement embolism?",
    "DVT after hip replacement: how long should I anticoagulate?",  # out of scope, still audited
]


@dataclass(frozen=True)
class Server:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def host_port(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").split(":")
        return host, int(port)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def ask_rows(self, user: str | None = None) -> list[str]:
        """Answer ids of the audited asks (read-only: the server owns the database)."""
        path = self.data_dir / "audit.sqlite3"
        if not path.exists():  # created by the first audited event
            return []
        query = "SELECT id FROM events WHERE kind = 'ask'" + (" AND user = ?" if user else "")
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return [row[0] for row in conn.execute(query, (user,) if user else ())]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``pce-assistant serve`` on 127.0.0.1 with its own data directory (it builds the index)."""
    root = tmp_path_factory.mktemp("load")
    data_dir = root / "data"
    port = _free_port()
    log = root / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCE_")}
    env.update(PCE_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1", ANONYMIZED_TELEMETRY="False",
               GRADIO_ANALYTICS_ENABLED="False")
    executable = Path(sys.executable).parent / "pce-assistant"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(executable), "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )
    srv = Server(f"http://127.0.0.1:{port}", data_dir, process, log)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 600  # index build with the real model on a busy machine
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"serve exited with {process.returncode}:\n{srv.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"serve did not answer /healthz in time:\n{srv.tail()}")
            try:
                with opener.open(f"{srv.url}/healthz", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        yield srv
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def test_server_listens_on_loopback_only(server: Server) -> None:
    host, port = server.host_port
    assert host == "127.0.0.1"
    with socket.create_connection((host, port), timeout=5):
        pass


@pytest.mark.timeout(DEADLINE_S + 300)
def test_16_clients_x_200_asks_all_answered_and_each_audited_exactly_once(
    server: Server,
) -> None:
    before = len(server.ask_rows())
    deadline = time.monotonic() + DEADLINE_S
    answers: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=120, trust_env=False) as http:
            for i in range(REQUESTS_PER_CLIENT):
                if time.monotonic() > deadline:
                    with lock:
                        errors.append(f"client {n}: deadline reached at request {i}")
                    return
                question = QUESTIONS[(n + i) % len(QUESTIONS)]
                try:
                    reply = http.post(
                        "/api/v1/ask", json={"question": question, "user": f"load-{n}"}
                    )
                except httpx.HTTPError as exc:
                    with lock:
                        errors.append(f"client {n} request {i}: {exc!r}")
                    continue
                with lock:
                    if reply.status_code == 200:
                        answers.append(reply.json()["id"])
                    else:
                        errors.append(f"client {n} request {i}: {reply.status_code} "
                                      f"{reply.text[:200]}")

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        for future in [pool.submit(client, n) for n in range(CLIENTS)]:
            future.result()

    assert server.process.poll() is None, f"the server died:\n{server.tail()}"
    assert errors == [], f"{len(errors)} error(s), first: {errors[:5]}\n{server.tail()}"
    assert len(answers) == CLIENTS * REQUESTS_PER_CLIENT

    audited = server.ask_rows()
    assert len(audited) - before == CLIENTS * REQUESTS_PER_CLIENT  # nothing lost or duplicated
    for n in range(CLIENTS):
        assert len(server.ask_rows(f"load-{n}")) == REQUESTS_PER_CLIENT
    counts = collections.Counter(audited)
    assert all(counts[a] == 1 for a in answers), "an answer id is missing or audited twice"
    assert len(set(answers)) == len(answers), "two responses share an answer id"
    health = httpx.get(f"{server.url}/healthz", trust_env=False).json()
    assert health["audit_failures"] == 0


def _raw(server: Server, payload: bytes) -> bytes:
    """Send bytes on a fresh connection while reading; return what came back.

    The server may answer (413) and close before it has read everything we send, so sending runs
    in a thread and its broken pipe is expected.
    """
    with socket.create_connection(server.host_port, timeout=30) as sock:

        def send() -> None:
            with contextlib.suppress(OSError):
                sock.sendall(payload)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError:  # reset after the answer, or the read timeout
            pass
        sender.join(timeout=30)
    return b"".join(chunks)


def _request(body: bytes, *, chunked: bool = False) -> bytes:
    head = (b"POST /api/v1/ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\n")
    if not chunked:
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    pieces = [body[i : i + 8192] for i in range(0, len(body), 8192)]
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    return head + b"Transfer-Encoding: chunked\r\n\r\n" + encoded


def test_bad_traffic_never_takes_the_worker_down(server: Server) -> None:
    before = len(server.ask_rows())
    replies = {
        "invalid-utf8": _raw(server, _request(b'{"question": "cement \xff\xfe embolism"}')),
        "chunked-over-limit": _raw(server, _request(b'{"question": "' + b"x" * 400_000 + b'"}',
                                                    chunked=True)),
        "declared-over-limit": _raw(server, _request(b"{" + b" " * 300_000 + b"}")[:400]),
        "truncated-json": _raw(server, _request(b'{"question": ')),
        "not-http": _raw(server, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n"),
    }
    assert replies["invalid-utf8"].startswith(b"HTTP/1.1 422")
    assert replies["chunked-over-limit"].startswith(b"HTTP/1.1 413")
    assert replies["declared-over-limit"].startswith(b"HTTP/1.1 413")
    assert replies["truncated-json"].startswith(b"HTTP/1.1 422")
    assert not replies["not-http"].startswith(b"HTTP/1.1 5")
    for reply in replies.values():
        assert b"Traceback" not in reply

    assert server.process.poll() is None, f"the server died:\n{server.tail()}"
    ok = httpx.post(f"{server.url}/api/v1/ask", json={"question": QUESTIONS[0]},
                    trust_env=False, timeout=120)
    assert ok.status_code == 200 and ok.json()["recommendation"]["tier"] == "surveillance"
    assert len(server.ask_rows()) == before + 1  # bad traffic recorded nothing
