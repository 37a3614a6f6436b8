"""Worker scaling: ``serve --workers N`` (N = 1, 2, 4) beside the single process, in one run.

Every configuration gets the same load: 16 clients (threads with one httpx.Client each, in this
process, sharing the machine's cores with the server), a fixed number of POST /api/v1/ask, the
eval questions cycled. The multi-worker layout runs as documented for a hospital: a ``chroma run``
server, PostgreSQL for the audit trail (initdb + pg_ctl on loopback, the tests' helper), the
front port's proxy, N API workers. The single process is measured twice: as ``make run`` serves
(embedded Chroma, SQLite) and on the same servers as the workers, so the proxy's cost shows.

Then, in a separate run (the sampler takes CPU too), one worker of a ``--workers 2`` layout is
profiled under the same load with py-spy (from outside, so the worker runs unmodified), and its
busy samples are put in buckets.
"""

from __future__ import annotations

import collections
import itertools
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    REPO_ROOT,
    VENV_BIN,
    ask_load,
    bench_env,
    free_port,
    questions,
    rss_mb,
    stop,
    wait_http,
)

CLIENTS = 16
# Where a worker's time goes: each py-spy sample is put in the first bucket one of its frames
# matches (most specific first).
# A sample whose innermost frame is one of these is a thread waiting (the event loop between
# requests, an idle pool thread), not work: counted apart.
WAITING = ("Runner.run (asyncio/runners.py", "Condition.wait (threading.py", "Event.wait (",
           "select (selectors.py", "_worker (concurrent/futures/thread.py")
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("audit insert (SQLAlchemy, psycopg)", ("assistant/audit.py",)),
    ("query embedding (sentence-transformers, torch)", ("sentence_transformers", "torch/")),
    ("Chroma query (HTTP client)", ("chromadb/",)),
    ("BM25 retrieve", ("bm25s/",)),
    ("findings, scope, rules", ("assistant/clinical/",)),
    ("compose the answer", ("assistant/answer/",)),
    ("rest of Assistant.ask", ("assistant/assistant.py",)),
    ("response model + JSON (pydantic, FastAPI)", ("pydantic", "fastapi/", "json/")),
    ("HTTP server (uvicorn, Starlette, anyio)", ("uvicorn/", "starlette/", "anyio/", "h11/",
                                                 "httptools")),
]


