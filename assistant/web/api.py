"""HTTP API (FastAPI): ask, recommend, sources, feedback, health, and CDS Hooks 2.0.

Bound to loopback by the CLI unless configured; optional bearer token (PCE_API_TOKEN); bodies over
the size limit get 413; bad bodies get 422 with a message saying what to fix; no stack traces.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistant.assistant import Assistant
from assistant.errors import AssistantError, ConfigurationError, IndexUnavailableError, InputError
from assistant.types import AskRequest, ExplicitFindings
from assistant.web import cds

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 256 * 1024


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    findings: ExplicitFindings = Field(description="Structured findings only; no free text.")
    user: str | None = Field(default=None, max_length=200)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer_id: str = Field(min_length=1, max_length=100)
    rating: Literal["helpful", "not_helpful", "evidence_wrong"]
    comment: str | None = Field(default=None, max_length=4000)
    user: str | None = Field(default=None, max_length=200)


def _problem(error: Any) -> str:
    """'findings.symptomatic must be one of: ...' for our validators, 'field: message' otherwise."""
    where = ".".join(str(p) for p in error["loc"] if p != "body") or "body"
    message = str(error["msg"])
    if error["type"] != "value_error":
        return f"{where}: {message}"
    message = message.removeprefix("Value error, ")
    return message if message.startswith(f"{where}.") else f"{where} {message}"


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": message, **extra})


TOO_LARGE = f"Request body over {MAX_BODY_BYTES // 1024} KB; send less text."


class _BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(status_code=413, detail=TOO_LARGE)


class BodyLimit:
    """413 for a body over the limit, whether declared (Content-Length) or streamed (chunked).

    Checking the header alone would let a chunked request of any size be read into memory.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await _error(413, TOO_LARGE)(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge  # FastAPI turns it into a 413 response
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except _BodyTooLarge:
            if started:
                raise
            await _error(413, TOO_LARGE)(scope, receive, send)


def create_app(assistant: Assistant) -> FastAPI:
    settings = assistant.settings
    if settings.api_token is not None and not settings.api_token.get_secret_value().strip():
        # An empty token would accept "Authorization: Bearer " - refuse to start instead.
        raise ConfigurationError("PCE_API_TOKEN is set but empty; set a token or unset it.")
    app = FastAPI(
        title="PCE Assistant API",
        version=assistant.versions.app,
        description="Cited decision support for pulmonary cement embolism. The management tier "
        "comes only from a deterministic, cited decision table.",
    )
    app.state.assistant = assistant

    def require_token(request: Request) -> None:
        if settings.api_token is None:
            return
        expected = settings.api_token.get_secret_value()
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), expected):
            raise HTTPException(
                status_code=401,
                detail="Missing or wrong bearer token (Authorization: Bearer <PCE_API_TOKEN>).",
                headers={"WWW-Authenticate": "Bearer"},
            )

    auth = [Depends(require_token)]

    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)

    @app.exception_handler(RequestValidationError)
    async def on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_problem(e) for e in exc.errors()]
        return _error(422, "Invalid request: " + "; ".join(problems), errors=problems)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers a body that is not UTF-8 with a bare 400; it is a bad body like any
        # other, so 422 saying what to fix. Every other HTTPException keeps its default answer.
        if isinstance(exc.__cause__, UnicodeDecodeError):
            return _error(422, "Invalid request: the body is not valid UTF-8; send UTF-8 JSON.")
        return await http_exception_handler(request, exc)

    @app.exception_handler(InputError)
    async def on_input(_: Request, exc: InputError) -> JSONResponse:
        return _error(422, str(exc), field=exc.field)

    @app.exception_handler(IndexUnavailableError)
    async def on_index(_: Request, exc: IndexUnavailableError) -> JSONResponse:
        return _error(503, str(exc))

    @app.exception_handler(AssistantError)
    async def on_assistant(_: Request, exc: AssistantError) -> JSONResponse:
        return _error(500, str(exc))

    @app.exception_handler(Exception)
    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        ref = uuid.uuid4().hex[:8]
        log.exception("unexpected error (ref %s)", ref)
        return _error(500, f"Internal error (reference {ref}); the server log has details.")

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "versions": assistant.versions.model_dump(),
            "sources": len(assistant.sources),
            "passages": assistant.passage_count,
            "audit_failures": assistant.audit.failures if assistant.audit else 0,
        }

    @app.post("/api/v1/ask", dependencies=auth, tags=["answers"])
    def ask(body: AskRequest) -> dict[str, Any]:
        answer = assistant.ask(
            body.question,
            findings=body.findings,
            history=body.history,
            user=body.user,
            surface="http",
        )
        return answer.to_json()

    @app.post("/api/v1/recommend", dependencies=auth, tags=["answers"])
    def recommend(body: RecommendRequest) -> dict[str, Any]:
        findings, recommendation, event_id = assistant.recommend_from(
            body.findings, user=body.user, surface="http"
        )
        return {
            "id": event_id,
            "findings": findings.model_dump(mode="json"),
            "recommendation": recommendation.model_dump(mode="json"),
            "versions": assistant.versions.model_dump(),
        }

    @app.get("/api/v1/sources", dependencies=auth, tags=["knowledge"])
    def sources() -> dict[str, Any]:
        return {
            "knowledge_version": assistant.versions.knowledge,
            "sources": [
                s.model_dump(mode="json", exclude={"sections"})
                | {"sections": [{"id": x.id, "heading": x.heading} for x in s.sections]}
                for s in assistant.sources.values()
            ],
        }

    @app.post("/api/v1/feedback", dependencies=auth, tags=["answers"])
    def feedback(body: FeedbackRequest) -> dict[str, Any]:
        event = assistant.record_feedback(
            body.answer_id, body.rating, body.comment, user=body.user, surface="http"
        )
        return {"recorded": event is not None, "id": event}

    cds.register(app, assistant, auth)
    return app
