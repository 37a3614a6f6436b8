"""Several workers on real servers, on loopback: ``serve --workers 2`` with a ``chroma run`` server
and PostgreSQL (initdb + pg_ctl). Load with an exact audit count, then faults during load (a
worker killed, Chroma stopped, PostgreSQL stopped), and a concurrent first start.

Behaviour only, no timing assertions. Every loop is bounded in count, and every wait by a deadline.
In none of the faults may a collection be deleted: each test compares the collections' ids.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from conftest import ChromaServer
from servers import (
    PostgresServer,
    ServeProcess,
    _serve_env,
    pce_command,
    start_serve,
    stop_serve,
    wait_healthy,
)

from assistant.retrieval.index import Registry, open_client
from assistant.settings import Settings

pytestmark = pytest.mark.integration

# Fast and deterministic: in scope, findings from the text, one rule, the same answer every time.
QUESTION = "Asymptomatic peripheral cement emboli after kyphoplasty: anticoagulate?"
FALLBACK_NOTE = "keyword search"
CLIENTS = 16
REQUESTS_PER_CLIENT = 200
LOAD_DEADLINE_S = 1500  # a bound, not a measurement


# --- the stack ------------------------------------------------------------------------------------


@dataclass
class Stack:
    root: Path
    chroma: ChromaServer
    postgres: PostgresServer
    database: str
    serve: ServeProcess

    @property
    def spool(self) -> Path:
        return self.serve.data_dir / "audit-spool.jsonl"

    def spooled(self) -> int:
        try:
            return sum(1 for line in self.spool.read_text().splitlines() if line.strip())
        except FileNotFoundError:
            return 0

    def asks(self, user_prefix: str) -> list[str]:
        rows = self.postgres.query(
            "SELECT id FROM events WHERE kind = 'ask' AND \"user\" LIKE %s",
            f"{user_prefix}-%",
            database=self.database,
        )
        return [str(r[0]) for r in rows]

    def collections(self) -> dict[str, str]:
        """Name -> Chroma id of every passage collection, and the active pointer."""
        client = open_client(Settings(chroma_url=self.chroma.url, data_dir=self.root / "x"))
        found = {c.name: str(c.id) for c in client.list_collections() if c.name.startswith("pce-")}
        active = Registry(client, "pce", create=False).active()
        found["(active)"] = active.collection if active else ""
        return found


def run_index(chroma_url: str, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    """`pce-assistant index` against the server: the one writer."""
    with log.open("wb") as out:
        return subprocess.Popen(
            pce_command("index"),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_serve_env(data_dir, {"PCE_CHROMA_URL": chroma_url}),
        )


def _cmdline(process: psutil.Process) -> str:
    """The command line of a live process; "" for one that is gone or not yet reaped."""
    try:
        if process.status() == psutil.STATUS_ZOMBIE:
            return ""
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def api_workers(serve: ServeProcess) -> list[int]:
    """PIDs of the API pool's live worker processes (children of uvicorn's supervisor)."""
    for child in psutil.Process(serve.process.pid).children():
        if "api_worker_app" in _cmdline(child):
            return sorted(c.pid for c in child.children() if "spawn_main" in _cmdline(c))
    return []


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("scale")
    chroma = ChromaServer(root / "chroma").start()
    database = "pce_scale"
    audit_url = postgres.create_database(database)
    stack: Stack | None = None
    try:
        indexer = run_index(chroma.url, root / "data", root / "index.log")
        assert indexer.wait(timeout=600) == 0, (root / "index.log").read_text()
        serve = start_serve(
            root,
            workers=2,
            env={"PCE_CHROMA_URL": chroma.url, "PCE_AUDIT_URL": audit_url},
        )
        stack = Stack(root, chroma, postgres, database, serve)
        try:
            wait_healthy(serve, 600)
            yield stack
        finally:
            stop_serve(serve)
    finally:
        (stack.chroma if stack else chroma).stop()  # a fault test may have restarted it
        chroma.stop()
        if not postgres.running():
            postgres.start()


# --- load -----------------------------------------------------------------------------------------


@dataclass
class Reply:
    id: str
    worker: str
    notes: list[str]
    dense: bool
    at: float  # monotonic time the reply arrived


@dataclass
class Load:
    """Clients in threads posting asks; replies and errors collected as they come."""

    url: str
    user_prefix: str
    clients: int
    per_client: int
    replies: list[Reply] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def done(self) -> int:
        with self.lock:
            return len(self.replies) + len(self.errors)

    def _client(self, n: int, deadline: float) -> None:
        with httpx.Client(base_url=self.url, timeout=120, trust_env=False) as http:
            for i in range(self.per_client):
                if time.monotonic() > deadline:
                    with self.lock:
                        self.errors.append((time.monotonic(), f"client {n}: deadline at {i}"))
                    return
                body = {"question": QUESTION, "user": f"{self.user_prefix}-{n}"}
                try:
                    reply = http.post("/api/v1/ask", json=body)
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.errors.append((time.monotonic(), f"client {n}/{i}: {exc!r}"))
                    continue
                now = time.monotonic()
                with self.lock:
                    if reply.status_code != 200:
                        self.errors.append((now, f"client {n}/{i}: {reply.status_code} "
                                                 f"{reply.text[:200]}"))
                        continue
                    data = reply.json()
                    self.replies.append(Reply(
                        id=data["id"],
                        worker=reply.headers.get("x-pce-worker", ""),
                        notes=list(data["notes"]),
                        dense=any("dense" in p["ranks"] for p in data["passages"]),
                        at=now,
                    ))

    def run(self) -> None:
        deadline = time.monotonic() + LOAD_DEADLINE_S
        with ThreadPoolExecutor(max_workers=self.clients) as pool:
            for future in [pool.submit(self._client, n, deadline) for n in range(self.clients)]:
                future.result()


def wait_for(predicate: Any, what: str, timeout: float = 120, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(step)


@pytest.mark.timeout(LOAD_DEADLINE_S + 300)
def test_16_clients_x_200_asks_over_2_workers_give_0_errors_and_exactly_3200_audit_rows(
    stack: Stack,
) -> None:
    before = stack.collections()
    load = Load(stack.serve.url, "load", CLIENTS, REQUESTS_PER_CLIENT)
    load.run()
    assert load.errors == [], f"{len(load.errors)} errors: {load.errors[:5]}\n{stack.serve.tail()}"
    assert len(load.replies) == CLIENTS * REQUESTS_PER_CLIENT
    ids = [r.id for r in load.replies]
    assert len(set(ids)) == len(ids), "two responses share an answer id"
    assert all(r.dense and not r.notes for r in load.replies)
    assert len({r.worker for r in load.replies}) == 2, "both workers answered"
    wait_for(lambda: stack.spooled() == 0, "an empty spool")
    audited = stack.asks("load")
    assert len(audited) == CLIENTS * REQUESTS_PER_CLIENT == 3200
    assert len(set(audited)) == len(audited), "an id is audited twice"
    assert set(audited) == set(ids)
    assert stack.collections() == before


# --- the web UI through the front port ------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_the_web_ui_answers_through_the_front_port_of_the_worker_pool(stack: Stack) -> None:
    """Gradio's queue (join, then the event stream) must reach its one process: the routing."""
    from playwright.sync_api import expect, sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; `make test` installs it (make browser)")
    requests: list[str] = []
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = chromium.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.goto(stack.serve.url)
            box = page.locator("#pce-question textarea")
            expect(box).to_be_visible(timeout=60_000)
            box.fill(QUESTION)
            box.press("Enter")
            card = page.locator("#pce-card .pce-card")
            expect(card).to_have_attribute("data-tier", "surveillance", timeout=120_000)
            expect(page.locator("#pce-chat").get_by_test_id("bot").first).to_contain_text("[1]")
        finally:
            chromium.close()
    assert any("/gradio_api/queue/join" in u for u in requests)
    assert all(u.startswith(stack.serve.url) for u in requests if u.startswith("http")), (
        "every request of the page goes to the one front port"
    )


