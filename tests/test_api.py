"""The HTTP API through FastAPI's TestClient: shapes, 422/413/401, OpenAPI, concurrency, audit."""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pydantic
import pytest
from fastapi.testclient import TestClient

from assistant import Assistant, Settings
from assistant.errors import IndexUnavailableError
from assistant.retrieval.embeddings import HashEmbedder
from assistant.types import ExplicitFindings
from assistant.web.api import MAX_BODY_BYTES, ErrorBody, create_app

ASK = "/api/v1/ask"
QUESTION = "Asymptomatic peripheral cement emboli after kyphoplasty: anticoagulate?"
TRACE_MARKERS = ("Traceback", 'File "', "site-packages", "raise ")


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assistant]:
    data_dir = tmp_path_factory.mktemp("api") / "data"
    yield Assistant.from_settings(Settings(data_dir=data_dir), embedder=HashEmbedder())


@pytest.fixture(scope="module")
def client(assistant: Assistant) -> Iterator[TestClient]:
    with TestClient(create_app(assistant), raise_server_exceptions=False) as test_client:
        yield test_client


def assert_clean_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    for marker in TRACE_MARKERS:
        assert marker not in response.text
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def audit_rows(assistant: Assistant, user: str) -> int:
    with sqlite3.connect(assistant.settings.audit_path) as conn:
        return int(
            conn.execute("SELECT count(*) FROM events WHERE user = ?", (user,)).fetchone()[0]
        )


# --- shapes ------------------------------------------------------------------------------------


def test_ask_returns_the_answer_json(client: TestClient) -> None:
    response = client.post(
        ASK,
        json={"question": QUESTION, "findings": {"symptomatic": "no"}, "user": "dr-shape"},
    )
    assert response.status_code == 200
    body = response.json()
    for field in ("id", "in_scope", "text", "citations", "recommendation", "findings", "versions"):
        assert field in body
    assert body["in_scope"] is True
    assert body["recommendation"]["tier"] == "surveillance"
    assert body["citations"] and body["citations"][0]["n"] == 1
    assert body["versions"]["rules"].startswith("2026.")


def test_ask_with_history_messages(client: TestClient) -> None:
    response = client.post(
        ASK,
        json={
            "question": "she is now short of breath",
            "history": [
                {"role": "user", "content": "asymptomatic peripheral PCE after kyphoplasty"},
                {"role": "assistant", "content": "Clinical surveillance."},
            ],
        },
    )
    assert response.status_code == 200
    assert response.json()["recommendation"]["tier"] == "anticoagulation"


def test_recommend_returns_findings_recommendation_and_versions(client: TestClient) -> None:
    response = client.post(
        "/api/v1/recommend", json={"findings": {"symptomatic": True, "location": "central"}}
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "findings", "recommendation", "versions"}
    assert body["recommendation"]["tier"] == "surgical_embolectomy"
    assert body["findings"]["location"] == "central"


def test_recommend_with_every_finding_unknown_asks_rather_than_refusing(
    client: TestClient,
) -> None:
    for findings in ({}, {"symptomatic": "unknown", "location": None}):
        response = client.post("/api/v1/recommend", json={"findings": findings})
        assert response.status_code == 200, response.text
        recommendation = response.json()["recommendation"]
        assert recommendation["tier"] == "needs_information"
        assert {m["finding"] for m in recommendation["missing"]} >= {"symptomatic", "location"}


def test_sources_lists_every_source_with_section_ids(
    client: TestClient, assistant: Assistant
) -> None:
    body = client.get("/api/v1/sources").json()
    assert body["knowledge_version"] == assistant.versions.knowledge
    ids = {s["id"] for s in body["sources"]}
    assert {"krueger-2009", "clinical-pearl-2021"} <= ids
    assert len(ids) == len(assistant.components.corpus.sources)
    krueger = next(s for s in body["sources"] if s["id"] == "krueger-2009")
    assert krueger["doi"] == "10.1007/s00586-009-1073-y"
    assert all(set(x) == {"id", "heading"} for x in krueger["sections"])


