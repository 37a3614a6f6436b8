"""HTTP throughput of ``pce-assistant serve`` on loopback: POST /api/v1/ask at 1, 4, 16 clients.

A fixed number of requests per level, questions cycled from the eval set. The clients run in this
process (threads, one httpx.Client each) and share the machine's two cores with the server, as a
co-located reverse proxy or EHR bridge would.
"""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    VENV_BIN,
    ask_load,
    bench_env,
    free_port,
    questions,
    rss_mb,
    stop,
    wait_http,
)


def run(data_dir: Path, levels: Sequence[int], requests: int) -> dict[str, Any]:
    import httpx

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = data_dir.parent / "serve.log"
    log = log_path.open("wb")
    start = time.perf_counter()
    process = subprocess.Popen(
        [str(VENV_BIN / "pce-assistant"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=bench_env(PCE_DATA_DIR=str(data_dir)),
    )
    try:
        wait_http(f"{base}/healthz", process, timeout=180)
        startup_s = time.perf_counter() - start
        asked, _ = questions()
        lock = threading.Lock()
        cycle = itertools.cycle(asked)

        def next_question() -> str:
            with lock:
                return next(cycle)

        with httpx.Client(base_url=base, timeout=60, trust_env=False) as client:
            for question in asked[:8]:
                client.post("/api/v1/ask", json={"question": question})
        rows = []
        for level in levels:
            rows.append(_level(base, level, requests, next_question))
        return {
            "requests_per_level": requests,
            "server_startup_s": round(startup_s, 2),
            "server_rss_mb": round(rss_mb(process.pid), 1),
            "levels": rows,
        }
    finally:
        stop(process)
        log.close()


def _level(base: str, clients: int, requests: int, next_question: Any) -> dict[str, Any]:
    result = ask_load(base, clients, requests, next_question, timeout=60)
    result.pop("answered_by")  # one process answers them all
    return {"clients": clients, **result}