# --- faults during load ---------------------------------------------------------------------------


def test_a_killed_worker_is_restarted_while_the_other_keeps_answering(stack: Stack) -> None:
    before = stack.collections()
    victim, survivor = api_workers(stack.serve)
    load = Load(stack.serve.url, "kill", 8, 60)
    thread = threading.Thread(target=load.run)
    thread.start()
    wait_for(lambda: load.done() >= 60, "the load to get going")
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    thread.join(LOAD_DEADLINE_S)
    # At most the requests in flight on the killed worker fail (one per client).
    assert len(load.errors) <= load.clients, load.errors
    after_kill = [r for r in load.replies if r.at > killed_at]
    assert any(r.worker == str(survivor) for r in after_kill), "the other worker kept answering"
    assert len(load.replies) >= 8 * 60 - load.clients

    wait_for(lambda: len(api_workers(stack.serve)) == 2 and victim not in api_workers(stack.serve),
             "the pool to restart the killed worker", timeout=300)
    (new,) = set(api_workers(stack.serve)) - {survivor}
    # The new worker loads the model before it accepts; meanwhile the survivor answers alone.
    seen: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + 300
    with httpx.Client(base_url=stack.serve.url, timeout=120, trust_env=False) as http:
        while str(new) not in seen and time.monotonic() < deadline:
            reply = http.post("/api/v1/ask", json={"question": QUESTION, "user": "kill-after"})
            assert reply.status_code == 200, reply.text
            seen[reply.headers["x-pce-worker"]] += 1
            time.sleep(0.05)
    assert str(new) in seen, f"the restarted worker {new} never answered (saw {seen})"
    audited = set(stack.asks("kill"))
    assert {r.id for r in load.replies} <= audited, "an answered ask is missing from the audit"
    assert stack.collections() == before


