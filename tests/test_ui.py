"""The Gradio chat UI without a browser: handlers as plain functions, then the app over HTTP.

The assistant uses the deterministic hash embedder and an embedded Chroma under a temp directory,
so these tests need no model. ``tests/test_browser.py`` drives the same page in real Chromium.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import pytest
from fastapi.testclient import TestClient
from gradio_client import Client
from servers import serve_app as serve
from starlette.datastructures import QueryParams

from assistant.assistant import DISCLAIMER, Assistant
from assistant.present import md_text
from assistant.retrieval.embeddings import HashEmbedder
from assistant.settings import Settings
from assistant.web import ui
from assistant.web.api import create_app
from assistant.web.server import build_app

UNSET = ("unknown", "unknown", "unknown", "unknown")
SURVEILLANCE_VIGNETTE = (  # no symptoms, segmental branches
    "72-year-old woman, 2 days after T12 kyphoplasty, no symptoms; CT shows small cement emboli "
    "in segmental branches of the right lower lobe. Does she need anticoagulation?"
)
NEEDS_INFO_VIGNETTE = "Cement emboli seen on CT after kyphoplasty. How should we manage them?"
OUT_OF_SCOPE = "How do I bake sourdough bread?"
XSS = "<script>alert(1)</script>"


# --- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    """Shipped knowledge, hash embedder, embedded Chroma and audit log in a temp dir (no model).

    Module-scoped (conftest's ``settings``/``hash_embedder`` are per test) so the index is built
    once for this file.
    """
    data_dir = tmp_path_factory.mktemp("ui") / "data"
    return Assistant.from_settings(Settings(data_dir=data_dir), embedder=HashEmbedder())


@pytest.fixture
def chat(assistant: Assistant) -> ui.ChatUI:
    return ui.ChatUI(assistant)


def ask(
    chat: ui.ChatUI,
    session: ui.Session,
    question: str,
    panel: tuple[str, ...] = UNSET,
) -> list[tuple[Any, ...]]:
    """Run the streaming chat handler to the end; every yielded output tuple, in order."""
    return list(chat.respond(question, *panel, session))


def text_of(value: Any) -> str:
    """Every string inside an output (messages, updates, HTML), joined: for 'appears nowhere'."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\n".join(text_of(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return "\n".join(text_of(v) for v in value)
    if isinstance(value, ui.Session):
        return text_of(value.messages)
    return ""




# --- chat ----------------------------------------------------------------------------------------


def test_chat_streams_narrative_with_markers_then_citations_and_card(chat: ui.ChatUI) -> None:
    session = ui.Session()
    outputs = ask(chat, session, SURVEILLANCE_VIGNETTE)

    assert len(outputs) >= 3, "the narrative streams in several steps"
    narratives = [o[0][1]["content"] for o in outputs[1:-1]]
    assert all(len(a) < len(b) for a, b in itertools.pairwise(narratives))
    messages, textbox, card, found, state, dropdown = outputs[-1]
    assert textbox == ""
    assert messages[0] == {"role": "user", "content": md_text(SURVEILLANCE_VIGNETTE)}
    narrative = messages[1]["content"]
    assert "[1]" in narrative
    # The answer opens with the one-line tier summary, before the evidence.
    first_line, _, rest = narrative.partition("\n")
    assert first_line.startswith("**Decision table: Clinical surveillance**")
    assert "no symptoms, peripheral emboli" in first_line and "see the card" in first_line
    assert "[1]" in rest and "[1]" not in first_line
    assert all(n.startswith(first_line) for n in narratives), "the summary comes with the 1st words"
    citations = messages[2]
    # A native <details> block: collapsible, and keyboard and screen-reader accessible.
    head = '<details class="pce-chat-citations"><summary>📚 Citations'
    assert citations["content"].startswith(head)
    assert citations["content"].rstrip().endswith("</details>")
    assert "https://doi.org/" in citations["content"]
    assert "**[1]**" in citations["content"]
    answer = state.turns[-1].answer
    assert answer is not None and answer.recommendation is not None
    for c in answer.citations:
        assert c.title[:30] in citations["content"]
    assert 'data-tier="surveillance"' in card
    assert "Basis" in card and answer.recommendation.rule_id in card
    assert answer.versions.knowledge in card and answer.recommendation.rules_version in card
    assert "“no symptoms”" in found and "this question" in found
    assert dropdown["choices"][0][1] == answer.id


def test_every_answer_message_maps_to_its_answer_for_feedback(chat: ui.ChatUI) -> None:
    session = ui.Session()
    ask(chat, session, SURVEILLANCE_VIGNETTE)
    answer_id = session.turns[-1].answer.id  # type: ignore[union-attr]
    assistant_indices = [i for i, m in enumerate(session.messages) if m["role"] == "assistant"]
    assert assistant_indices
    assert all(session.message_answer[i] == answer_id for i in assistant_indices)


def test_chat_history_carries_findings_from_earlier_messages(chat: ui.ChatUI) -> None:
    session = ui.Session()
    ask(chat, session, "Asymptomatic patient with cement emboli after kyphoplasty. How to manage?")
    _, _, card, found, _, _ = ask(chat, session, "The cement is in segmental branches.")[-1]
    assert 'data-tier="surveillance"' in card
    assert "earlier message 1" in found


def test_basis_panel_and_findings_list_show_the_statement_a_later_one_overrode(
    chat: ui.ChatUI,
) -> None:
    session = ui.Session()
    ask(chat, session, "Asymptomatic patient with cement emboli after kyphoplasty. How to manage?")
    _, _, card, found, _, _ = ask(chat, session, "Now short of breath; segmental branches.")[-1]
    assert 'data-tier="anticoagulation"' in card
    words = chat.text.overridden
    rows = ((card, 'data-input="symptomatic"'), (found, 'data-finding="symptomatic"'))
    for shown, marker in rows:
        row = shown.split(marker, 1)[1].split("</tr>")[0].split("</li>")[0]
        assert "“short of breath”" in row
        assert 'data-overridden="symptomatic"' in row and "“Asymptomatic”" in row
        assert "earlier message 1" in row and words.later in row


def test_panel_values_override_the_text(chat: ui.ChatUI) -> None:
    session = ui.Session()
    panel = ("no", "central", "unknown", "unknown")
    *_, last = ask(chat, session, NEEDS_INFO_VIGNETTE, panel)
    _, _, card, found, _, _ = last
    assert 'data-tier="anticoagulation"' in card
    assert "findings panel" in found
    assert session.turns[-1].panel == {"symptomatic": "no", "location": "central"}


def test_changing_the_panel_reevaluates_the_last_question_and_changes_the_tier(
    chat: ui.ChatUI,
) -> None:
    session = ui.Session()
    ask(chat, session, SURVEILLANCE_VIGNETTE)
    messages, card, found, state, _ = chat.reevaluate(
        "yes", "unknown", "unknown", "unknown", session
    )
    assert 'data-tier="anticoagulation"' in card
    assert "was <b>Clinical surveillance</b>" in card
    assert "findings panel" in found
    # The note may be followed by the follow-up questions the new tier brings (haemodynamics).
    note = next(
        str(m["content"]) for m in reversed(messages) if "Re-evaluated" in str(m["content"])
    )
    assert "`anticoagulation`" in note
    assert "was `surveillance`" in note
    turn = state.turns[-1]
    assert turn.kind == "reevaluate" and turn.previous_tier == "surveillance"
    assert turn.question == state.turns[0].question

    _, card, _, _, _ = chat.reevaluate("yes", "central", "yes", "unknown", session)
    assert 'data-tier="surgical_embolectomy"' in card
    assert 'data-escalation="hemodynamic_instability"' in card


def test_setting_the_panel_back_to_unknown_returns_to_the_text(chat: ui.ChatUI) -> None:
    session = ui.Session()
    ask(chat, session, SURVEILLANCE_VIGNETTE)
    chat.reevaluate("yes", "unknown", "unknown", "unknown", session)
    _, card, _, _, _ = chat.reevaluate(*UNSET, session)
    assert 'data-tier="surveillance"' in card


def test_panel_alone_gives_a_card_before_any_question(chat: ui.ChatUI) -> None:
    session = ui.Session()
    messages, card, _, _, _ = chat.reevaluate("yes", "peripheral", "unknown", "unknown", session)
    assert messages == []
    assert 'data-tier="anticoagulation"' in card
    assert "findings panel alone" in card
    _, card, _, _, _ = chat.reevaluate(*UNSET, session)
    assert 'data-tier="none"' in card


def test_follow_up_questions_are_options_that_set_the_panel(chat: ui.ChatUI) -> None:
    session = ui.Session()
    messages, _, card, _, state, _ = ask(chat, session, NEEDS_INFO_VIGNETTE)[-1]
    assert 'data-tier="needs_information"' in card
    answer = state.turns[-1].answer
    follow = messages[-1]
    for question in answer.follow_up_questions:
        assert md_text(question) in follow["content"]
    values = {o["value"] for o in follow["options"]}
    expected = {"symptomatic=yes", "symptomatic=no", "location=central", "location=peripheral"}
    assert expected <= values

    panel = ui.apply_option("symptomatic=yes", UNSET)
    panel = ui.apply_option("location=central", panel)
    assert panel == ("yes", "central", "unknown", "unknown")
    assert ui.apply_option("nonsense=1", panel) == panel
    _, card, _, _, _ = chat.reevaluate(*panel, session)
    assert 'data-tier="surgical_embolectomy"' in card


# --- prefill from the link's query (the CDS link card) --------------------------------------------


def link(query: str) -> Any:
    """A request as Gradio hands it to the page-load handler."""
    return SimpleNamespace(query_params=QueryParams(query), username=None)


def test_link_query_is_validated_finding_by_finding() -> None:
    found = ui.prefill_from_query(
        {
            "symptomatic": ["yes"],
            "location": ["lobar"],
            "hemodynamic_instability": ["true"],
            "intracardiac_cement": ["no", "yes"],
            "question": ["  What now?  "],
            "symptoms": ["no"],
            "__theme": ["dark"],
        }
    )
    assert found.panel == {"symptomatic": "yes", "hemodynamic_instability": "yes"}
    assert found.question == "What now?"
    ignored = dict(found.ignored)
    assert set(ignored) == {"location", "intracardiac_cement", "symptoms"}
    assert "central, peripheral, unknown" in ignored["location"]
    assert "more than once" in ignored["intracardiac_cement"]


def test_opening_a_link_sets_the_panel_question_and_card(chat: ui.ChatUI) -> None:
    query = "symptomatic=yes&location=central&question=Cement+in+the+left+PA%3A+next+step%3F"
    question, *radios, note, card, found = chat.prefill(link(query))
    assert question == "Cement in the left PA: next step?"
    assert radios == ["yes", "central", "unknown", "unknown"]
    assert "Set from the link" in note and "message box" in note
    assert 'data-tier="surgical_embolectomy"' in card and "findings panel alone" in card
    assert "findings panel" in found


def test_bad_link_values_are_left_out_with_a_note_never_an_error(chat: ui.ChatUI) -> None:
    question, *radios, note, card, _ = chat.prefill(link("location=%3Cscript%3Ex&symptomatic=no"))
    assert question == gr.skip()
    assert radios == ["no", "unknown", "unknown", "unknown"]
    assert "Ignored from the link" in note and "<script" not in note and "&lt;script&gt;" in note
    assert 'data-tier="needs_information"' in card


def test_a_link_without_our_parameters_changes_nothing(chat: ui.ChatUI) -> None:
    assert chat.prefill(link("")) == (gr.skip(),) * 8
    assert chat.prefill(None) == (gr.skip(),) * 8


def test_select_option_handler_reads_the_event_value() -> None:
    event = gr.SelectData(None, {"index": 0, "value": "location=peripheral"})
    assert ui.ChatUI.select_option(*UNSET, event) == ("unknown", "peripheral", "unknown", "unknown")


# --- refusals, errors, escaping ------------------------------------------------------------------


def test_out_of_scope_question_shows_the_refusal_and_no_card(chat: ui.ChatUI) -> None:
    session = ui.Session()
    messages, _, card, _, state, _ = ask(chat, session, OUT_OF_SCOPE)[-1]
    answer = state.turns[-1].answer
    assert answer is not None and not answer.in_scope
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert "outside what I cover" in messages[1]["content"]
    assert 'data-tier="none"' in card and "outside" in card
    assert "pce-tier-" not in card


def test_script_question_is_shown_as_text_everywhere(chat: ui.ChatUI) -> None:
    session = ui.Session()
    outputs = ask(chat, session, XSS)
    # Index 5 is the feedback dropdown: Gradio renders its labels as text nodes, never as HTML.
    rendered = text_of([o[:5] for o in outputs])
    assert "<script" not in rendered.lower()
    assert outputs[-1][0][0]["content"] == "&lt;script&gt;alert(1)&lt;/script&gt;"
    exported = ui.conversation_markdown(session, chat.assistant.versions, chat.text)
    assert "<script" not in exported.lower() and "&lt;script&gt;" in exported


def test_input_error_is_a_chat_message_and_the_text_is_kept(chat: ui.ChatUI) -> None:
    session = ui.Session()
    messages, textbox, card, _, state, _ = ask(chat, session, "   ")[-1]
    assert messages[-1]["role"] == "assistant"
    assert "Please rephrase" in messages[-1]["content"] and "empty" in messages[-1]["content"]
    assert textbox == "   "
    assert card == gr.skip()  # the card stays as it was
    assert state.turns[-1].error and state.turns[-1].answer is None

    too_long = "cement embolism " * 400
    messages, textbox, *_ = ask(chat, session, too_long)[-1]
    assert "limit is 4,000" in messages[-1]["content"]
    assert textbox == too_long


def test_unexpected_error_shows_a_reference_not_a_traceback(
    chat: ui.ChatUI, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internals at /srv/db")

    monkeypatch.setattr(chat.assistant, "ask", broken)
    session = ui.Session()
    messages, *_ = ask(chat, session, SURVEILLANCE_VIGNETTE)[-1]
    content = messages[-1]["content"]
    assert "Internal error" in content and "reference" in content
    assert "secret" not in content and "Traceback" not in content


# --- feedback and export -------------------------------------------------------------------------


def test_feedback_is_recorded_in_the_audit_log(chat: ui.ChatUI) -> None:
    session = ui.Session()
    ask(chat, session, SURVEILLANCE_VIGNETTE)
    answer_id = session.turns[-1].answer.id  # type: ignore[union-attr]
    status, comment = chat.feedback(answer_id, "Evidence wrong", "Year of [3] is wrong", session)
    assert status.startswith("✓") and comment == ""
    audit = chat.assistant.audit
    assert audit is not None
    rows = [r for r in audit.rows("feedback") if r["ref"] == answer_id]
    assert len(rows) == 1
    assert rows[0]["outcome"] == "evidence_wrong"
    assert rows[0]["comment"] == "Year of [3] is wrong"
    assert rows[0]["surface"] == "ui"


def test_feedback_needs_an_answer_and_a_rating(chat: ui.ChatUI) -> None:
    session = ui.Session()
    status, comment = chat.feedback(None, "Helpful", "x", session)
    assert status.startswith("⚠️") and comment == "x"
    ask(chat, session, SURVEILLANCE_VIGNETTE)
    answer_id = session.turns[-1].answer.id  # type: ignore[union-attr]
    status, _ = chat.feedback(answer_id, None, "", session)
    assert "Choose Helpful" in status
    status, _ = chat.feedback("not-an-answer-of-this-session", "Helpful", "", session)
    assert status.startswith("⚠️")


def test_thumbs_on_a_message_record_feedback_for_its_answer(chat: ui.ChatUI) -> None:
    session = ui.Session()
    ask(chat, session, SURVEILLANCE_VIGNETTE)
    answer_id = session.turns[-1].answer.id  # type: ignore[union-attr]
    chat.like(session, gr.LikeData(None, {"index": 1, "value": "", "liked": False}))
    audit = chat.assistant.audit
    assert audit is not None
    rows = [r for r in audit.rows("feedback") if r["ref"] == answer_id]
    assert [r["outcome"] for r in rows] == ["not_helpful"]


def test_markdown_export_contains_question_citations_tier_and_basis(chat: ui.ChatUI) -> None:
    session = ui.Session()
    ask(chat, session, SURVEILLANCE_VIGNETTE)
    chat.reevaluate("yes", "unknown", "unknown", "unknown", session)
    update = chat.export(session)
    path = Path(update["value"])
    assert update["visible"] is True and path.suffix == ".md"
    text = path.read_text(encoding="utf-8")
    answer = session.turns[0].answer
    assert answer is not None
    assert SURVEILLANCE_VIGNETTE[:40] in text
    assert "tier `surveillance`" in text and "tier `anticoagulation`" in text
    assert "Tier changed from `surveillance`" in text
    assert "https://doi.org/" in text and "[1]" in text
    assert answer.citations[0].title in text
    assert "Rule `asymptomatic-peripheral`" in text
    assert "symptomatic = no" in text and "“no symptoms”" in text
    assert DISCLAIMER[:40] in text
    assert answer.versions.knowledge in text


def test_reset_starts_an_empty_conversation() -> None:
    outputs = ui.ChatUI.reset()
    assert outputs[0] == [] and isinstance(outputs[4], ui.Session)
    assert outputs[6:10] == UNSET


# --- the page and the app ------------------------------------------------------------------------


def test_page_has_named_endpoints_and_safe_chatbot(assistant: Assistant) -> None:
    blocks = ui.build_blocks(assistant)
    names = {d.get("api_name") for d in blocks.get_config_file()["dependencies"]}
    assert {"chat", "reevaluate", "feedback", "export"} <= names
    chatbots = [b for b in blocks.blocks.values() if isinstance(b, gr.Chatbot)]
    assert len(chatbots) == 1
    assert chatbots[0].sanitize_html is True
    assert "share" not in (chatbots[0].buttons or [])
    assert blocks.analytics_enabled is False


def test_theme_uses_local_system_fonts_only() -> None:
    options = ui.launch_options()
    theme = options["theme"]
    css = theme._get_theme_css() + options["css"]
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", css), "no stylesheet or font from a URL"
    assert "@import" not in css and "googleapis" not in css
    assert not theme._stylesheets
    assert options["run_history"] is False


def test_theme_has_one_light_palette_in_both_colour_schemes() -> None:
    theme = ui.theme()
    dark = [name for name in vars(theme) if name.endswith("_dark")]
    assert dark
    assert [n for n in dark if getattr(theme, n) != getattr(theme, n.removesuffix("_dark"))] == []


def test_mount_ui_asks_for_login_when_credentials_are_set(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", ui_user="clinician", ui_password="s3cret")
    assistant = Assistant.from_settings(settings, embedder=HashEmbedder(), audit=False)
    app = ui.mount_ui(create_app(assistant), assistant)
    with TestClient(app) as client:
        assert client.get("/config").status_code == 401
        assert client.get("/healthz").status_code == 200  # the HTTP API keeps its own auth
        wrong = client.post("/login", data={"username": "clinician", "password": "nope"})
        assert wrong.status_code == 400
        ok = client.post("/login", data={"username": "clinician", "password": "s3cret"})
        assert ok.status_code == 200
        assert client.get("/config").status_code == 200


def test_mount_ui_without_credentials_serves_the_page(assistant: Assistant) -> None:
    app = ui.mount_ui(create_app(assistant), assistant)
    with TestClient(app) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "fonts.googleapis.com" not in page.text
        assert client.get("/config").status_code == 200


@pytest.mark.integration  # a live uvicorn server
def test_gradio_client_chat_endpoint_over_loopback(assistant: Assistant) -> None:
    with serve(build_app(assistant=assistant)) as url:
        client = Client(url, verbose=False, download_files=False)
        try:
            endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
            assert "/chat" in endpoints and "/feedback" in endpoints
            job = client.submit(SURVEILLANCE_VIGNETTE, *UNSET, api_name="/chat")
            messages, _, card, found, _ = job.result(timeout=60)
            assert len(job.outputs()) >= 3  # streamed: the narrative grows in steps
            assert 'data-tier="surveillance"' in card
            assert "“no symptoms”" in found
            contents = [m["content"] for m in messages]
            assert any("[1]" in str(c) for c in contents)
            assert any("https://doi.org/" in str(c) for c in contents)

            messages, _, card, _, _ = client.predict(XSS, *UNSET, api_name="/chat")
            assert "<script" not in str(messages[-2:]).lower()
        finally:
            client.close()
