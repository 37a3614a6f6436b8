"""Servers for tests, on loopback only: a FastAPI app in a thread, and `pce-assistant serve`.

Shared by the UI, browser, end-to-end and load tests so that every server is started, waited
for (with a bound) and stopped the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
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


def _serve_env(data_dir: Path, extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCE_")}
    env.update(
        PCE_DATA_DIR=str(data_dir),
        HF_HUB_OFFLINE="1",
        ANONYMIZED_TELEMETRY="False",
        GRADIO_ANALYTICS_ENABLED="False",
        NO_COLOR="1",
    )
    env.update(extra or {})
    return env


def pce_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "pce-assistant"), *args]


def start_serve(
    root: Path,
    *,
    workers: int | None = None,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> ServeProcess:
    """Start `pce-assistant serve` (optionally ``--workers N``) without waiting for it."""
    data_dir = root / "data"
    port = free_port()
    log = root / "serve.log"
    argv = pce_command("serve", "--host", "127.0.0.1", "--port", str(port), *args)
    if workers is not None:
        argv += ["--workers", str(workers)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_serve_env(data_dir, env),
        )
    return ServeProcess(f"http://127.0.0.1:{port}", data_dir, process, log)


def wait_healthy(srv: ServeProcess, timeout_s: float = 600) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout_s
    while True:
        if srv.process.poll() is not None:
            raise RuntimeError(f"serve exited with {srv.process.returncode}:\n{srv.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"serve did not answer /healthz in time:\n{srv.tail()}")
        try:
            with opener.open(f"{srv.url}/healthz", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)


def stop_serve(srv: ServeProcess) -> None:
    srv.process.terminate()
    try:
        srv.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        srv.process.kill()
        srv.process.wait(timeout=30)


@contextlib.contextmanager
def serve_cli(
    root: Path,
    start_timeout_s: float = 600,
    *,
    workers: int | None = None,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> Iterator[ServeProcess]:
    """`pce-assistant serve` on a free loopback port with a fresh data dir under ``root``.

    The bound is generous because the server builds its index with the real model first.
    """
    srv = start_serve(root, workers=workers, env=env, args=args)
    try:
        wait_healthy(srv, start_timeout_s)
        yield srv
    finally:
        stop_serve(srv)


# --- PostgreSQL ----------------------------------------------------------------------------------


def _pg_bin(name: str) -> str:
    """Debian keeps the server programs in /usr/lib/postgresql/<version>/bin, off the PATH."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if not candidates:
        raise RuntimeError(f"{name} not found: install Debian's postgresql (make postgres)")
    return str(candidates[-1])


class PostgresServer:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free loopback port.

    PostgreSQL refuses to run as root, so under root (as in CI) its programs run as the
    ``postgres`` user that Debian's package creates, in a directory that user owns.
    """

    user = "pce"
    database = "pce_audit"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pce-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self.url = (
            f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{self.database}"
        )

    def _run(self, *argv: str, timeout: float = 120) -> None:
        command = list(argv)
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}\n{tail}")

    def init(self) -> PostgresServer:
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust",
                  "-E", "UTF8", "--no-instructions")
        self.start()
        import psycopg

        admin = f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.database}")
        return self

    def start(self) -> None:
        options = (f"-p {self.port} -h 127.0.0.1 -k {self.dir} -c fsync=off "
                   "-c max_connections=200")
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self, name: str) -> str:
        """A fresh database on this server; returns its SQLAlchemy URL."""
        import psycopg

        admin = f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{name}"

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def query(
        self, sql: str, *params: object, database: str | None = None
    ) -> list[tuple[object, ...]]:
        import psycopg

        dbname = database or self.database
        dsn = f"host=127.0.0.1 port={self.port} user={self.user} dbname={dbname}"
        with psycopg.connect(dsn) as conn:
            cursor = conn.execute(sql, params)  # type: ignore[arg-type]
            return list(cursor.fetchall()) if cursor.description else []

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            if self.running():
                self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