def test_feedback_is_recorded_against_the_answer(client: TestClient, assistant: Assistant) -> None:
    answer_id = client.post(ASK, json={"question": QUESTION}).json()["id"]
    response = client.post(
        "/api/v1/feedback",
        json={"answer_id": answer_id, "rating": "evidence_wrong", "comment": "cites [3] wrongly"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["recorded"] is True
    assert assistant.audit is not None
    row = next(r for r in assistant.audit.rows("feedback") if r["id"] == body["id"])
    assert (row["ref"], row["outcome"], row["surface"]) == (answer_id, "evidence_wrong", "http")


def test_healthz_reports_versions_and_counts(client: TestClient, assistant: Assistant) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["versions"]["knowledge"] == assistant.versions.knowledge
    assert body["sources"] == len(assistant.components.corpus.sources)
    assert body["passages"] > body["sources"]
    assert body["audit_failures"] == 0


def test_openapi_lists_every_path(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/api/v1/ask", "/api/v1/recommend", "/api/v1/sources", "/api/v1/feedback", "/healthz",
        "/cds-services", "/cds-services/pce-management", "/cds-services/pce-management/feedback",
    ):  # fmt: skip
        assert path in paths, path
    assert "AskRequest" in json.dumps(paths["/api/v1/ask"])
    assert "question" in spec["components"]["schemas"]["AskRequest"]["required"]
    assert client.get("/docs").status_code == 200


# --- bad bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        (ASK, {}, "question: Field required"),
        (ASK, {"question": 5}, "question: Input should be a valid string"),
        (ASK, {"question": "PCE?", "findings": [1]}, "findings: Input should be a valid dict"),
        (ASK, {"question": "PCE?", "history": "x"}, "history: Input should be a valid list"),
        (ASK, {"question": "PCE?", "tier": "surgical_embolectomy"}, "tier: Extra inputs"),
        (ASK, {"question": "PCE?", "findings": {"symptomatic": "maybe"}}, "yes, no, unknown"),
        (ASK, {"question": "PCE?", "findings": {"colour": "red"}}, "not a known finding"),
        (ASK, {"question": ""}, "The question is empty"),
        (ASK, {"question": "   "}, "The question is empty"),
        (ASK, {"question": "PCE\u0000?"}, "control characters"),
        (ASK, {"question": "x" * 5000}, "the limit is 4,000"),
        (ASK, {"question": "PCE?", "history": [7]}, "history.0"),
        ("/api/v1/recommend", {"findings": {"location": "lobar"}}, "central, peripheral"),
        ("/api/v1/recommend", {"question": "PCE?"}, "findings: Field required"),
        ("/api/v1/feedback", {"answer_id": "a", "rating": "great"}, "rating: Input should be"),
        ("/api/v1/feedback", {"rating": "helpful"}, "answer_id: Field required"),
    ],
)
def test_bad_body_gets_422_saying_what_to_fix(
    client: TestClient, path: str, body: dict[str, Any], says: str
) -> None:
    detail = assert_clean_error(client.post(path, json=body), 422)["detail"]
    assert says in detail


def test_malformed_json_gets_422(client: TestClient) -> None:
    response = client.post(
        ASK, content=b'{"question": ', headers={"content-type": "application/json"}
    )
    assert "JSON decode error" in assert_clean_error(response, 422)["detail"]


def test_body_over_256_kb_gets_413(client: TestClient) -> None:
    big = json.dumps({"question": "x" * (MAX_BODY_BYTES + 10)})
    response = client.post(ASK, content=big, headers={"content-type": "application/json"})
    assert "256 KB" in assert_clean_error(response, 413)["detail"]


