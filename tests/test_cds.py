"""CDS Hooks 2.0: discovery, the pce-management service's cards, FHIR Observations, feedback."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from assistant import Assistant, Settings
from assistant.retrieval.embeddings import HashEmbedder
from assistant.web.api import create_app
from assistant.web.cds import FINDING_SYSTEM, SERVICE_ID, findings_from_observations, make_card

SERVICE = f"/cds-services/{SERVICE_ID}"
FEEDBACK = f"{SERVICE}/feedback"


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assistant]:
    data_dir = tmp_path_factory.mktemp("cds") / "data"
    yield Assistant.from_settings(Settings(data_dir=data_dir), embedder=HashEmbedder())


@pytest.fixture(scope="module")
def client(assistant: Assistant) -> Iterator[TestClient]:
    with TestClient(create_app(assistant), raise_server_exceptions=False) as test_client:
        yield test_client


def hook(context: dict[str, Any] | None = None, prefetch: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/123", "patientId": "1288992", **(context or {})},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def card_for(client: TestClient, **findings: Any) -> dict[str, Any]:
    response = client.post(SERVICE, json=hook({"findings": findings}))
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    assert len(cards) == 1
    return dict(cards[0])


def observation(code: str, **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": FINDING_SYSTEM, "code": code}]},
        "subject": {"reference": "Patient/1288992"},
        **value,
    }


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }


# --- discovery -----------------------------------------------------------------------------------


def test_discovery_lists_the_service_per_cds_hooks_2(client: TestClient) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    services = response.json()["services"]
    assert [s["id"] for s in services] == [SERVICE_ID]
    service = services[0]
    for required in ("hook", "id", "description"):
        assert isinstance(service[required], str) and service[required]
    assert service["hook"] == "patient-view"
    assert service["title"]
    prefetch = service["prefetch"]
    assert isinstance(prefetch, dict) and prefetch
    assert all(isinstance(v, str) and "{{context.patientId}}" in v for v in prefetch.values())


# --- cards ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("findings", "tier", "indicator"),
    [
        ({"symptomatic": False, "location": "peripheral"}, "surveillance", "info"),
        ({"symptomatic": True, "location": "peripheral"}, "anticoagulation", "warning"),
        ({"symptomatic": "no", "location": "central"}, "anticoagulation", "warning"),
        ({"symptomatic": "yes", "location": "central"}, "surgical_embolectomy", "critical"),
        ({"symptomatic": "unknown", "location": "central"}, "needs_information", "info"),
        (
            {"symptomatic": False, "location": "peripheral", "intracardiac_cement": True},
            "surveillance",
            "critical",
        ),
        (
            {"symptomatic": True, "location": "peripheral", "hemodynamic_instability": "yes"},
            "anticoagulation",
            "critical",
        ),
    ],
)
def test_card_indicator_follows_the_tier_and_escalations(
    client: TestClient, findings: dict[str, Any], tier: str, indicator: str
) -> None:
    card = card_for(client, **findings)
    assert card["indicator"] == indicator
    assert f"`{tier}`" in card["detail"]


@pytest.mark.parametrize(
    ("symptomatic", "location", "unstable", "intracardiac"),
    list(
        itertools.product(
            [True, False, None], ["central", "peripheral", None], [True, False], [True, False]
        )
    ),
)
def test_every_card_summary_is_under_140_characters(
    client: TestClient, symptomatic: Any, location: Any, unstable: bool, intracardiac: bool
) -> None:
    card = card_for(
        client,
        symptomatic=symptomatic,
        location=location,
        hemodynamic_instability=unstable,
        intracardiac_cement=intracardiac,
    )
    assert 0 < len(card["summary"]) < 140
    assert card["indicator"] in {"info", "warning", "critical"}


def test_card_has_source_with_doi_link_and_detail_with_actions_basis_and_sources(
    client: TestClient, assistant: Assistant
) -> None:
    card = card_for(client, symptomatic=False, location="peripheral")
    assert card["uuid"]
    assert card["source"]["label"].startswith("PCE Assistant decision table")
    assert card["source"]["url"].startswith("https://doi.org/10.")
    _, rec, _ = assistant.recommend_from({"symptomatic": False, "location": "peripheral"})
    detail = card["detail"]
    for action in rec.actions:
        assert f"- {action}" in detail
    assert "**Basis (findings used)**" in detail
    assert "symptomatic = no (explicit" in detail and "location = peripheral" in detail
    assert "**Sources**" in detail and "(https://doi.org/10.1007/s00586-009-1073-y)" in detail
    assert "**Caveats**" in detail
    assert card["links"] and all(
        link["type"] == "absolute" and link["url"].startswith("https://") for link in card["links"]
    )
    assert {r["code"] for r in card["overrideReasons"]} >= {"clinical-judgement"}


def test_card_names_sources_without_url_or_year_plainly(assistant: Assistant) -> None:
    findings, rec, _ = assistant.recommend_from({"symptomatic": False, "location": "peripheral"})
    bare = tuple(c.model_copy(update={"url": None, "year": None}) for c in rec.citations)
    card = make_card(rec.model_copy(update={"citations": bare}), findings, "card-1")
    assert f"- {bare[0].title} (n.d.) — {bare[0].section}" in card["detail"]
    assert "(None)" not in card["detail"]
    assert "url" not in card["source"] and card["links"] == []


def test_card_for_missing_findings_lists_what_each_answer_leads_to(client: TestClient) -> None:
    card = card_for(client, symptomatic=True)
    assert card["indicator"] == "info"
    assert "**Missing findings**" in card["detail"]
    assert "if central:" in card["detail"] and "if peripheral:" in card["detail"]


def test_fhir_observations_in_the_prefetch_bundle_are_read(client: TestClient) -> None:
    prefetch = {
        "observations": bundle(
            observation("pce-symptomatic", valueBoolean=True),
            observation(
                "pce-location",
                valueCodeableConcept={"coding": [{"system": FINDING_SYSTEM, "code": "central"}]},
            ),
            observation("8867-4", valueQuantity={"value": 88, "unit": "/min"}),  # ignored
        )
    }
    response = client.post(SERVICE, json=hook(prefetch=prefetch))
    assert response.status_code == 200, response.text
    (card,) = response.json()["cards"]
    assert card["indicator"] == "critical"
    assert "`surgical_embolectomy`" in card["detail"]
    assert "symptomatic = yes" in card["detail"] and "location = central" in card["detail"]


def test_context_findings_override_observations(client: TestClient) -> None:
    prefetch = {"observations": bundle(observation("pce-symptomatic", valueBoolean=True))}
    body = hook({"findings": {"symptomatic": False, "location": "peripheral"}}, prefetch)
    (card,) = client.post(SERVICE, json=body).json()["cards"]
    assert "`surveillance`" in card["detail"]


def test_observations_entered_in_error_and_unknown_codes_are_ignored() -> None:
    wrong = observation("pce-symptomatic", valueBoolean=True) | {"status": "entered-in-error"}
    by_text = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Intracardiac cement"},
        "valueString": "yes",
    }
    found = findings_from_observations(
        bundle(wrong, by_text, {"resourceType": "Patient", "id": "1"})
    )
    assert found == {"intracardiac_cement": "yes"}
    assert findings_from_observations("not a bundle") == {}
    assert findings_from_observations([observation("location", valueString="peripheral")]) == {
        "location": "peripheral"
    }


@pytest.mark.parametrize(
    "body",
    [
        hook(),
        hook({"findings": {}}),
        hook(prefetch={"observations": bundle()}),
        hook(prefetch={"observations": None}),
    ],
)
def test_no_findings_means_no_cards(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post(SERVICE, json=body)
    assert response.status_code == 200
    assert response.json() == {"cards": []}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"context": {}}, "hook: Field required"),
        ({"hook": "patient-view", "context": {}}, "hookInstance: Field required"),
        (hook({"findings": "symptomatic"}), "context.findings must be an object"),
        (hook({"findings": {"symptomatic": "perhaps"}}), "yes, no, unknown"),
    ],
)
def test_bad_hook_request_gets_422(client: TestClient, body: dict[str, Any], says: str) -> None:
    response = client.post(SERVICE, json=body)
    assert response.status_code == 422
    assert says in response.json()["detail"]


def test_each_card_is_audited_with_its_uuid(client: TestClient, assistant: Assistant) -> None:
    card = card_for(client, symptomatic=True, location="central")
    assert assistant.audit is not None
    row = next(r for r in assistant.audit.rows("cds") if r["id"] == card["uuid"])
    assert row["tier"] == "surgical_embolectomy" and row["surface"] == "cds"
    assert row["user"] == "Practitioner/123"


# --- feedback ------------------------------------------------------------------------------------


def test_feedback_accepted_and_overridden_are_audited_against_the_card(
    client: TestClient, assistant: Assistant
) -> None:
    accepted = card_for(client, symptomatic=False, location="peripheral")["uuid"]
    overridden = card_for(client, symptomatic=True, location="central")["uuid"]
    body = {
        "feedback": [
            {"card": accepted, "outcome": "accepted", "outcomeTimestamp": "2026-01-05T10:00:00Z"},
            {
                "card": overridden,
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {
                        "system": FINDING_SYSTEM + "/override",
                        "code": "clinical-judgement",
                        "display": "Different management by clinical judgement",
                    },
                    "userComment": "Cardiothoracic team advised anticoagulation first",
                },
                "outcomeTimestamp": "2026-01-05T10:01:00Z",
            },
        ]
    }
    response = client.post(FEEDBACK, json=body)
    assert response.status_code == 200
    assert response.json() == {"recorded": 2}
    assert assistant.audit is not None
    rows = {r["ref"]: r for r in assistant.audit.rows("feedback")}
    assert rows[accepted]["outcome"] == "accepted" and rows[accepted]["surface"] == "cds"
    assert rows[overridden]["outcome"] == "overridden"
    comment = rows[overridden]["comment"]
    assert "Different management by clinical judgement" in comment
    assert "Cardiothoracic team advised anticoagulation first" in comment


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({}, "feedback: Field required"),
        ({"feedback": []}, "feedback: List should have at least 1 item"),
        ({"feedback": [{"outcome": "accepted"}]}, "feedback.0.card: Field required"),
        ({"feedback": [{"card": "c", "outcome": "ignored"}]}, "feedback.0.outcome"),
        ({"feedback": [{"card": "", "outcome": "accepted"}]}, "feedback.0.card"),
        ({"feedback": "accepted"}, "feedback: Input should be a valid list"),
        ({"feedback": [{"card": "c", "outcome": "accepted"}], "extra": 1}, "extra: Extra inputs"),
    ],
)
def test_bad_feedback_body_gets_422(client: TestClient, body: dict[str, Any], says: str) -> None:
    response = client.post(FEEDBACK, json=body)
    assert response.status_code == 422
    assert says in response.json()["detail"]
    assert "Traceback" not in response.text
