"""``make bench``: every benchmark in one run; JSON + Markdown under bench/results/.

    python -m bench                 # the default run (a few minutes)
    python -m bench --full          # adds the 100k-passage scale run (embedded + server)
    python -m bench --only warm,rules
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import cold, report, scale, throughput, warm, workers
from bench.common import REPO_ROOT, RESULTS_DIR, apply_env, load_average

SECTIONS = ("build", "cold", "warm", "http", "workers", "scale")


def _environment() -> dict[str, Any]:
    def ver(name: str) -> str:
        try:
            return version(name)
        except Exception:
            return "?"

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
        check=False,
    ).stdout.strip()
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit or "?",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": __import__("os").cpu_count(),
        "packages": {p: ver(p) for p in ("pce-assistant", "torch", "sentence-transformers",
                                          "chromadb", "bm25s", "fastapi", "uvicorn")},
        "load_average_start": load_average(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="add the 100k-passage scale run")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    unknown = only - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    if only & {"cold", "warm", "http"}:
        only.add("build")  # they all need a freshly built index
    apply_env()

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    data_dir = work / "data"
    results: dict[str, Any] = {"environment": _environment(), "mode": _mode(args)}
    started = time.perf_counter()

    def section(name: str, fn: Any) -> None:
        print(f"[bench] {name} ...", flush=True)
        t0 = time.perf_counter()
        results[name] = fn()
        results.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t0, 1)

    if "build" in only:
        section("index_build", lambda: cold.index_build(data_dir))
    if "cold" in only:
        section("cold_start", lambda: cold.cold_start(
            data_dir, repeats=1 if args.quick else 3,
            collection=results["index_build"]["collection"]))
    if "warm" in only:
        section("warm", lambda: warm.run(data_dir, rounds=1 if args.quick else 2))
    if "http" in only:
        section("http", lambda: throughput.run(data_dir, levels=(1, 4, 16),
                                               requests=48 if args.quick else 192))
    if "workers" in only:
        section("workers", lambda: workers.run(workers=(1, 2, 4),
                                               requests=192 if args.quick else 384))
    if "scale" in only:
        sizes = [1_000] if args.quick else [1_000, 10_000]
        if args.full:
            sizes.append(100_000)
        section("scale", lambda: scale.run(sizes, queries=30 if args.quick else 50,
                                           server_sizes=sizes, timeout=1800))
    results["environment"]["load_average_end"] = load_average()
    results["total_seconds"] = round(time.perf_counter() - started, 1)

    (out / "bench.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "bench.md").write_text(report.markdown(results), encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    print(report.markdown(results))
    print(f"[bench] wrote {out / 'bench.json'} and {out / 'bench.md'} "
          f"in {results['total_seconds']} s", flush=True)
    return 0


def _mode(args: argparse.Namespace) -> str:
    return "quick" if args.quick else ("full" if args.full else "default")


if __name__ == "__main__":
    sys.exit(main())
