"""No prefetch: the CDS service queries the EHR's FHIR server itself (a tiny fake on loopback),
with the bearer token the EHR gave, a timeout, and only when the server is allow-listed."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fhirdata import fixture_request
from servers import serve_app

from assistant import Assistant, Settings
from assistant.retrieval.embeddings import HashEmbedder
from assistant.web.api import create_app

pytestmark = pytest.mark.integration

SERVICE = "cds-services/pce-management"
FIXTURE = "spo2-low-symptomatic-peripheral-plain-text-form.json"
NOW = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)
TOKEN = "ehr-issued-token-123"
TYPES = {"DiagnosticReport": "reports", "Observation": "vitals", "Procedure": "procedures"}


@dataclasses.dataclass
class FakeFhir:
    """Serves one fixture's Bundles by resource type; records what was asked and how."""

    bundles: dict[str, Any]
    mode: str = "ok"  # ok | error | slow
    requests: list[tuple[str, str, str | None]] = dataclasses.field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/fhir/{kind}")
        async def search(kind: str, request: Request) -> JSONResponse:
            auth = request.headers.get("authorization")
            self.requests.append((kind, str(request.url.query), auth))
            if self.mode == "slow":
                await asyncio.sleep(3)
            if self.mode == "error":
                return JSONResponse({"resourceType": "OperationOutcome"}, status_code=500)
            if auth != f"Bearer {TOKEN}":
                return JSONResponse({"resourceType": "OperationOutcome"}, status_code=401)
            return JSONResponse(self.bundles[TYPES[kind]])

        return app


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeFhir, str]]:
    server = FakeFhir(bundles=fixture_request(FIXTURE)["prefetch"])
    with serve_app(server.app()) as url:
        yield server, url + "fhir"


@pytest.fixture(scope="module")
def cds(
    fake: tuple[FakeFhir, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("cds-fhir") / "data",
        fhir_servers=(fake[1],),
        fhir_timeout_s=1.0,
    )
    assistant = Assistant.from_settings(settings, embedder=HashEmbedder())
    with serve_app(create_app(assistant, clock=lambda: NOW)) as url:
        yield url


def ask(cds: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = httpx.post(cds + SERVICE, json=body, timeout=30)
    assert response.status_code == 200, response.text
    return list(response.json()["cards"])


def request_without(keys: tuple[str, ...], server: str) -> dict[str, Any]:
    body = fixture_request(FIXTURE)
    body["prefetch"] = {k: v for k, v in body["prefetch"].items() if k not in keys}
    body["fhirServer"] = server
    body["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer",
                                 "expires_in": 300, "scope": "patient/*.read",
                                 "subject": "cds-service"}  # fmt: skip
    return body


@pytest.fixture(autouse=True)
def _reset(fake: tuple[FakeFhir, str]) -> None:
    fake[0].mode = "ok"
    fake[0].requests.clear()


def test_without_prefetch_the_record_is_queried_with_the_ehr_token(
    cds: str, fake: tuple[FakeFhir, str]
) -> None:
    server, url = fake
    (with_prefetch,) = ask(cds, fixture_request(FIXTURE))
    (card,) = ask(cds, request_without(("reports", "vitals", "procedures"), url))
    assert "`anticoagulation`" in card["detail"] and "`anticoagulation`" in with_prefetch["detail"]
    for resource in ("Observation/spo2-1005", "DiagnosticReport/ct-1005", "Procedure/proc-1005"):
        assert resource in card["detail"]
    assert sorted(kind for kind, _, _ in server.requests) == [
        "DiagnosticReport", "Observation", "Procedure"
    ]
    patient = fixture_request(FIXTURE)["context"]["patientId"]
    for _, query, auth in server.requests:
        assert f"patient={patient}" in query
        assert auth == f"Bearer {TOKEN}"


def test_only_the_missing_keys_are_queried(cds: str, fake: tuple[FakeFhir, str]) -> None:
    server, url = fake
    (card,) = ask(cds, request_without(("vitals",), url))
    assert "`anticoagulation`" in card["detail"]
    assert [kind for kind, _, _ in server.requests] == ["Observation"]


@pytest.mark.parametrize(("mode", "says"), [("error", "HTTP 500"), ("slow", "no answer within")])
def test_a_failing_fhir_server_gives_a_clear_card_and_no_tier(
    cds: str, fake: tuple[FakeFhir, str], mode: str, says: str
) -> None:
    server, url = fake
    server.mode = mode
    (card,) = ask(cds, request_without(("reports", "vitals", "procedures"), url))
    assert card["indicator"] == "warning"
    assert "could not read the patient's record" in card["summary"]
    assert says in card["detail"] and TOKEN not in card["detail"]
    assert "`" not in card["detail"]  # no tier id anywhere


def test_a_server_not_on_the_allow_list_is_never_queried(
    cds: str, fake: tuple[FakeFhir, str]
) -> None:
    server, url = fake
    other = url.replace("/fhir", "/other-fhir")
    (card,) = ask(cds, request_without(("reports",), other))
    assert server.requests == []
    assert "`needs_information`" in card["detail"]  # symptomatic from SpO2; no imaging: ask
    assert "No `reports` (imaging reports) in the request" in card["detail"]
    assert "not set up to query that fhirServer" in card["detail"]
