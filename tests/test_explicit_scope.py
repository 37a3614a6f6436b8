"""Explicit findings (form, API, CDS Hooks) put a question in scope, whatever its wording:
from Python and from the HTTP API the structured findings give the rules table's card (issue 11)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from assistant import Assistant, Settings
from assistant.clinical.scope import ScopeGuard, load_scope_terms
from assistant.retrieval.embeddings import HashEmbedder
from assistant.settings import default_knowledge_dir
from assistant.web.api import create_app

GENERIC = "What is the recommended management?"
FINDINGS = {"symptomatic": False, "location": "peripheral"}


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assistant]:
    data_dir = tmp_path_factory.mktemp("explicit-scope") / "data"
    yield Assistant.from_settings(Settings(data_dir=data_dir), embedder=HashEmbedder())


@pytest.fixture(scope="module")
def client(assistant: Assistant) -> Iterator[TestClient]:
    with TestClient(create_app(assistant), raise_server_exceptions=False) as test_client:
        yield test_client


def test_scope_guard_accepts_any_wording_when_findings_are_given() -> None:
    guard = ScopeGuard(load_scope_terms(default_knowledge_dir() / "scope.yaml"), 0.35)
    refused = guard.decide(GENERIC, similarity=0.0)
    assert refused.in_scope is False  # the same words alone are not about cement embolism
    accepted = guard.decide(GENERIC, similarity=0.0, explicit_findings=True)
    assert accepted.in_scope is True and "findings" in accepted.reason


def test_generic_question_with_findings_gets_the_surveillance_card_from_python(
    assistant: Assistant,
) -> None:
    answer = assistant.ask(GENERIC, findings=FINDINGS)
    assert answer.in_scope is True
    assert answer.recommendation is not None
    assert answer.recommendation.tier == "surveillance"
    assert (answer.findings.symptomatic, answer.findings.location) == (False, "peripheral")


def test_generic_question_with_findings_gets_the_surveillance_card_over_http(
    client: TestClient,
) -> None:
    response = client.post(
        "/api/v1/ask", json={"question": GENERIC, "findings": {"symptomatic": "no",
                                                               "location": "peripheral"}}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["in_scope"] is True
    assert body["recommendation"]["tier"] == "surveillance"


def test_findings_all_unknown_do_not_change_scope(assistant: Assistant) -> None:
    # An empty form (every finding 'unknown') states nothing, so the wording decides.
    answer = assistant.ask(
        "How long should I anticoagulate a DVT after hip replacement?",
        findings={"symptomatic": "unknown", "location": None},
    )
    assert answer.in_scope is False
    assert answer.recommendation is None
