"""Load on a real ``pce-assistant serve`` subprocess on loopback: 16 concurrent clients x 50 asks
with no error, and an audit trail holding every answer exactly once. Then bad traffic at the
socket level, after which the same worker still answers.

Behaviour only: no timing is asserted (the machine is shared). Loops are bounded in count, and the
whole run by a deadline.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from servers import ServeProcess, serve_cli

pytestmark = pytest.mark.integration

CLIENTS = 16
# The 3,200-ask figure runs over the worker pool (tests/test_scale.py); one process gets a
# shorter run of the same shape, which checks the same property (nothing lost or doubled).
REQUESTS_PER_CLIENT = 50
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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """``pce-assistant serve`` on 127.0.0.1 with its own data directory (it builds the index)."""
    with serve_cli(tmp_path_factory.mktemp("load")) as srv:
        yield srv


def test_server_listens_on_loopback_only(server: ServeProcess) -> None:
    host, port = server.host_port
    assert host == "127.0.0.1"
    with socket.create_connection((host, port), timeout=5):
        pass


@pytest.mark.timeout(DEADLINE_S + 300)
def test_16_concurrent_clients_all_answered_and_each_audited_exactly_once(
    server: ServeProcess,
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


def _raw(server: ServeProcess, payload: bytes) -> bytes:
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


def test_bad_traffic_never_takes_the_worker_down(server: ServeProcess) -> None:
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