def _servers() -> Any:
    """The test suite's PostgreSQL helper: one implementation of initdb + pg_ctl as non-root."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    import servers

    return servers


class _Chroma:
    def __init__(self, path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        path.mkdir(parents=True, exist_ok=True)
        self.log = (path.parent / "chroma.log").open("wb")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "chroma"), "run", "--path", str(path), "--host", "127.0.0.1",
             "--port", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=bench_env(NO_COLOR="1"),
        )
        wait_http(f"{self.url}/api/v2/heartbeat", self.process, timeout=60)

    def stop(self) -> None:
        stop(self.process)
        self.log.close()


def _index(env: dict[str, str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("wb") as out:
        subprocess.run([str(VENV_BIN / "pce-assistant"), "index"], stdout=out,
                       stderr=subprocess.STDOUT, env=bench_env(**env), check=True, timeout=900)
    return time.perf_counter() - start


def _load(base: str, requests: int, next_question: Callable[[], str]) -> dict[str, Any]:
    return ask_load(base, CLIENTS, requests, next_question, timeout=120)


def _tree_rss_mb(pid: int) -> float:
    import psutil

    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


def _api_workers(pid: int) -> list[int]:
    import psutil

    def cmdline(p: Any) -> str:
        try:
            return "" if p.status() == psutil.STATUS_ZOMBIE else " ".join(p.cmdline())
        except psutil.Error:
            return ""

    for child in psutil.Process(pid).children():
        if "api_worker_app" in cmdline(child):
            return [c.pid for c in child.children() if "spawn_main" in cmdline(c)]
    return []


def _serve(
    label: str,
    work: Path,
    env: dict[str, str],
    workers: int | None,
    requests: int,
    next_question: Callable[[], str],
    profile: Path | None = None,
) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [str(VENV_BIN / "pce-assistant"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    log = (work / f"serve-{workers or 'single'}-{port}.log").open("wb")
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, env=bench_env(**env))
    try:
        wait_http(f"{base}/healthz", process, timeout=600)
        startup = time.perf_counter() - start
        import httpx

        with httpx.Client(base_url=base, timeout=120, trust_env=False) as client:
            for _ in range(4 * (workers or 1)):  # reach every worker once before measuring
                client.post("/api/v1/ask", json={"question": next_question()},
                            headers={"Connection": "close"})
        spy = None
        if profile is not None:
            victim = _api_workers(process.pid)[0]
            spy = subprocess.Popen(
                [str(VENV_BIN / "py-spy"), "record", "--pid", str(victim), "--rate", "200",
                 "--duration", "600", "--format", "raw", "--output", str(profile),
                 "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
        row = _load(base, requests, next_question)
        if spy is not None:
            spy.send_signal(2)  # SIGINT: py-spy writes what it has and exits
            spy.wait(timeout=60)
        row.update(label=label, workers=workers, startup_s=round(startup, 1),
                   rss_mb=round(_tree_rss_mb(process.pid), 1))
        return row
    finally:
        stop(process, timeout=60)
        log.close()


def buckets(raw: Path) -> dict[str, Any]:
    """Sample shares per bucket, and the hottest leaf functions, from py-spy's raw output."""
    shares: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = waiting = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if any(frames[-1].startswith(w) for w in WAITING):
            waiting += count
            continue
        total += count
        bucket = next((name for name, keys in BUCKETS
                       if any(k in f for f in frames for k in keys)), "other")
        shares[bucket] += count
        leaves[frames[-1]] += count
    return {
        "samples": total,
        "waiting_samples": waiting,
        "buckets": [(name, round(100 * n / total, 1)) for name, n in shares.most_common()]
        if total else [],
        "top_leaves": [(name, round(100 * n / total, 1)) for name, n in leaves.most_common(8)]
        if total else [],
    }


def run(workers: Sequence[int] = (1, 2, 4), requests: int = 384) -> dict[str, Any]:
    asked, origin = questions()
    lock = threading.Lock()
    cycle = itertools.cycle(asked)

    def next_question() -> str:
        with lock:
            return next(cycle)

    servers = _servers()
    work = Path(tempfile.mkdtemp(prefix="pce-bench-workers-"))
    pg = servers.PostgresServer().init()
    chroma = _Chroma(work / "chroma")
    rows: list[dict[str, Any]] = []
    profile = work / "worker.pyspy.raw"
    try:
        embedded = {"PCE_DATA_DIR": str(work / "embedded")}
        shared = {"PCE_DATA_DIR": str(work / "shared"), "PCE_CHROMA_URL": chroma.url,
                  "PCE_AUDIT_URL": pg.url}
        _index(embedded, work / "index-embedded.log")
        index_s = _index(shared, work / "index-server.log")
        rows.append(_serve("single process: embedded Chroma, SQLite (`make run`)", work,
                           embedded, None, requests, next_question))
        rows.append(_serve("single process: Chroma server, PostgreSQL", work, shared, None,
                           requests, next_question))
        for n in workers:
            rows.append(_serve(f"`serve --workers {n}`: Chroma server, PostgreSQL", work, shared,
                               n, requests, next_question))
        # Profiled apart: the sampler takes CPU too, so this run is not in the table.
        _serve("profile", work, shared, 2, requests // 2, next_question, profile=profile)
        spy = buckets(profile) if profile.exists() else {"samples": 0, "waiting_samples": 0,
                                                          "buckets": [], "top_leaves": []}
    finally:
        chroma.stop()
        pg.destroy()
        shutil.rmtree(work, ignore_errors=True)
    single = rows[0]["rps"] or float("nan")
    for row in rows:
        row["vs_single"] = round(row["rps"] / single, 2)
    return {
        "clients": CLIENTS,
        "requests": requests,
        "questions": origin,
        "server_index_build_s": round(index_s, 1),
        "rows": rows,
        "profile": spy,
        "bench_rss_mb": round(rss_mb(), 1),
    }
