"""The web server: one process (the default), or a supervised pool of workers behind one port.

One process (``pce-assistant serve``): HTTP API + CDS Hooks, with the Gradio UI mounted at ``/``.

Several workers (``pce-assistant serve --workers N``)::

    clients ──> front port (this process: a small streaming reverse proxy + the supervisor)
                 ├─ /api/, /cds-services, /healthz, /docs, /openapi.json ──> API pool
                 │        uvicorn --workers N (an app factory per worker; uvicorn's own
                 │        supervisor restarts a worker that dies or hangs)
                 └─ everything else (the Gradio UI and its queue) ──────────> one UI process

Gradio's queue lives in one process (its join and data requests must reach the same one), so the
UI runs once and the stateless API scales. This process restarts the pool or the UI process if
either exits, and gives up (exit 2) when one fails again and again right after starting.
Behind a reverse proxy of your own (nginx: README), give fixed ``--api-port`` and ``--ui-port``
and route to them directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

from assistant.assistant import Assistant
from assistant.errors import AssistantError, IndexUnavailableError
from assistant.settings import Settings
from assistant.web.api import create_app

log = logging.getLogger(__name__)

API_PREFIXES = ("/api/", "/cds-services", "/healthz", "/docs", "/redoc", "/openapi.json")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
}
STARTUP_FAILURE = 3  # uvicorn's exit status for "the app could not start": do not restart
FAST_FAILURE_S = 60.0  # a child that exits sooner than this after starting failed to start
MAX_FAST_FAILURES = 3
START_TIMEOUT_S = 900.0


def build_app(
    settings: Settings | None = None,
    assistant: Assistant | None = None,
    *,
    index_required: bool = True,
) -> FastAPI:
    """Build the assistant (validating knowledge, rules, index), warm it, mount the UI."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    assistant = assistant or Assistant.from_settings(settings, index_required=index_required)
    _warm(assistant)
    app = create_app(assistant)
    from assistant.web.ui import mount_ui

    return mount_ui(app, assistant)


def _warm(assistant: Assistant) -> None:
    try:
        assistant.warm_up()
    except IndexUnavailableError as exc:  # a restarted worker during an outage still serves
        log.warning("index unreachable while warming up (%s); keyword search until it is back", exc)


def _worker_start(build: Any) -> FastAPI:
    """Run an app factory; a clear one-line error and uvicorn's 'do not restart' status."""
    try:
        return build()
    except AssistantError as exc:
        print(f"error: worker {os.getpid()} cannot start: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(STARTUP_FAILURE) from exc


def api_worker_app() -> FastAPI:
    """uvicorn app factory for one API worker (settings from PCE_* set by ``serve``)."""

    def build() -> FastAPI:
        assistant = Assistant.from_settings(Settings(), index_required=False)
        _warm(assistant)
        app = create_app(assistant)

        @app.middleware("http")
        async def worker_id(request: Any, call_next: Any) -> Any:
            response = await call_next(request)
            response.headers["X-PCE-Worker"] = str(os.getpid())  # which worker answered
            return response

        return app

    return _worker_start(build)


def ui_app() -> FastAPI:
    """uvicorn app factory for the one UI process (the Gradio queue needs a single process)."""
    return _worker_start(lambda: build_app(Settings(), index_required=False))


# --- the supervised layout ------------------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM if the supervisor dies, so no worker outlives it."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    """One supervised process: the API pool or the UI."""

    name: str
    argv: list[str]
    port: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    fast_failures: int = 0
    restarts: int = 0
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self.started = time.monotonic()
        log.warning("%s started (pid %d, 127.0.0.1:%d)", self.name, self.process.pid, self.port)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)


class GaveUpError(Exception):
    pass


