"""Shared helpers: percentiles, memory, the bench environment, questions and subprocesses."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
EVAL_QUESTIONS = REPO_ROOT / "evals" / "questions"
FALLBACK_QUESTIONS = BENCH_DIR / "questions.txt"
PYTHON = sys.executable
VENV_BIN = Path(PYTHON).parent


def bench_env(**extra: str) -> dict[str, str]:
    """Offline, no telemetry, and none of the developer's own PCE_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCE_")}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        ANONYMIZED_TELEMETRY="False",
        GRADIO_ANALYTICS_ENABLED="False",
        TOKENIZERS_PARALLELISM="false",
    )
    env.update(extra)
    return env


def apply_env() -> None:
    os.environ.update(bench_env())
    for name in [n for n in os.environ if n.startswith("PCE_")]:
        del os.environ[name]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); robust for the small samples we take."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary_ms(samples_s: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "min_ms": round(min(ms), 3),
    }


def time_calls(fn: Callable[[], Any], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def _status_mb(field: str, pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size now (Linux /proc), in MiB."""
    return _status_mb("VmRSS", pid)


def peak_rss_mb() -> float:
    """Peak resident set size of this process image (VmHWM; ru_maxrss survives exec)."""
    return _status_mb("VmHWM")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll a loopback URL until it answers 200; fail early if the process dies."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with status {process.returncode} before {url}")
        try:
            with opener.open(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def questions(limit: int | None = None) -> tuple[list[str], str]:
    """The eval questions (evals/questions/*.jsonl) if present, else bench/questions.txt."""
    found: list[str] = []
    for path in sorted(EVAL_QUESTIONS.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                question = json.loads(line).get("question")
                if isinstance(question, str) and question.strip():
                    found.append(question)
    origin = f"evals/questions/*.jsonl ({len(found)} questions)"
    if not found:
        lines = FALLBACK_QUESTIONS.read_text(encoding="utf-8").splitlines()
        found = [q for q in lines if q.strip() and not q.startswith("#")]
        origin = f"bench/questions.txt ({len(found)} questions)"
    return (found[:limit] if limit else found), origin


def run_json(code: str, env: dict[str, str], timeout: float) -> tuple[dict[str, Any], float]:
    """Run ``python -c code`` in a fresh interpreter; its last stdout line is JSON.

    Returns the JSON and the wall-clock time of the whole subprocess (interpreter start included).
    """
    start = time.perf_counter()
    proc = subprocess.run(
        [PYTHON, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"subprocess failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def ask_load(
    base: str, clients: int, requests: int, next_question: Callable[[], str], timeout: float
) -> dict[str, Any]:
    """Closed-loop load: ``clients`` threads each POST ``requests // clients`` questions to
    /api/v1/ask and wait for each answer. Counts errors and which worker answered (the
    ``x-pce-worker`` header), so the single-process and the multi-worker runs measure alike."""
    import collections
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    per_client = requests // clients
    latencies: list[float] = []
    errors: list[str] = []
    workers: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def client_loop() -> None:
        with httpx.Client(base_url=base, timeout=timeout, trust_env=False) as client:
            for _ in range(per_client):
                question = next_question()
                t0 = time.perf_counter()
                try:
                    reply = client.post("/api/v1/ask", json={"question": question})
                    ok = reply.status_code == 200
                    problem = f"{reply.status_code}: {reply.text[:120]}"
                    worker = reply.headers.get("x-pce-worker", "")
                except httpx.HTTPError as exc:
                    ok, problem, worker = False, repr(exc), ""
                elapsed = time.perf_counter() - t0
                with lock:
                    latencies.append(elapsed)
                    workers[worker] += 1
                    if not ok:
                        errors.append(problem)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for future in [pool.submit(client_loop) for _ in range(clients)]:
            future.result()
    wall = time.perf_counter() - start
    stats = summary_ms(latencies)
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:3],
        "wall_s": round(wall, 2),
        "rps": round(len(latencies) / wall, 1),
        "p50_ms": stats["p50_ms"],
        "p95_ms": stats["p95_ms"],
        "answered_by": len([w for w in workers if w]) or 1,
    }