def test_streamed_body_over_256_kb_gets_413_too(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"question": "'
        for _ in range(300):
            yield b"x" * 1024
        yield b'"}'

    response = client.post(ASK, content=chunks(), headers={"content-type": "application/json"})
    assert "256 KB" in assert_clean_error(response, 413)["detail"]


def test_body_just_under_the_limit_is_read(client: TestClient) -> None:
    body = json.dumps({"question": "x" * (MAX_BODY_BYTES - 100)})
    response = client.post(ASK, content=body, headers={"content-type": "application/json"})
    assert "the limit is 4,000" in assert_clean_error(response, 422)["detail"]


def test_unexpected_errors_answer_500_with_a_reference_and_no_trace(
    client: TestClient, assistant: Assistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internal detail at /srv/pce")

    monkeypatch.setattr(assistant, "ask", boom)
    body = assert_clean_error(client.post(ASK, json={"question": QUESTION}), 500)
    assert "reference" in body["detail"] and "secret" not in json.dumps(body)


def test_index_outage_answers_503(
    client: TestClient, assistant: Assistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: Any, **kwargs: Any) -> None:
        raise IndexUnavailableError("Chroma at http://127.0.0.1:8000 is unreachable; start it.")

    monkeypatch.setattr(assistant, "ask", down)
    body = assert_clean_error(client.post(ASK, json={"question": QUESTION}), 503)
    assert "unreachable" in body["detail"]


# --- bearer token --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured(assistant: Assistant, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The same components behind PCE_API_TOKEN (via Settings), without a second index build."""
    settings = Settings(data_dir=assistant.settings.data_dir, api_token="s3cret-token")
    parts = dataclasses.replace(assistant.components, settings=settings)
    guarded = Assistant(parts, assistant.audit)
    with TestClient(create_app(guarded), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", ASK, {"question": QUESTION}),
        ("post", "/api/v1/recommend", {"findings": {"symptomatic": "no", "location": "central"}}),
        ("get", "/api/v1/sources", None),
        ("post", "/api/v1/feedback", {"answer_id": "a", "rating": "helpful"}),
        ("post", "/cds-services/pce-management", {"hook": "patient-view", "hookInstance": "1"}),
    ],
)
def test_bearer_token_is_required_when_configured(
    secured: TestClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    call = getattr(secured, method)
    kwargs: dict[str, Any] = {"json": body} if body is not None else {}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
        response = call(path, headers=headers, **kwargs)
        assert_clean_error(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    ok = call(path, headers={"Authorization": "Bearer s3cret-token"}, **kwargs)
    assert ok.status_code == 200, ok.text


def test_healthz_and_discovery_stay_open_with_a_token(secured: TestClient) -> None:
    assert secured.get("/healthz").status_code == 200
    assert secured.get("/cds-services").status_code == 200


def test_no_token_configured_means_open_api(client: TestClient) -> None:
    assert client.post(ASK, json={"question": QUESTION}).status_code == 200


# --- concurrency ---------------------------------------------------------------------------------


def test_concurrent_requests_are_all_answered_and_all_audited(
    client: TestClient, assistant: Assistant
) -> None:
    user = f"load-{uuid.uuid4().hex[:8]}"
    questions = [
        QUESTION,
        "What is the incidence of pulmonary cement embolism?",
        "Symptomatic central cement emboli after vertebroplasty: management?",
        "How do I treat fat embolism after a femur fracture?",
    ]

    def ask(i: int) -> httpx.Response:
        return client.post(ASK, json={"question": questions[i % len(questions)], "user": user})

    with ThreadPoolExecutor(max_workers=32) as pool:
        responses = list(pool.map(ask, range(32)))
    assert [r.status_code for r in responses] == [200] * 32
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 32
    tiers = [(r.json()["recommendation"] or {}).get("tier") for r in responses]
    assert tiers[0] == "surveillance" and tiers[2] == "surgical_embolectomy"
    assert audit_rows(assistant, user) == 32
    assert assistant.audit is not None and assistant.audit.failures == 0


# --- the contract: what OpenAPI says is what the server does -------------------------------------

DOCUMENTED = {
    "/healthz": {"GET"},
    "/api/v1/ask": {"POST"},
    "/api/v1/recommend": {"POST"},
    "/api/v1/sources": {"GET"},
    "/api/v1/feedback": {"POST"},
    "/cds-services": {"GET"},
    "/cds-services/pce-management": {"POST"},
    "/cds-services/pce-management/feedback": {"POST"},
}


def test_every_operation_has_typed_responses_and_the_one_error_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["ErrorBody"]["properties"]) == {"detail", "errors", "field"}
    for path, methods in DOCUMENTED.items():
        assert {m.upper() for m in spec["paths"][path]} == methods, path
        for operation in spec["paths"][path].values():
            responses = operation["responses"]
            ok = responses["200"]["content"]["application/json"]["schema"]
            assert "$ref" in ok, (path, ok)  # a named model, not an untyped object
            for status in ("401", "413", "422", "500"):
                error = responses[status]["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/ErrorBody"}, (path, status)


def test_the_schema_carries_the_limits_the_server_enforces(
    client: TestClient, assistant: Assistant
) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    question = schemas["AskRequest"]["properties"]["question"]
    assert question["minLength"] == 1
    assert question["maxLength"] == assistant.settings.max_question_chars
    assert re.search(question["pattern"], "PCE after kyphoplasty?")
    for refused in ("", "   \n", "PCE\x00?", "\x1b[31m", "\x85 \t"):
        assert not re.search(question["pattern"], refused), refused
    history = schemas["AskRequest"]["properties"]["history"]["anyOf"][0]
    assert history["maxItems"] == assistant.settings.max_history_turns
    recommend = schemas["RecommendRequest"]
    assert recommend["required"] == ["findings"]


@pytest.mark.parametrize(
    "value",
    ["yes", " YES ", "No", "true", "FALSE", "unknown", "", "maybe", "y", "oui", "un\u212anown"],
)
def test_the_findings_schema_accepts_exactly_what_the_validator_accepts(value: str) -> None:
    schema = ExplicitFindings.model_json_schema()["properties"]["symptomatic"]["anyOf"]
    patterns = [s["pattern"] for s in schema if "pattern" in s]
    in_schema = any(re.search(p, value) for p in patterns)
    try:
        ExplicitFindings.model_validate({"symptomatic": value})
        accepted = True
    except pydantic.ValidationError:
        accepted = False
    assert in_schema == accepted


def test_every_error_body_matches_the_documented_schema(client: TestClient) -> None:
    responses = [
        client.post(ASK, json={}),  # FastAPI's validation error
        client.post(ASK, json={"question": " "}),  # the assistant's InputError
        client.post(ASK, content=b"{", headers={"content-type": "application/json"}),
        client.request("TRACE", ASK),
        client.get("/api/v1/nothing-here"),
    ]
    for response in responses:
        assert response.status_code in {404, 405, 422}, response.text
        ErrorBody.model_validate(response.json())
        assert set(response.json()) <= {"detail", "errors", "field"}


@pytest.mark.parametrize("method", ["TRACE", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_an_undeclared_method_on_a_documented_path_gets_405_with_allow(
    client: TestClient, method: str
) -> None:
    for path, allowed in DOCUMENTED.items():
        if method in allowed:
            continue
        response = client.request(method, path)
        assert response.status_code == 405, (method, path, response.status_code)
        assert set(response.headers["allow"].split(", ")) == allowed


def test_405_holds_with_the_web_ui_mounted_at_the_root(assistant: Assistant) -> None:
    from assistant.web import ui  # a broken UI import fails this test, never skips it

    app = ui.mount_ui(create_app(assistant), assistant)
    with TestClient(app, raise_server_exceptions=False) as mounted:
        response = mounted.request("TRACE", "/api/v1/ask")
        assert response.status_code == 405 and response.headers["allow"] == "POST"
        assert mounted.get("/api/v1/nothing-here").status_code == 404


def test_the_bearer_scheme_is_documented_only_when_a_token_is_required(
    client: TestClient, secured: TestClient
) -> None:
    open_spec = client.get("/openapi.json").json()
    secured_spec = secured.get("/openapi.json").json()
    assert "securitySchemes" not in open_spec.get("components", {})
    assert secured_spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert secured_spec["paths"]["/api/v1/ask"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in secured_spec["paths"]["/healthz"]["get"]
