"""The multi-worker layout's parts without the model: the front port's routing and streaming, and
the supervisor's restarts. Small apps on loopback stand in for the API pool and the UI process."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from servers import serve_app

from assistant.cli import main
from assistant.web.server import (
    API_PREFIXES,
    STARTUP_FAILURE,
    Child,
    GaveUpError,
    Supervisor,
    proxy_app,
)


def _upstream(name: str) -> FastAPI:
    app = FastAPI()

    @app.get("/gradio_api/queue/data")
    async def events() -> StreamingResponse:
        async def stream() -> AsyncIterator[bytes]:
            for n in range(3):
                yield f"data: {n}\n\n".encode()
                await asyncio.sleep(0.05)

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def echo(path: str, request: Request) -> dict[str, object]:
        return {
            "served_by": name,
            "path": f"/{path}",
            "query": request.url.query,
            "body": (await request.body()).decode(),
            "host": request.headers.get("host"),
            "forwarded_for": request.headers.get("x-forwarded-for"),
        }

    return app


@dataclass
class FakeChild:
    name: str
    port: int


class FakeSupervisor:
    def __init__(self, api_port: int, ui_port: int) -> None:
        self.api = FakeChild("API pool", api_port)
        self.ui = FakeChild("UI process", ui_port)
        self.failure: str | None = None

    def check(self) -> None:
        pass


@pytest.fixture(scope="module")
def front() -> Iterator[str]:
    with serve_app(_upstream("api")) as api, serve_app(_upstream("ui")) as ui:
        api_port = int(api.rstrip("/").rsplit(":", 1)[1])
        ui_port = int(ui.rstrip("/").rsplit(":", 1)[1])
        with serve_app(proxy_app(FakeSupervisor(api_port, ui_port))) as url:  # type: ignore[arg-type]
            yield url.rstrip("/")


@pytest.mark.parametrize(
    ("path", "to"),
    [
        ("/api/v1/ask", "api"),
        ("/cds-services", "api"),
        ("/cds-services/pce-management", "api"),
        ("/healthz", "api"),
        ("/docs", "api"),
        ("/openapi.json", "api"),
        ("/", "ui"),
        ("/gradio_api/queue/join", "ui"),  # not /api/: Gradio's own routes stay with the UI
        ("/gradio_api/info", "ui"),
        ("/assets/index.js", "ui"),
    ],
)
def test_the_front_port_routes_the_api_to_the_pool_and_the_rest_to_the_ui(
    front: str, path: str, to: str
) -> None:
    reply = httpx.post(f"{front}{path}?a=1&b=x%20y", content=b'{"q": 1}', trust_env=False)
    assert reply.status_code == 200
    body = reply.json()
    assert body["served_by"] == to
    assert body["path"] == path and body["query"] == "a=1&b=x%20y"
    assert body["body"] == '{"q": 1}'
    assert body["host"] == front.removeprefix("http://"), "the client's Host reaches the app"
    assert body["forwarded_for"] == "127.0.0.1"


def test_api_prefixes_cover_every_api_route() -> None:
    assert {"/api/", "/cds-services", "/healthz", "/openapi.json"} <= set(API_PREFIXES)


def test_the_event_stream_arrives_whole_through_the_front_port(front: str) -> None:
    with httpx.stream("GET", f"{front}/gradio_api/queue/data", trust_env=False) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        assert "".join(reply.iter_text()) == "data: 0\n\ndata: 1\n\ndata: 2\n\n"


def test_a_dead_upstream_gives_502_with_a_message_not_a_hang() -> None:
    from servers import free_port

    with serve_app(proxy_app(FakeSupervisor(free_port(), free_port()))) as url:  # type: ignore[arg-type]
        reply = httpx.post(f"{url}api/v1/ask", json={}, trust_env=False, timeout=30)
    assert reply.status_code == 502
    assert "API pool is unavailable" in reply.json()["detail"]


# --- the supervisor ------------------------------------------------------------------------------


def _child(code: str, port: int = 1) -> Child:
    return Child("test child", [sys.executable, "-c", code], port)


def test_a_child_that_exits_is_restarted() -> None:
    child = _child("import time; time.sleep(0.2)")
    supervisor = Supervisor.__new__(Supervisor)
    supervisor.children = (child,)
    child.start()
    first = child.process
    assert first is not None
    first.wait(timeout=30)
    child.started -= 120  # it ran long enough: a crash, not a failure to start
    supervisor.check()
    assert child.process is not first and child.restarts == 1
    child.stop()


def test_a_child_that_reports_a_startup_failure_is_not_restarted() -> None:
    child = _child(f"raise SystemExit({STARTUP_FAILURE})")
    supervisor = Supervisor.__new__(Supervisor)
    supervisor.children = (child,)
    child.start()
    assert child.process is not None
    child.process.wait(timeout=30)
    with pytest.raises(GaveUpError, match="cannot start"):
        supervisor.check()


def test_a_child_that_keeps_dying_at_once_makes_the_supervisor_give_up() -> None:
    child = _child("raise SystemExit(1)")
    supervisor = Supervisor.__new__(Supervisor)
    supervisor.children = (child,)
    child.start()
    with pytest.raises(GaveUpError):
        for _ in range(10):  # bounded: it gives up after three quick deaths
            assert child.process is not None
            child.process.wait(timeout=30)
            supervisor.check()
            time.sleep(0.01)
    assert child.restarts == 2
    child.stop()


def test_serve_with_workers_needs_a_chroma_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PCE_DATA_DIR", str(tmp_path / "data"))
    assert main(["serve", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "PCE_CHROMA_URL" in err and "chroma run" in err and "Traceback" not in err