class Supervisor:
    def __init__(self, host: str, port: int, workers: int, api_port: int, ui_port: int) -> None:
        self.host = host
        self.port = port
        uvicorn_cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "--host",
            "127.0.0.1",
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        # One intra-op thread per worker: the workers, not torch, share the cores.
        env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        self.api = Child(
            "API pool",
            [
                *uvicorn_cmd,
                "--port",
                str(api_port),
                "--workers",
                str(workers),
                "--timeout-worker-healthcheck",
                "30",
                "assistant.web.server:api_worker_app",
            ],
            api_port,
            env=env,
        )
        self.ui = Child(
            "UI process",
            [*uvicorn_cmd, "--port", str(ui_port), "assistant.web.server:ui_app"],
            ui_port,
            env=env,
        )
        self.children = (self.api, self.ui)
        self.failure: str | None = None

    def start(self) -> None:
        for child in self.children:
            child.start()

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Until both answer /healthz; raises GaveUpError if one exits or the time runs out."""
        import httpx

        deadline = time.monotonic() + timeout
        waiting = list(self.children)
        with httpx.Client(trust_env=False, timeout=5) as http:
            while waiting:
                for child in list(waiting):
                    assert child.process is not None
                    if child.process.poll() is not None:
                        raise GaveUpError(
                            f"{child.name} exited with status {child.process.returncode} "
                            "while starting (its error is above)"
                        )
                    with contextlib.suppress(httpx.HTTPError):
                        if http.get(f"http://127.0.0.1:{child.port}/healthz").status_code == 200:
                            waiting.remove(child)
                if time.monotonic() > deadline:
                    raise GaveUpError(
                        f"{', '.join(c.name for c in waiting)} did not start in {timeout:.0f} s"
                    )
                if waiting:
                    time.sleep(0.5)

    def check(self) -> None:
        """Restart a child that exited; GaveUpError if it keeps failing at start."""
        for child in self.children:
            assert child.process is not None
            code = child.process.poll()
            if code is None:
                if time.monotonic() - child.started > FAST_FAILURE_S:
                    child.fast_failures = 0
                continue
            quick = time.monotonic() - child.started < FAST_FAILURE_S
            child.fast_failures = child.fast_failures + 1 if quick else 0
            if code == STARTUP_FAILURE or child.fast_failures >= MAX_FAST_FAILURES:
                raise GaveUpError(
                    f"{child.name} cannot start (exit status {code}); see its error above"
                )
            child.restarts += 1
            log.error("%s exited with status %s; restarting it", child.name, code)
            child.start()

    def stop(self) -> None:
        for child in self.children:
            child.stop()


def proxy_app(supervisor: Supervisor) -> Any:
    """The front port: routes by path, streams both ways (Gradio's SSE included), supervises."""
    import httpx
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        timeout = httpx.Timeout(connect=5.0, read=None, write=60.0, pool=60.0)
        # A new connection per API request: the kernel hands each to a worker waiting in accept,
        # so a restarted worker gets its share at once (pooled keep-alive connections would
        # stay with the workers that happened to accept them first).
        state["api"] = httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=0),
            trust_env=False,
        )
        state["ui"] = httpx.AsyncClient(  # one UI process: keep-alive is free
            timeout=timeout,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=32),
            trust_env=False,
        )
        watcher = asyncio.create_task(watch())
        try:
            yield
        finally:
            watcher.cancel()
            await state["api"].aclose()
            await state["ui"].aclose()

    async def watch() -> None:
        while True:
            await asyncio.sleep(0.5)
            try:
                supervisor.check()  # in this thread: a child's death signal follows its forker
            except GaveUpError as exc:
                supervisor.failure = str(exc)
                log.error("%s; stopping", exc)
                os.kill(os.getpid(), signal.SIGTERM)  # uvicorn shuts the front port down
                return

    async def forward(request: Request) -> Response:
        path = request.url.path
        to_api = path.startswith(API_PREFIXES)
        child = supervisor.api if to_api else supervisor.ui
        url = httpx.URL(
            f"http://127.0.0.1:{child.port}{path}", query=request.url.query.encode("latin-1")
        )
        headers = [
            (k, v) for k, v in request.headers.raw if k.decode("latin-1").lower() not in HOP_BY_HOP
        ]
        client_host = request.client.host if request.client else ""
        headers += [
            (b"x-forwarded-for", client_host.encode()),
            (b"x-forwarded-proto", request.url.scheme.encode()),
        ]
        body = await request.body()
        http: httpx.AsyncClient = state["api" if to_api else "ui"]
        upstream = None
        for attempt in range(2):
            try:
                upstream = await http.send(
                    http.build_request(request.method, url, headers=headers, content=body),
                    stream=True,
                )
                break
            except httpx.ConnectError:  # nothing was sent: safe to try once more
                if attempt:
                    break
                await asyncio.sleep(0.2)
            except httpx.HTTPError as exc:
                log.error("proxy: %s %s -> %s: %r", request.method, path, child.name, exc)
                break
        if upstream is None:
            return JSONResponse(
                {"detail": f"{child.name} is unavailable; try again shortly."}, status_code=502
            )
        out_headers = {
            k: v for k, v in upstream.headers.multi_items() if k.lower() not in HOP_BY_HOP
        }
        return StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            headers=out_headers,
            background=BackgroundTask(upstream.aclose),
        )

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


@contextlib.contextmanager
def _supervised(supervisor: Supervisor) -> Iterator[None]:
    try:
        supervisor.start()
        yield
    finally:
        supervisor.stop()


def serve_workers(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    *,
    api_port: int | None = None,
    ui_port: int | None = None,
) -> int:
    """Run the pool, the UI process and the front port until stopped; returns an exit status."""
    import uvicorn

    api_port = api_port or _free_port()
    ui_port = ui_port or _free_port()
    supervisor = Supervisor(host, port, workers, api_port, ui_port)
    with _supervised(supervisor):
        try:
            supervisor.wait_ready()
        except GaveUpError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(
            f"PCE Assistant on http://{host}:{port}/ ({workers} API worker(s) on 127.0.0.1:"
            f"{api_port}, UI on 127.0.0.1:{ui_port}; API docs at /docs)",
            flush=True,
        )
        uvicorn.run(
            proxy_app(supervisor),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    if supervisor.failure:
        print(f"error: {supervisor.failure}", file=sys.stderr)
        return 2
    return 0


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
