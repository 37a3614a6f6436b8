"""The chat UI in a real browser: Debian's Chromium driven by Playwright, against the real model.

The server is the production app (``build_app``: HTTP API + Gradio UI) on 127.0.0.1:<free port>.
Every request the page makes is recorded; none may leave loopback (the UI must work offline).
axe-core (the ``axe-playwright-python`` package, which bundles ``axe.min.js``: it is injected into
the page, never fetched) checks accessibility on the empty page and after an answer. Screenshots
and axe reports go to ``tests/artifacts/`` (git-ignored). Chromium comes from apt
(``make browser``); Playwright never downloads a browser here.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from fhirdata import FHIR_FIXTURES
from playwright.sync_api import Dialog, Locator, Page, expect, sync_playwright
from servers import serve_app as serve

from assistant.assistant import Assistant
from assistant.settings import Settings
from assistant.web.server import build_app

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
VIGNETTE = (
    "72-year-old woman, 2 days after T12 kyphoplasty, no symptoms; CT shows small cement emboli "
    "in segmental branches of the right lower lobe. Does she need anticoagulation?"
)
UNSTABLE_INTRACARDIAC = (
    "Hypotensive and short of breath after vertebroplasty; echo shows cement in the right "
    "ventricle. What now?"
)
# Deterioration over time ('initially stable, then hypotensive': the latest state wins, and the
# basis shows the statement it overrode) and instability without a symptom status: the table counts
# it as symptomatic (a derived input, shown in the basis with its rationale and citation); no
# location, so follow-up options too.
DETERIORATED_SYMPTOMS_UNSTATED = (
    "Initially stable after vertebroplasty, then hypotensive; echo shows cement in the right "
    "ventricle. What now?"
)
XSS = "<script>alert(1)</script>"
ANSWER_TIMEOUT_MS = 90_000
DESKTOP = {"width": 1440, "height": 1000}
PHONE = {"width": 390, "height": 844}  # a common phone viewport in CSS pixels
BLOCKING_IMPACTS = ("critical", "serious")


# --- server --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real assistant (bundled model, embedded Chroma built in a temp dir) behind the app."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; install it with `make browser` (apt chromium)")
    settings = Settings(data_dir=tmp_path_factory.mktemp("browser") / "data")
    assistant = Assistant.from_settings(settings)
    with serve(build_app(assistant=assistant)) as url:
        yield url


# --- browser -------------------------------------------------------------------------------------


def is_loopback_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Browser:
    page: Page
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def outside_loopback(self) -> list[str]:
        return sorted({u for u in self.requests if not is_loopback_url(u)})

    def ask(self, question: str) -> None:
        box = self.page.locator("#pce-question textarea")
        box.fill(question)
        box.press("Enter")

    def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def axe(self, name: str) -> dict[str, list[str]]:
        """Run axe-core on the page; save the report; violations by impact ('rule-id: n nodes').

        First waits for Gradio to finish every pending event (its loading overlays fade the
        components, which would be measured as low contrast).
        """
        self.page.wait_for_function(
            "() => !document.querySelector('.pending, .generating, .translucent:not(.hide)')"
        )
        self.page.wait_for_timeout(300)  # the fade-out transition after the last event
        results = Axe().run(self.page)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        violations = results.response["violations"]
        (ARTIFACTS / f"axe-{name}.json").write_text(json.dumps(violations, indent=2))
        by_impact: dict[str, list[str]] = {}
        for v in violations:
            by_impact.setdefault(v["impact"], []).append(f"{v['id']}: {len(v['nodes'])} node(s)")
        return by_impact


OpenPage = Callable[..., Browser]


@pytest.fixture
def open_page(base_url: str) -> Iterator[OpenPage]:
    """A fresh Chromium context on the app: ``open_page(query, viewport, color_scheme)``."""
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        contexts: list[Any] = []

        def open_(
            query: dict[str, str] | None = None,
            viewport: dict[str, int] = DESKTOP,
            color_scheme: Literal["light", "dark"] = "light",
        ) -> Browser:
            context = chromium.new_context(viewport=viewport, color_scheme=color_scheme)
            contexts.append(context)
            page = context.new_page()
            session = Browser(page)
            context.on("request", lambda request: session.requests.append(request.url))
            page.on("websocket", lambda ws: session.requests.append(ws.url))

            def on_dialog(dialog: Dialog) -> None:
                session.dialogs.append(f"{dialog.type}: {dialog.message}")
                dialog.dismiss()

            page.on("dialog", on_dialog)
            page.goto(base_url + (f"?{urlencode(query)}" if query else ""))
            expect(page.locator("#pce-question textarea")).to_be_visible(timeout=30_000)
            return session

        try:
            yield open_
        finally:
            for context in contexts:
                context.close()
            chromium.close()


@pytest.fixture
def browser(open_page: OpenPage) -> Browser:
    return open_page()


def card(page: Page) -> Locator:
    return page.locator("#pce-card .pce-card")


def blocking(violations: dict[str, list[str]]) -> dict[str, list[str]]:
    return {k: v for k, v in violations.items() if k in BLOCKING_IMPACTS}


def radio_value(page: Page, elem_id: str) -> str:
    return str(page.locator(f"#{elem_id} input[type=radio]:checked").get_attribute("value"))


# --- tests ---------------------------------------------------------------------------------------


def test_vignette_gives_tier_card_with_doi_links_and_the_panel_changes_the_tier(
    browser: Browser,
) -> None:
    page = browser.page
    expect(page.locator("#pce-disclaimer")).to_contain_text("Decision support only")
    browser.ask(VIGNETTE)

    expect(card(page)).to_have_attribute("data-tier", "surveillance", timeout=ANSWER_TIMEOUT_MS)
    expect(card(page)).to_contain_text("Clinical surveillance")
    expect(card(page)).to_contain_text("Basis")
    expect(card(page)).to_contain_text("asymptomatic-peripheral")
    chat = page.locator("#pce-chat")
    expect(chat.get_by_test_id("bot").first).to_contain_text("[1]")
    expect(page.locator("#pce-extracted")).to_contain_text("no symptoms")

    card_doi = card(page).locator('a[href^="https://doi.org/10."]').first
    expect(card_doi).to_be_visible()
    assert (card_doi.get_attribute("rel") or "").startswith("noopener")

    # The collapsible citations block in the chat: closed at first, DOI links once opened.
    chat.get_by_text("Citations", exact=False).first.click()
    chat_doi = chat.locator('a[href^="https://doi.org/10."]').first
    expect(chat_doi).to_be_visible()

    # Findings panel: symptoms yes overrides the text -> anticoagulation, and the card says so.
    page.locator("#pce-symptomatic").get_by_test_id("yes-radio-label").click()
    expect(card(page)).to_have_attribute("data-tier", "anticoagulation", timeout=ANSWER_TIMEOUT_MS)
    expect(card(page)).to_contain_text("was Clinical surveillance")
    expect(page.locator("#pce-extracted")).to_contain_text("findings panel")
    expect(chat).to_contain_text("Re-evaluated")
    browser.screenshot("ui-browser.png")
    page.evaluate("window.scrollTo(0, 0)")
    browser.screenshot("ui-browser-viewport.png", full_page=False)

    assert browser.dialogs == []
    assert browser.outside_loopback() == [], "the page must not fetch anything off loopback"
    assert any("/gradio_api/queue/join" in u for u in browser.requests)


def test_script_question_is_rendered_as_text_and_no_dialog_fires(browser: Browser) -> None:
    page = browser.page
    browser.ask(XSS)
    chat = page.locator("#pce-chat")
    expect(chat.get_by_test_id("user").last).to_have_text(XSS, timeout=ANSWER_TIMEOUT_MS)
    expect(chat.get_by_test_id("bot").first).not_to_be_empty(timeout=ANSWER_TIMEOUT_MS)
    expect(card(page)).not_to_contain_text("No recommendation yet", timeout=ANSWER_TIMEOUT_MS)
    page.wait_for_timeout(500)  # anything the message might have run would have run by now

    assert chat.locator("script").count() == 0
    assert browser.dialogs == []
    browser.screenshot("ui-browser-script.png")
    assert browser.outside_loopback() == [], "the page must not fetch anything off loopback"


@pytest.mark.parametrize(
    ("viewport", "scheme"),
    [(DESKTOP, "light"), (PHONE, "light"), (DESKTOP, "dark")],
    ids=["desktop", "phone", "desktop-dark-mode"],
)
def test_axe_finds_no_critical_or_serious_violation_empty_and_after_an_answer(
    open_page: OpenPage, viewport: dict[str, int], scheme: Literal["light", "dark"]
) -> None:
    browser = open_page(viewport=viewport, color_scheme=scheme)
    page = browser.page
    width = f"{viewport['width']}{'-dark' if scheme == 'dark' else ''}"
    empty = browser.axe(f"empty-{width}")
    assert blocking(empty) == {}, empty
    # axe rates a missing level-one heading 'moderate': checked here so it cannot come back.
    expect(page.locator("h1")).to_have_count(1)

    # escalations, a derived input, an overridden statement, follow-up options, citations: the
    # most markup
    browser.ask(DETERIORATED_SYMPTOMS_UNSTATED)
    expect(card(page).locator(".pce-escalation").first).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    # The basis panel shows the span it used and the one it overrode, on the finding's row.
    unstable = card(page).locator('tr[data-input="hemodynamic_instability"]')
    expect(unstable).to_contain_text("“hypotensive”")
    overrode = unstable.locator(".pce-overridden")
    expect(overrode).to_be_visible()
    expect(overrode).to_contain_text("“Initially stable”")
    expect(overrode).to_contain_text("superseded by a later statement")
    expect(
        page.locator('#pce-extracted li[data-finding="hemodynamic_instability"] .pce-overridden')
    ).to_contain_text("“Initially stable”")
    derived = card(page).locator(".pce-derived")
    expect(derived).to_be_visible()
    derived.locator("summary").click()  # opened: axe checks its rationale and source links too
    expect(derived.locator("cite a").first).to_be_visible()
    citations = page.locator("#pce-chat details.pce-chat-citations summary").first
    expect(citations).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    citations.click()  # opened, so axe checks the cited passages and their links too
    expect(page.locator("#pce-chat details.pce-chat-citations a").first).to_be_visible()
    answered = browser.axe(f"answer-{width}")
    browser.screenshot(f"ui-axe-answer-{width}.png")
    assert blocking(answered) == {}, answered
    assert browser.outside_loopback() == [], "axe is injected from the package, never fetched"


def test_on_a_phone_the_tier_and_its_escalations_are_on_the_first_screen(
    open_page: OpenPage,
) -> None:
    browser = open_page(viewport=PHONE)
    page = browser.page
    browser.ask(UNSTABLE_INTRACARDIAC)
    tier = card(page).locator(".pce-tier-name")
    expect(card(page).locator(".pce-escalation").first).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect(tier).to_be_in_viewport()  # the page brings the card into view after the answer

    page.evaluate("window.scrollTo(0, 0)")
    browser.screenshot("ui-phone-answer.png", full_page=False)
    escalations = card(page).locator(".pce-escalation")
    assert escalations.count() == 2
    boxes = [tier.bounding_box(), *(escalations.nth(i).bounding_box() for i in range(2))]
    assert all(b is not None for b in boxes)
    bottoms = [b["y"] + b["height"] for b in boxes if b]
    assert max(bottoms) <= PHONE["height"], f"below the first screen: {bottoms}"
    # What made them fit: each escalation's certainty, rationale and sources are one tap away.
    for i in range(2):
        why = escalations.nth(i).locator("details")
        expect(why.locator(".pce-certainty")).to_be_hidden()
        why.locator("summary").click()
        expect(why.locator(".pce-certainty")).to_be_visible()
        expect(why.locator(".pce-rationale")).to_be_visible()
        expect(why.locator("ol.pce-cites li").first).to_be_visible()
    prose = page.locator("#pce-chat").get_by_test_id("bot").first.bounding_box()
    card_box = card(page).bounding_box()
    assert prose is not None and card_box is not None
    assert card_box["y"] < prose["y"], "the card comes before the evidence prose"
    browser.screenshot("ui-phone-answer-full.png")


def test_link_with_findings_prefills_the_panel_and_the_question(open_page: OpenPage) -> None:
    question = "Cement emboli after vertebroplasty: what is the next step?"
    browser = open_page(
        query={
            "question": question,
            "symptomatic": "yes",
            "location": "central",
            "hemodynamic_instability": "maybe",
        }
    )
    page = browser.page
    expect(card(page)).to_have_attribute("data-tier", "surgical_embolectomy", timeout=30_000)
    expect(card(page)).to_contain_text("findings panel alone")
    assert radio_value(page, "pce-symptomatic") == "yes"
    assert radio_value(page, "pce-location") == "central"
    assert radio_value(page, "pce-unstable") == "unknown"  # 'maybe' is not a value: left out
    note = page.locator("#pce-prefill")
    expect(note).to_contain_text("Ignored from the link")
    expect(note).to_contain_text("hemodynamic_instability")
    box = page.locator("#pce-question textarea")
    expect(box).to_have_value(question)
    browser.screenshot("ui-link-prefill.png", full_page=False)

    box.press("Enter")
    expect(card(page)).to_contain_text("the last question", timeout=ANSWER_TIMEOUT_MS)
    expect(card(page)).to_have_attribute("data-tier", "surgical_embolectomy")
    expect(page.locator("#pce-extracted")).to_contain_text("findings panel")
    assert browser.outside_loopback() == []


def test_the_link_card_of_a_live_cds_response_opens_the_same_case_in_the_ui(
    base_url: str, open_page: OpenPage
) -> None:
    """End to end: an EHR posts a FHIR hook, the clinician follows the card's link to the UI."""
    hook = json.loads((FHIR_FIXTURES / "asymptomatic-segmental-surveillance.json").read_text())
    service = base_url.rstrip("/") + "/cds-services/pce-management"
    response = httpx.post(service, json=hook, timeout=60)
    response.raise_for_status()
    (cds_card,) = [c for c in response.json()["cards"] if c.get("links")]
    link = cds_card["links"][0]
    assert link["type"] == "absolute" and link["url"].startswith(base_url)
    params = {k: v[0] for k, v in parse_qs(urlsplit(link["url"]).query).items()}
    tier = re.search(r"`(surveillance|anticoagulation|surgical_embolectomy|needs_information)`",
                     cds_card["detail"])
    assert tier is not None, cds_card["detail"]

    browser = open_page(query=params)
    page = browser.page
    expect(card(page)).to_have_attribute("data-tier", tier.group(1), timeout=30_000)
    assert radio_value(page, "pce-symptomatic") == params["symptomatic"]
    assert radio_value(page, "pce-location") == params["location"]
    expect(page.locator("#pce-question textarea")).to_have_value(params["question"])
    assert browser.outside_loopback() == []
