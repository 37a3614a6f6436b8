"""The chat UI in a real browser: Debian's Chromium driven by Playwright, against the real model.

The server is the production app (``build_app``: HTTP API + Gradio UI) on 127.0.0.1:<free port>.
Every request the page makes is recorded; none may leave loopback (the UI must work offline).
Screenshots go to ``tests/artifacts/`` (git-ignored). Chromium comes from apt (``make browser``);
Playwright never downloads a browser here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
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
XSS = "<script>alert(1)</script>"
ANSWER_TIMEOUT_MS = 90_000


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


@pytest.fixture
def browser(base_url: str) -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = chromium.new_context(viewport={"width": 1440, "height": 1000})
        page = context.new_page()
        session = Browser(page)
        context.on("request", lambda request: session.requests.append(request.url))
        page.on("websocket", lambda ws: session.requests.append(ws.url))

        def on_dialog(dialog: Dialog) -> None:
            session.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.goto(base_url)
        expect(page.locator("#pce-question textarea")).to_be_visible(timeout=30_000)
        try:
            yield session
        finally:
            context.close()
            chromium.close()


def card(page: Page) -> Locator:
    return page.locator("#pce-card .pce-card")


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