def test_chroma_stopped_during_load_gives_keyword_answers_then_dense_again(stack: Stack) -> None:
    before = stack.collections()
    load = Load(stack.serve.url, "chroma", 8, 80)
    thread = threading.Thread(target=load.run)
    thread.start()
    wait_for(lambda: load.done() >= 80, "the load to get going")
    stack.chroma.stop()
    stopped_at = time.monotonic()
    wait_for(lambda: load.done() >= 240 or not thread.is_alive(), "answers during the outage")
    time.sleep(3)
    restarted_at = time.monotonic()
    stack.chroma = ChromaServer(stack.chroma.path, stack.chroma.port).start()
    thread.join(LOAD_DEADLINE_S)
    assert load.errors == [], load.errors[:5]
    during = [r for r in load.replies if stopped_at + 0.5 < r.at < restarted_at]
    assert during, "no answer arrived while Chroma was down"
    assert all(any(FALLBACK_NOTE in n for n in r.notes) and not r.dense for r in during)

    def dense_again() -> bool:
        reply = httpx.post(f"{stack.serve.url}/api/v1/ask", trust_env=False, timeout=120,
                           json={"question": QUESTION, "user": "chroma-after"}).json()
        return not reply["notes"] and any("dense" in p["ranks"] for p in reply["passages"])

    for _ in range(4):  # every worker is back on dense retrieval, not just one
        wait_for(dense_again, "dense retrieval to recover", timeout=120, step=0.5)
    assert stack.collections() == before


def test_postgres_stopped_during_load_spools_then_drains_to_an_exact_count(stack: Stack) -> None:
    before = stack.collections()
    load = Load(stack.serve.url, "pgstop", 8, 150)
    thread = threading.Thread(target=load.run)
    thread.start()
    wait_for(lambda: load.done() >= 150, "the load to get going")
    stack.postgres.stop()
    answered_at_stop = load.done()
    peak = 0

    def spool_fills() -> bool:
        nonlocal peak
        peak = max(peak, stack.spooled())
        return peak >= 50 or not thread.is_alive()

    wait_for(spool_fills, "the spool to fill")
    time.sleep(2)
    peak = max(peak, stack.spooled())
    stack.postgres.start()
    thread.join(LOAD_DEADLINE_S)
    assert load.errors == [], load.errors[:5]
    assert load.done() > answered_at_stop, "answers kept coming while PostgreSQL was down"
    assert peak > 0, "the spool never filled"
    wait_for(lambda: stack.spooled() == 0, "the spool to drain", timeout=180)
    audited = stack.asks("pgstop")
    assert len(audited) == 8 * 150 == len(set(audited))
    assert set(audited) == {r.id for r in load.replies}
    assert stack.collections() == before


# --- a concurrent first start ---------------------------------------------------------------------


@pytest.mark.timeout(1800)
def test_two_index_runs_and_four_workers_starting_together_end_with_one_active_collection(
    tmp_path: Path,
) -> None:
    chroma = ChromaServer(tmp_path / "chroma").start()
    try:
        env = {"PCE_CHROMA_URL": chroma.url}
        indexers = [run_index(chroma.url, tmp_path / "data", tmp_path / f"index-{i}.log")
                    for i in range(2)]
        serve = start_serve(tmp_path, workers=4, env=env, args=("--wait-index", "900"))
        try:
            codes = [p.wait(timeout=1200) for p in indexers]
            outputs = [(tmp_path / f"index-{i}.log").read_text() for i in range(2)]
            assert codes == [0, 0], outputs
            assert sum(o.startswith("Built collection") for o in outputs) == 1, outputs
            assert all("Traceback" not in o and "error" not in o.lower() for o in outputs)
            wait_healthy(serve, 1200)
            with httpx.Client(base_url=serve.url, timeout=120, trust_env=False) as http:
                workers = collections.Counter()
                for _ in range(40):
                    reply = http.post("/api/v1/ask", json={"question": QUESTION},
                                      headers={"Connection": "close"})
                    assert reply.status_code == 200, reply.text
                    data = reply.json()
                    assert not data["notes"], data["notes"]
                    assert any("dense" in p["ranks"] for p in data["passages"])
                    workers[reply.headers["x-pce-worker"]] += 1
                assert http.get("/").status_code == 200  # the UI, through the same port
            assert len(api_workers(serve)) == 4
            log = serve.tail()
            assert "Traceback" not in log and "error:" not in log, log
        finally:
            stop_serve(serve)
        client = open_client(Settings(chroma_url=chroma.url, data_dir=tmp_path / "x"))
        passages = [c for c in client.list_collections() if c.name.startswith("pce-")]
        assert len(passages) == 1 and passages[0].metadata["complete"] is True
        active = Registry(client, "pce", create=False).active()
        assert active is not None and active.collection == passages[0].name
    finally:
        chroma.stop()
