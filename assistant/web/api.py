"""HTTP API (FastAPI): ask, recommend, sources, feedback, health, and CDS Hooks 2.0.

The contract is the OpenAPI document: every request and response has a model, the constraints
the server enforces are written into the schema (so a schema-valid request is accepted and an
invalid one rejected), and every error, 4xx or 5xx, has one body, ``ErrorBody``. A method a
documented path does not declare gets 405 with ``Allow``.

Bound to loopback by the CLI unless configured; optional bearer token (PCE_API_TOKEN); bodies over
the size limit get 413; bad bodies get 422 with a message saying what to fix; no stack traces.
"""

import hmac
import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistant.assistant import Assistant
from assistant.errors import AssistantError, ConfigurationError, IndexUnavailableError, InputError
from assistant.types import (
    Answer,
    ExplicitFindings,
    Findings,
    Recommendation,
    Source,
    Versions,
)
from assistant.types import AskRequest as BaseAskRequest
from assistant.web import cds

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 256 * 1024
MAX_USER_CHARS = 200
# Control characters other than tab and line breaks, which the server refuses in text, as a
# regular-expression class body: the schema and the server agree. (Lone surrogates, refused too,
# are not Unicode text at all, and JSON-schema regex engines cannot name them.)
_REFUSED = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"


# --- errors --------------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """The one error body of this API (every 4xx and 5xx)."""

    detail: str = Field(description="What went wrong and what to do about it.")
    errors: list[str] | None = Field(default=None, description="Each invalid field, for a 422.")
    field: str | None = Field(default=None, description="The input field at fault, if one.")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (401, "Missing or wrong bearer token (only when PCE_API_TOKEN is set)."),
        (413, "Request body over the size limit."),
        (422, "Invalid request: the body says which field and what to fix."),
        (500, "Internal error; the body carries a reference for the server log."),
    )
}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "A backing store is unavailable."}
}


def _problem(error: Any) -> str:
    """'findings.symptomatic must be one of: ...' for our validators, 'field: message' otherwise."""
    where = ".".join(str(p) for p in error["loc"] if p != "body") or "body"
    message = str(error["msg"])
    if error["type"] != "value_error":
        return f"{where}: {message}"
    message = message.removeprefix("Value error, ")
    return message if message.startswith(f"{where}.") else f"{where} {message}"


def _error(status: int, message: str, headers: dict[str, str] | None = None,
           **extra: Any) -> JSONResponse:
    body = ErrorBody(detail=message, **extra).model_dump(exclude_none=True)
    return JSONResponse(status_code=status, content=body, headers=headers)


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


