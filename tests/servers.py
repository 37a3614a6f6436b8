"""Servers for tests, on loopback only: a FastAPI app in a thread, and `pce-assistant serve`.

Shared by the UI, browser, end-to-end and load tests so that every server is started, waited
for (with a bound) and stopped the same way.
"""

from __future__ import annotations

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
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_app(app: FastAPI, start_timeout_s: float = 60) -> Iterator[str]:
    """uvicorn in a thread on a free loopback port; yields the base URL (with a trailing /)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@dataclass(frozen=True)
class ServeProcess:
    """A running `pce-assistant serve` with its own data directory and log."""

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


@contextlib.contextmanager
def serve_cli(root: Path, start_timeout_s: float = 600) -> Iterator[ServeProcess]:
    """`pce-assistant serve` on a free loopback port with a fresh data dir under ``root``.

    The bound is generous because the server builds its index with the real model first.
    """
    data_dir = root / "data"
    port = free_port()
    log = root / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCE_")}
    env.update(
        PCE_DATA_DIR=str(data_dir),
        HF_HUB_OFFLINE="1",
        ANONYMIZED_TELEMETRY="False",
        GRADIO_ANALYTICS_ENABLED="False",
        NO_COLOR="1",
    )
    executable = Path(sys.executable).parent / "pce-assistant"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(executable), "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    srv = ServeProcess(f"http://127.0.0.1:{port}", data_dir, process, log)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + start_timeout_s
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"serve exited with {process.returncode}:\n{srv.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve did not answer /healthz in time:\n{srv.tail()}")
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
