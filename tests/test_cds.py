"""CDS Hooks 2.0 through FastAPI's TestClient: discovery, cards, the link card, feedback.

The FHIR record itself is read in test_fhir_intake.py; every fixture record goes through the live
endpoint in test_cds_fixtures.py.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from fhirdata import LOINC, bundle, hook, procedure, report, vital

from assistant import Assistant, Settings
from assistant.retrieval.embeddings import HashEmbedder
from assistant.web.api import create_app
from assistant.web.cds import OVERRIDE_SYSTEM, SERVICE_ID, make_card

SERVICE = f"/cds-services/{SERVICE_ID}"
FEEDBACK = f"{SERVICE}/feedback"
NOW = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assistant]:
    data_dir = tmp_path_factory.mktemp("cds") / "data"
    yield Assistant.from_settings(Settings(data_dir=data_dir), embedder=HashEmbedder())


@pytest.fixture(scope="module")
def client(assistant: Assistant) -> Iterator[TestClient]:
    app = create_app(assistant, clock=lambda: NOW)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def cards(client: TestClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post(SERVICE, json=body)
    assert response.status_code == 200, response.text
    return list(response.json()["cards"])


def card_for(client: TestClient, **findings: Any) -> dict[str, Any]:
    (card,) = cards(client, hook(findings=findings))
    return card


def record(*reports: dict[str, Any], vitals: tuple[dict[str, Any], ...] = (),
           procedures: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    return {
        "reports": bundle(*reports),
        "vitals": bundle(*vitals),
        "procedures": bundle(*procedures),
    }


ASYMPTOMATIC_SEGMENTAL = report(
    "ct-1", "Asymptomatic. Cement emboli in segmental branches of the right lower lobe."
)


# --- discovery -----------------------------------------------------------------------------------


def test_discovery_declares_the_prefetch_of_reports_vitals_and_procedures(
    client: TestClient,
) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    (service,) = response.json()["services"]
    assert (service["hook"], service["id"]) == ("patient-view", SERVICE_ID)
    assert service["title"] and service["description"]
    prefetch = service["prefetch"]
    assert set(prefetch) == {"reports", "vitals", "procedures"}
    assert prefetch["reports"].startswith("DiagnosticReport?patient={{context.patientId}}")
    assert "category=http://loinc.org|LP29684-5" in prefetch["reports"]
    assert prefetch["procedures"].startswith("Procedure?patient={{context.patientId}}")
    for code in ("59408-5", "2708-6", "8867-4", "8480-6", "9279-1", "85353-1", "85354-9"):
        assert f"{LOINC}|{code}" in prefetch["vitals"], code


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
    assert card["source"]["topic"]["code"] == tier


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


def test_card_has_cds_hooks_fields_actions_basis_sources_and_override_reasons(
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
    assert "**Basis: each finding and where it was read**" in detail
    assert "- symptomatic = **no**: stated in context.findings" in detail
    assert "- location = **peripheral**: stated in context.findings" in detail
    assert "**Sources**" in detail and "(https://doi.org/10.1007/s00586-009-1073-y)" in detail
    assert "**Caveats**" in detail
    assert all(link["type"] == "absolute" for link in card["links"])
    assert {r["code"] for r in card["overrideReasons"]} >= {"clinical-judgement"}
    assert "suggestions" not in card and "selectionBehavior" not in card


def test_card_names_sources_without_url_or_year_plainly(assistant: Assistant) -> None:
    findings, rec, _ = assistant.recommend_from({"symptomatic": False, "location": "peripheral"})
    bare = tuple(c.model_copy(update={"url": None, "year": None}) for c in rec.citations)
    card = make_card(rec.model_copy(update={"citations": bare}), findings, "card-1")
    assert f"- {bare[0].title} (n.d.) — {bare[0].section}" in card.detail
    assert "(None)" not in card.detail
    assert card.source.url is None and card.links == []


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,x", "/relative"])
def test_card_links_only_to_absolute_http_source_pages(assistant: Assistant, url: str) -> None:
    findings, rec, _ = assistant.recommend_from({"symptomatic": False, "location": "peripheral"})
    bare = {"url": url, "doi": None, "pmid": None}
    cited = tuple(c.model_copy(update=bare) for c in rec.citations)
    card = make_card(rec.model_copy(update={"citations": cited}), findings, "card-2")
    assert card.source.url is None and card.links == []
    assert url not in card.detail
    assert f"- {cited[0].title} ({cited[0].year}) — {cited[0].section}" in card.detail


def test_card_for_missing_findings_lists_what_each_answer_leads_to(client: TestClient) -> None:
    card = card_for(client, symptomatic=True)
    assert card["indicator"] == "info"
    assert "**Missing findings**" in card["detail"]
    assert "if central:" in card["detail"] and "if peripheral:" in card["detail"]


# --- the link card -------------------------------------------------------------------------------


def test_link_card_opens_the_web_ui_with_the_findings_filled_in(client: TestClient) -> None:
    card = card_for(client, symptomatic=True, location="central", intracardiac_cement=False)
    ui = card["links"][0]
    assert ui["type"] == "absolute" and "PCE Assistant" in ui["label"]
    url = urlsplit(ui["url"])
    assert (url.scheme, url.netloc, url.path) == ("http", "testserver", "/")
    params = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert params == {
        "question": params["question"],
        "symptomatic": "yes",
        "location": "central",
        "hemodynamic_instability": "unknown",
        "intracardiac_cement": "no",
    }
    assert "cement embolism" in params["question"]


def test_link_card_uses_the_public_url_setting(assistant: Assistant) -> None:
    settings = assistant.settings.model_copy(update={"public_url": "https://pce.hospital.example/"})
    parts = dataclasses.replace(assistant.components, settings=settings)
    public = Assistant(parts, assistant.audit)
    with TestClient(create_app(public, clock=lambda: NOW)) as api:
        (card,) = cards(api, hook(findings={"symptomatic": "no", "location": "peripheral"}))
    assert card["links"][0]["url"].startswith("https://pce.hospital.example/?question=")


def test_link_card_asks_about_an_unclear_or_conflicting_location(client: TestClient) -> None:
    lobar = report("ct-2", "Dyspnoea. Cement embolus in the right lower lobe pulmonary artery.")
    (card,) = cards(client, hook(record(lobar, procedures=(procedure("p-2"),))))
    params = parse_qs(urlsplit(card["links"][0]["url"]).query)
    assert params["location"] == ["unknown"] and params["symptomatic"] == ["yes"]
    assert "lobar" in params["question"][0]


# --- the record and context.findings -------------------------------------------------------------


def test_a_record_gives_a_card_traced_to_its_resources(client: TestClient) -> None:
    body = hook(record(ASYMPTOMATIC_SEGMENTAL, procedures=(procedure("p-1"),)))
    (card,) = cards(client, body)
    assert "`surveillance`" in card["detail"]
    assert card["summary"].startswith("PCE after vertebroplasty (day 3)")
    traced = (
        r"location = \*\*peripheral\*\*: “[^”]*segmental[^”]*” — "
        r"DiagnosticReport/ct-1 · 2026-03-14 08:00 UTC"
    )
    assert re.search(traced, card["detail"]), card["detail"]
    assert "CPT 22511 — Procedure/p-1" in card["detail"]


def test_a_statement_a_later_report_superseded_is_on_the_card_with_its_resource_and_date(
    client: TestClient,
) -> None:
    older = report(
        "ct-1", "Asymptomatic. Cement emboli in segmental arteries of the right lower lobe.",
        when="2026-03-12T08:00:00Z",
    )  # fmt: skip
    newer = report("ct-2", "Now short of breath; no new emboli.", when="2026-03-14T08:00:00Z")
    (card,) = cards(client, hook(record(newer, older)))
    lines = card["detail"].splitlines()
    at = next(i for i, x in enumerate(lines) if x.startswith("- symptomatic = **yes**:"))
    assert "DiagnosticReport/ct-2 · 2026-03-14 08:00 UTC" in lines[at]
    assert lines[at + 1] == (
        "  - Overrode “Asymptomatic” — DiagnosticReport/ct-1 · 2026-03-12 08:00 UTC — "
        "superseded by a later statement"
    )


def test_symptoms_the_table_derived_are_shown_as_its_convention_with_the_vital_behind_them(
    client: TestClient, assistant: Assistant
) -> None:
    central = report("ct-6", "Cement embolus in the right pulmonary artery.")
    low_bp = vital("o-6", "8480-6", 78, "mm[Hg]")
    (card,) = cards(client, hook(record(central, vitals=(low_bp,), procedures=(procedure("p-6"),))))
    detail = card["detail"]
    assert "`surgical_embolectomy`" in detail
    basis = detail.split("**Basis: each finding and where it was read**")[1]
    basis = basis.split("**Data read**")[0]
    line = next(x for x in basis.splitlines() if x.startswith("- symptomatic"))
    assert line.startswith(
        "- symptomatic: counted as yes by the table's convention, because "
        "hemodynamic_instability = yes — "
    )
    _, rec, _ = assistant.recommend_from({"hemodynamic_instability": "yes", "location": "central"})
    (derived,) = rec.derived
    assert derived.rationale[:60] in line and derived.citations[0].title in line
    below = basis.split(line, 1)[1].splitlines()[1]
    assert below.startswith("  - SBP 78 mm[Hg] (LOINC 8480-6) — Observation/o-6 · 2026-03-14")
    assert "symptomatic = not stated" not in detail


def test_context_findings_win_over_the_record_and_the_report_span_is_shown_as_overridden(
    client: TestClient,
) -> None:
    body = hook(record(ASYMPTOMATIC_SEGMENTAL), findings={"symptomatic": "yes"})
    (card,) = cards(client, body)
    detail = card["detail"]
    assert "`anticoagulation`" in detail
    lines = detail.splitlines()
    at = lines.index("- symptomatic = **yes**: stated in context.findings")
    # The report's statement is not the value: it is shown under it, as what the value overrode.
    assert lines[at + 1] == (
        "  - Overrode “Asymptomatic” — DiagnosticReport/ct-1 · 2026-03-14 08:00 UTC — "
        "superseded by the value set explicitly"
    )
    assert [x for x in lines if "“Asymptomatic”" in x] == [lines[at + 1]]


@pytest.mark.parametrize(
    "body",
    [
        hook(),
        hook(findings={}),
        hook(record()),
        hook({"reports": None, "vitals": None, "procedures": None}),
        # the procedure alone says nothing about PCE
        hook(record(procedures=(procedure("p-3"),))),
        # abnormal vitals without a procedure or imaging finding are not this service's business
        hook(record(vitals=(vital("o-1", "59408-5", 85, "%"),))),
    ],
    ids=["empty", "no-findings", "empty-record", "null-prefetch", "procedure-only", "vitals-only"],
)
def test_nothing_about_pce_means_no_cards(client: TestClient, body: dict[str, Any]) -> None:
    assert cards(client, body) == []


@pytest.mark.parametrize(
    "prefetch",
    [
        {"reports": "not a bundle", "vitals": 7, "procedures": []},
        {"reports": {"resourceType": "Bundle", "entry": "x"}},
        {"reports": {"resourceType": "Bundle", "entry": [1, None, {"resource": "x"}]}},
        {"reports": bundle({"resourceType": "Patient", "id": "p"})},
        {"reports": bundle({"resourceType": "DiagnosticReport", "id": "r", "status": 5})},
        {"reports": bundle({"resourceType": "DiagnosticReport", "id": "r" * 100})},
        {"vitals": bundle(vital("o-2", "59408-5", "88 %", "%"))},
        {"vitals": bundle({"resourceType": "Observation", "valueQuantity": {"value": True}})},
        {"procedures": bundle(procedure("p", when="yesterday"))},
        {"unknown-key": {"deep": [[[[{}]]]]}},
    ],
)
def test_whatever_the_ehr_sends_the_request_never_errors(
    client: TestClient, prefetch: dict[str, Any]
) -> None:
    body = hook(prefetch, findings={"symptomatic": "no", "location": "peripheral"})
    (card,) = cards(client, body)
    assert "`surveillance`" in card["detail"]


def test_an_invalid_resource_is_named_on_the_card(client: TestClient) -> None:
    bad = report("ct-bad", "Cement in the main pulmonary artery.")
    del bad["code"]  # required in FHIR R4
    body = hook(record(ASYMPTOMATIC_SEGMENTAL, bad, procedures=(procedure("p-4"),)))
    (card,) = cards(client, body)
    assert "`surveillance`" in card["detail"]
    notes = card["detail"].split("**Data notes (skipped or missing)**")[1]
    assert "DiagnosticReport/ct-bad is invalid FHIR R4" in notes


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"context": {}}, "hook: Field required"),
        ({"hook": "patient-view", "context": {}}, "hookInstance: Field required"),
        (hook(findings="symptomatic"), "context.findings: Input should be a valid dictionary"),
        (hook(findings={"symptomatic": "perhaps"}), "yes, no, unknown"),
        (hook(fhirAuthorization={"token_type": "Bearer"}), "access_token: Field required"),
    ],
)
def test_bad_hook_request_gets_422(client: TestClient, body: dict[str, Any], says: str) -> None:
    response = client.post(SERVICE, json=body)
    assert response.status_code == 422
    assert says in response.json()["detail"]


def test_each_card_is_audited_with_its_uuid_and_its_evidence(
    client: TestClient, assistant: Assistant
) -> None:
    body = hook(record(ASYMPTOMATIC_SEGMENTAL, procedures=(procedure("p-5"),)))
    (card,) = cards(client, body)
    assert assistant.audit is not None
    row = next(r for r in assistant.audit.rows("cds") if r["id"] == card["uuid"])
    assert row["tier"] == "surveillance" and row["surface"] == "cds"
    assert row["user"] == "Practitioner/123"
    assert '"resource": "DiagnosticReport/ct-1"' in row["findings"]


# --- feedback ------------------------------------------------------------------------------------


def test_feedback_accepted_and_overridden_are_audited_with_the_reason(
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
                        "system": OVERRIDE_SYSTEM,
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
    assert "clinical-judgement: Different management by clinical judgement" in comment
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