class MethodGuard:
    """405 with ``Allow`` for a method a documented path does not declare.

    Without it, such a request falls through to the web UI mounted at ``/`` and gets its 404.
    """

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self._allowed: dict[str, set[str]] | None = None

    def allowed(self) -> dict[str, set[str]]:
        if self._allowed is None:  # the routes are complete once requests arrive
            table: dict[str, set[str]] = {}
            for route in self.api.routes:
                if isinstance(route, APIRoute) and route.include_in_schema:
                    table.setdefault(route.path, set()).update(route.methods or ())
            self._allowed = table
        return self._allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        methods = self.allowed().get(scope.get("path", "")) if scope["type"] == "http" else None
        if methods is not None and scope["method"] not in methods:
            allow = ", ".join(sorted(methods))
            response = _error(
                405, f"{scope['method']} is not allowed here; use {allow}.", {"Allow": allow}
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


# --- request models (constraints from the settings, written into the schema) ----------------------


class HistoryMessage(BaseModel):
    """One earlier message; only the user's messages are read."""

    model_config = ConfigDict(extra="allow")

    role: str | None = Field(default="user", description="'user' messages are read; others not.")
    content: str = ""


def _text_schema(max_chars: int, *, required: bool) -> dict[str, Any]:
    body = rf"^[^{_REFUSED}]*[^\s{_REFUSED}][^{_REFUSED}]*$" if required else rf"^[^{_REFUSED}]*$"
    schema: dict[str, Any] = {"type": "string", "maxLength": max_chars, "pattern": body}
    if required:
        schema["minLength"] = 1
    return schema


def ask_request_model(max_chars: int, max_turns: int) -> type[BaseAskRequest]:
    """AskRequest with this server's limits in its schema (they are settings)."""

    def at_most(history: list[Any] | None) -> list[Any] | None:
        if history is not None and len(history) > max_turns:
            raise ValueError(
                f"has {len(history)} messages; the limit is {max_turns}. Send only the recent "
                "turns."
            )
        return history

    message = _text_schema(max_chars, required=False)
    history_schema = {
        "anyOf": [
            {
                "type": "array",
                "maxItems": max_turns,
                "items": {
                    "anyOf": [
                        message,
                        {
                            "type": "object",
                            "properties": {
                                "role": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                                "content": message,
                            },
                        },
                    ]
                },
            },
            {"type": "null"},
        ],
        "description": "Earlier messages of this conversation, oldest first: text, or "
        "{role, content}; only the user's are read.",
    }

    class AskRequest(BaseAskRequest):
        model_config = ConfigDict(extra="forbid")

        question: Annotated[str, WithJsonSchema(_text_schema(max_chars, required=True))] = Field(
            description="The clinician's question, free text: not blank, no control characters "
            "(tab and line breaks are fine), valid UTF-8."
        )
        history: Annotated[
            list[str | HistoryMessage] | None,
            AfterValidator(at_most),
            WithJsonSchema(history_schema),
        ] = None  # type: ignore[assignment]

    return AskRequest


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    findings: ExplicitFindings = Field(
        description="Structured findings only; no free text. Unknown findings are allowed: the "
        "table then answers needs_information and says what to ask."
    )
    user: str | None = Field(default=None, max_length=MAX_USER_CHARS)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer_id: str = Field(min_length=1, max_length=100)
    rating: Literal["helpful", "not_helpful", "evidence_wrong"]
    comment: str | None = Field(default=None, max_length=4000)
    user: str | None = Field(default=None, max_length=MAX_USER_CHARS)


# --- response models -----------------------------------------------------------------------------


class RecommendResponse(BaseModel):
    id: str = Field(description="Audit event id (for feedback).")
    findings: Findings
    recommendation: Recommendation
    versions: Versions


class SectionRef(BaseModel):
    id: str
    heading: str


class SourceSummary(Source):
    sections: tuple[SectionRef, ...] = ()  # type: ignore[assignment]


class SourcesResponse(BaseModel):
    knowledge_version: str
    sources: list[SourceSummary]


class FeedbackResponse(BaseModel):
    recorded: bool
    id: str | None = Field(description="Audit event id of the feedback, if it was recorded.")


class Health(BaseModel):
    status: Literal["ok"]
    versions: Versions
    sources: int
    passages: int
    audit_failures: int


# --- the app -------------------------------------------------------------------------------------


def _bearer(expected: str) -> Callable[..., None]:
    scheme = HTTPBearer(auto_error=False, description="PCE_API_TOKEN")

    def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(scheme)],
    ) -> None:
        token = credentials.credentials.strip() if credentials else ""
        if not hmac.compare_digest(token.encode(), expected.encode()):
            raise HTTPException(
                status_code=401,
                detail="Missing or wrong bearer token (Authorization: Bearer <PCE_API_TOKEN>).",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_token


def create_app(assistant: Assistant, *, clock: Callable[[], datetime] | None = None) -> FastAPI:
    """The API; ``clock`` fixes 'now' for the CDS service (tests replay dated records)."""
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
    auth = (
        [Depends(_bearer(settings.api_token.get_secret_value()))]
        if settings.api_token is not None
        else []
    )
    ask_body = ask_request_model(settings.max_question_chars, settings.max_history_turns)

    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.add_middleware(MethodGuard, api=app)

    @app.exception_handler(RequestValidationError)
    async def on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_problem(e) for e in exc.errors()]
        return _error(422, "Invalid request: " + "; ".join(problems), errors=problems)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers a body that is not UTF-8 with a bare 400; it is a bad body like any
        # other, so 422 saying what to fix. Every other HTTPException keeps its status.
        if isinstance(exc.__cause__, UnicodeDecodeError):
            return _error(422, "Invalid request: the body is not valid UTF-8; send UTF-8 JSON.")
        if isinstance(exc.detail, str):
            return _error(exc.status_code, exc.detail, dict(exc.headers or {}))
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

    @app.get(
        "/healthz", tags=["ops"], response_model=Health, operation_id="health",
        responses=ERROR_RESPONSES,
    )  # fmt: skip
    def healthz() -> Health:
        return Health(
            status="ok",
            versions=assistant.versions,
            sources=len(assistant.sources),
            passages=assistant.passage_count,
            audit_failures=assistant.audit.failures if assistant.audit else 0,
        )

    @app.post(
        "/api/v1/ask", dependencies=auth, tags=["answers"], response_model=Answer,
        operation_id="ask", responses=ERROR_RESPONSES | UNAVAILABLE,
    )  # fmt: skip
    def ask(body: ask_body) -> Answer:  # type: ignore[valid-type]
        request: BaseAskRequest = body
        if len(request.question) > settings.max_question_chars:
            raise InputError(
                f"The question is {len(request.question):,} characters long; the limit is "
                f"{settings.max_question_chars:,}. Shorten it to the clinical question and key "
                "findings."
            )
        history = [
            h.model_dump() if isinstance(h, HistoryMessage) else h for h in request.history or []
        ]
        return assistant.ask(
            request.question,
            findings=request.findings,
            history=history if request.history is not None else None,
            user=request.user,
            surface="http",
        )

    @app.post(
        "/api/v1/recommend", dependencies=auth, tags=["answers"],
        response_model=RecommendResponse, operation_id="recommend", responses=ERROR_RESPONSES,
    )  # fmt: skip
    def recommend(body: RecommendRequest) -> RecommendResponse:
        findings, recommendation, event_id = assistant.recommend_from(
            body.findings, user=body.user, surface="http"
        )
        return RecommendResponse(
            id=event_id,
            findings=findings,
            recommendation=recommendation,
            versions=assistant.versions,
        )

    @app.get(
        "/api/v1/sources", dependencies=auth, tags=["knowledge"], response_model=SourcesResponse,
        operation_id="listSources", responses=ERROR_RESPONSES,
    )  # fmt: skip
    def sources() -> SourcesResponse:
        return SourcesResponse(
            knowledge_version=assistant.versions.knowledge,
            sources=[
                SourceSummary(
                    **s.model_dump(exclude={"sections"}),
                    sections=tuple(SectionRef(id=x.id, heading=x.heading) for x in s.sections),
                )
                for s in assistant.sources.values()
            ],
        )

    @app.post(
        "/api/v1/feedback", dependencies=auth, tags=["answers"],
        response_model=FeedbackResponse, operation_id="feedback", responses=ERROR_RESPONSES,
    )  # fmt: skip
    def feedback(body: FeedbackRequest) -> FeedbackResponse:
        event = assistant.record_feedback(
            body.answer_id, body.rating, body.comment, user=body.user, surface="http"
        )
        return FeedbackResponse(recorded=event is not None, id=event)

    cds.register(app, assistant, auth, errors=ERROR_RESPONSES | UNAVAILABLE, clock=clock)
    return app
