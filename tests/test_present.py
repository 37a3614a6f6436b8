"""The presentation layer: one view model, rendered by templates for every face.

The assistant uses the hash embedder (no model); recommendations come from the shipped rules
table through ``Assistant.recommend_from``, as the CDS service and the findings panel get them.
"""

from __future__ import annotations

import ast
import html
import itertools
import re
from pathlib import Path
from typing import Any

import pytest

from assistant import present
from assistant.assistant import Assistant
from assistant.errors import KnowledgeError
from assistant.present import render
from assistant.present.view import display_time
from assistant.retrieval.embeddings import HashEmbedder
from assistant.settings import Settings
from assistant.types import (
    Certainty,
    Citation,
    DerivedInput,
    Evidence,
    Findings,
    Recommendation,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
KNOWLEDGE = REPO_ROOT / "knowledge"
PACKAGE = REPO_ROOT / "assistant"
HOSTILE = '<img src=x onerror="alert(1)"> ${alert(2)} {{x}} [a](javascript:alert(3)) ![i](http://e.example/i.png)'


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    data_dir = tmp_path_factory.mktemp("present") / "data"
    return Assistant.from_settings(
        Settings(data_dir=data_dir), embedder=HashEmbedder(), audit=False
    )


@pytest.fixture(scope="module")
def text() -> present.Presentation:
    return present.load_presentation(KNOWLEDGE / "presentation.yaml")


def recommend(assistant: Assistant, **findings: Any) -> tuple[Any, Recommendation]:
    found, rec, _ = assistant.recommend_from(findings)
    return found, rec


# --- the words come from knowledge/, and agree with the rules table ------------------------------


def test_tier_names_are_the_labels_of_the_rules_rows_of_that_tier(
    assistant: Assistant, text: present.Presentation
) -> None:
    cases = {
        "surveillance": {"symptomatic": "no", "location": "peripheral"},
        "anticoagulation": {"symptomatic": "yes", "location": "peripheral"},
        "surgical_embolectomy": {"symptomatic": "yes", "location": "central"},
        "needs_information": {"symptomatic": "yes"},
    }
    for tier, findings in cases.items():
        _, rec = recommend(assistant, **findings)
        assert rec.tier == tier
        assert text.tier_name(tier) == present.card_view(rec, _, text).tier_name
        assert text.tier_name(tier).lower() == rec.label.lower()


def test_short_location_convention_restates_the_rules_tables_convention(
    assistant: Assistant, text: present.Presentation
) -> None:
    full = assistant.location_convention.lower()
    anatomy = ("trunk", "main", "right", "left", "segmental", "lobar", "atrium", "ventricle")
    for caption in (text.location_convention_short, text.findings["location"].hint or ""):
        said = [w for w in anatomy if re.search(rf"\b{w}\b", caption.lower())]
        assert said, caption
        assert all(w in full for w in said), (caption, said)
    assert "not from a source" in text.location_convention_short
    assert "not a definition from the literature" in full
    intracardiac = (text.findings["intracardiac_cement"].hint or "").lower()
    assert "right atrium" in intracardiac and "right atrium" in full


def test_escalation_hints_say_the_tier_is_unchanged_as_the_rules_table_does(
    assistant: Assistant, text: present.Presentation
) -> None:
    _, rec = recommend(
        assistant, symptomatic="no", location="peripheral", hemodynamic_instability="yes"
    )
    assert rec.tier == "surveillance" and rec.escalations
    assert "tier is unchanged" in rec.escalations[0].rationale.lower()
    assert "never changes the tier" in (text.findings["hemodynamic_instability"].hint or "")
    assert "escalation" in (text.findings["intracardiac_cement"].hint or "").lower()


def test_faces_and_the_presentation_layer_hold_no_clinical_captions(
    text: present.Presentation,
) -> None:
    captions = [t.name for t in text.tiers.values()]
    captions += [f.label for f in text.findings.values() if f.label != f.short]
    captions += [f.hint for f in text.findings.values() if f.hint]
    captions += [text.location_convention_short[:40], *(e[:40] for e in text.examples)]
    captions += list(text.certainty_appraisal.values())
    captions += [text.overridden.later, text.overridden.explicit]
    templates = (text.derived, text.cds_link.question, text.cds_link.unclear_location)
    captions += [part for t in templates for part in re.split(r"\{\w+\}", t) if len(part) > 12]
    modules = [*(PACKAGE / "present").rglob("*.py"), *(PACKAGE / "web").rglob("*.py")]
    literals = " ".join(
        node.value
        for path in [*modules, PACKAGE / "cli.py"]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    )
    assert [c for c in captions if c in literals] == []


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda raw: raw.replace("version: 1", "version: 1\nsubtitel: typo"), "subtitel"),
        (
            lambda raw: raw.replace('  needs_information: {name: "More information needed"}\n', ""),
            "tiers",
        ),
        (
            lambda raw: raw.replace('    hint: "Attributed to the cement emboli"\n', ""),
            "symptomatic",
        ),
        (lambda raw: raw.replace("because {because}", "because {becuase}"), "derived"),
        (lambda raw: raw.replace('  source: "as graded by the cited source"\n', ""), "appraisal"),
        (lambda raw: raw.replace("after {procedure}:", "after it:"), "question"),
        (lambda raw: raw.replace('  later: "superseded by a later statement"\n', ""), "later"),
    ],
    ids=[
        "unknown-field",
        "missing-tier",
        "panel-finding-without-hint",
        "derived-placeholder-misspelt",
        "appraisal-word-missing",
        "link-question-without-procedure",
        "overridden-reason-missing",
    ],
)
def test_a_bad_presentation_file_names_the_file_and_the_field(
    tmp_path: Path, edit: Any, field: str
) -> None:
    path = tmp_path / "presentation.yaml"
    path.write_text(edit((KNOWLEDGE / "presentation.yaml").read_text(encoding="utf-8")))
    with pytest.raises(KnowledgeError) as info:
        present.load_presentation(path)
    assert str(path) in str(info.value) and field in str(info.value)


# --- the view model and what each face shows -----------------------------------------------------


@pytest.mark.parametrize(
    ("findings", "first_line"),
    [
        (
            {"symptomatic": "yes", "location": "peripheral"},
            "**Decision table: Anticoagulation** (symptomatic, peripheral emboli) — see the card",
        ),
        (
            {"symptomatic": "yes", "location": "central", "intracardiac_cement": "yes"},
            "**Decision table: Consider surgical embolectomy** (symptomatic, central emboli) · "
            "⚠️ **Escalation: intracardiac cement** — see the card",
        ),
        (
            {"symptomatic": "no"},
            "**Decision table: More information needed** (no symptoms, location not established)"
            " — see the questions below",
        ),
    ],
)
def test_chat_answer_opens_with_the_one_line_tier_summary(
    assistant: Assistant, findings: dict[str, str], first_line: str
) -> None:
    answer = assistant.ask("Cement emboli after vertebroplasty: how to manage?", findings=findings)
    view = present.answer_view(answer, present.default_presentation())
    chat = present.chat_markdown(view)
    head, _, narrative = chat.partition("\n\n")
    assert head.startswith(first_line)
    assert "\n" not in head
    assert narrative.startswith(present.md_text(answer.text)[:60])


def test_no_card_means_no_summary_line(assistant: Assistant) -> None:
    answer = assistant.ask("How do I bake sourdough bread?")
    view = present.answer_view(answer, present.default_presentation())
    assert view.card is None and view.no_card_reason == "out_of_scope"
    assert "Decision table" not in present.chat_markdown(view)
    assert 'data-tier="none"' in present.answer_card_html(view)


def test_card_shows_certainty_of_evidence_when_the_recommendation_carries_it(
    assistant: Assistant, text: present.Presentation
) -> None:
    findings, shipped = recommend(assistant, symptomatic="yes", location="peripheral")
    assert shipped.certainty is not None, "every shipped row states its certainty"
    rec = shipped.model_copy(update={"certainty": None})
    plain = present.card_view(rec, findings, text)
    assert plain.certainty is None
    assert "Certainty of evidence" not in present.card_html(plain)

    certainty = Certainty(level="very low", basis="case reports and reviews", appraisal="tool")
    graded = rec.model_copy(update={"certainty": certainty})
    card = present.card_view(graded, findings, text)
    assert card.certainty is not None and card.certainty.level == "very low"
    html = present.card_html(card)
    assert "Certainty of evidence: <b>very low</b>" in html and "case reports and reviews" in html
    assert "Certainty of evidence: **very low**" in present.cds_detail(graded, findings, text)


def test_an_escalations_actions_are_in_sight_and_its_certainty_and_sources_behind_why(
    assistant: Assistant, text: present.Presentation
) -> None:
    """On a phone the actions must fit the first screen; the support stays one click away."""
    findings, rec = recommend(
        assistant, hemodynamic_instability="yes", intracardiac_cement="yes", symptomatic="yes"
    )
    card = present.card_view(rec, findings, text)
    assert len(card.escalations) == 2 and all(e.certainty for e in card.escalations)
    shown = present.card_html(card)
    for e in card.escalations:
        assert e.certainty is not None
        block = shown.split(f'data-escalation="{e.id}"', 1)[1].split('class="pce-escalation"')[0]
        in_sight, _, rest = (html.unescape(part) for part in block.partition("<details"))
        behind_why = rest.partition("</details>")[0]
        for action in e.actions:
            assert action in in_sight, action
        assert f"Why (certainty: {e.certainty.level}; {len(e.citations)} sources)" in behind_why
        assert "Certainty of evidence" not in in_sight
        assert f"Certainty of evidence: <b>{e.certainty.level}</b>" in behind_why
        assert e.certainty.basis in behind_why
        assert e.rationale in behind_why
        for source in e.sources:
            assert source.title in behind_why, source.title


def _faces(answer: Any, text: present.Presentation) -> dict[str, str]:
    """What each face shows of one answer's card (HTML unescaped, so words compare as written)."""
    rec = answer.recommendation
    view = present.answer_view(answer, text)
    assert rec is not None and view.card is not None
    turn = present.TurnView(kind="ask", question=answer.question, answer=view)
    return {
        "card": html.unescape(present.card_html(view.card)),
        "export": html.unescape(
            present.export_markdown([turn], answer.versions, answer.disclaimer)
        ),
        "cds": html.unescape(present.cds_detail(rec, answer.findings, text)),
        "cli": present.cli_text(answer, text),
    }


@pytest.mark.parametrize("appraisal", ["tool", "source"])
def test_every_face_says_who_graded_the_certainty_in_the_presentation_files_words(
    assistant: Assistant, text: present.Presentation, appraisal: str
) -> None:
    answer = assistant.ask(
        "Cement emboli after vertebroplasty: next step?",
        findings={"symptomatic": "yes", "location": "central", "intracardiac_cement": "yes"},
    )
    rec = answer.recommendation
    assert rec is not None and rec.escalations
    row = Certainty(level="very low", basis="case reports only", appraisal=appraisal)  # type: ignore[arg-type]
    overlay = Certainty(level="low", basis="one cohort", appraisal=appraisal)  # type: ignore[arg-type]
    graded = rec.model_copy(
        update={
            "certainty": row,
            "escalations": tuple(
                e.model_copy(update={"certainty": overlay}) for e in rec.escalations
            ),
        }
    )
    words = text.certainty_appraisal[appraisal]
    for face, shown in _faces(answer.model_copy(update={"recommendation": graded}), text).items():
        plain = shown.replace("**", "").replace("<b>", "").replace("</b>", "")
        plain = re.sub(r"<[^>]+>", "", plain)
        assert f"Certainty of evidence: very low — case reports only ({words})" in plain, face
        assert f"Certainty of evidence: low — one cohort ({words})" in plain, face
        assert f"({appraisal})" not in plain, face  # never the raw value


def test_every_face_shows_a_derived_input_as_the_tables_convention_not_as_stated(
    assistant: Assistant, text: present.Presentation
) -> None:
    answer = assistant.ask(
        "Cement emboli after vertebroplasty: next step?",
        findings={"hemodynamic_instability": "yes", "location": "central"},
    )
    rec = answer.recommendation
    assert rec is not None and answer.findings.symptomatic is None
    (derived,) = rec.derived
    assert (derived.input, derived.value) == ("symptomatic", "yes")
    assert rec.inputs["symptomatic"] == "yes"
    statement = text.derived.format(value=derived.value, because=derived.because)
    faces = _faces(answer, text)
    for face, shown in faces.items():
        assert statement in shown, face
        assert derived.rationale[:80] in shown, face
        assert derived.citations[0].title in shown and derived.citations[0].section in shown, face
    # The basis row says where the value came from (the table), not "not stated".
    symptoms_row = faces["card"].split('data-input="symptomatic"')[1].split("</tr>")[0]
    assert statement in symptoms_row and "not stated" not in symptoms_row
    assert "symptomatic = not stated in the record" not in faces["cds"]
    assert "symptomatic = **yes**" not in faces["cds"]  # never as if the record had said it


@pytest.mark.parametrize(
    ("question", "span", "value"),
    [
        ("Possible cement in the right atrium. Asymptomatic, peripheral cement emboli after "
         "vertebroplasty. Next step?", "right atrium", "possible"),
        ("Dyspnoeic after kyphoplasty, cement in the RPA. Next step?", None, None),
    ],
    ids=["hedged-heart", "symptomatic-central"],
)
def test_every_face_asks_about_cement_in_the_heart_and_shows_the_hedged_span(
    assistant: Assistant, text: present.Presentation, question: str, span: str | None,
    value: str | None,
) -> None:
    answer = assistant.ask(question)
    rec = answer.recommendation
    assert rec is not None and answer.findings.intracardiac_cement is None
    asked = next(m for m in rec.missing if m.finding == "intracardiac_cement")
    assert asked.question in answer.follow_up_questions
    faces = _faces(answer, text)
    for face, shown in faces.items():
        assert asked.question in shown, face
        if span is not None:
            assert f"“{span}”" in shown, face
    if span is not None:
        row = re.sub(r"<[^>]+>", "", _row(faces["card"], 'data-input="intracardiac_cement"'))
        assert f"“{span}”" in row and "not stated" not in row
        assert f"    - intracardiac_cement = {value} (text: “{span}”)" in faces["cli"]
        assert f"- intracardiac_cement = **{value}**: “{span}”" in faces["cds"]
        assert "intracardiac_cement = not stated in the record" not in faces["cds"]


def test_a_finding_read_from_a_record_names_its_resource_and_date_in_every_face(
    assistant: Assistant, text: present.Presentation
) -> None:
    found = Findings(
        location="peripheral",
        symptomatic=False,
        evidence=(
            Evidence(
                finding="location", value="peripheral", text="segmental branches", origin="text",
                resource="DiagnosticReport/ct-9", resource_date="2026-03-14T08:00:00Z",
            ),
            Evidence(
                finding="symptomatic", value="no", text="SpO2 97 % (LOINC 59408-5)",
                origin="ehr", resource="Observation/o-9", resource_date="2026-03-14T09:30:00Z",
            ),
        ),
    )  # fmt: skip
    answer = assistant.ask("Cement emboli after vertebroplasty: next step?")
    answer = answer.model_copy(
        update={"findings": found, "recommendation": assistant.recommend(found)}
    )
    for face, shown in _faces(answer, text).items():
        assert "DiagnosticReport/ct-9 · 2026-03-14 08:00 UTC" in shown, face
        assert "Observation/o-9 · 2026-03-14 09:30 UTC" in shown, face
        assert "“segmental branches”" in shown, face
        assert "“SpO2" not in shown, face  # a coded value is not a quoted span


DETERIORATION = (
    "Initially stable after L1 vertebroplasty, then refractory shock requiring vasopressors; "
    "CT shows cement in segmental arteries. Dyspnoeic. What now?"
)


def _row(html_text: str, marker: str) -> str:
    """One row of a card's basis table or of the extracted-findings list (HTML unescaped)."""
    return html.unescape(html_text.split(marker, 1)[1].split("</tr>")[0].split("</li>")[0])


def test_every_face_shows_the_span_used_and_the_span_it_overrode(
    assistant: Assistant, text: present.Presentation
) -> None:
    answer = assistant.ask(DETERIORATION)
    assert answer.findings.hemodynamic_instability is True
    assert [e.text for e in answer.findings.overridden] == ["Initially stable"]
    words = text.overridden
    overrode = f"{words.label} “Initially stable” (this question) — {words.later}"
    view = present.answer_view(answer, text)
    assert view.card is not None
    (row,) = [r for r in view.card.basis if r.name == "hemodynamic_instability"]
    assert [o.evidence.text for o in row.overridden] == ["Initially stable"]
    assert row.overridden[0].by == "later"
    # The web UI: the basis panel and the extracted-findings list, each on the finding's own row.
    card = present.card_html(view.card)
    basis = re.sub(r"<[^>]+>", "", _row(card, 'data-input="hemodynamic_instability"'))
    assert "“refractory shock” (this question)" in basis and overrode in basis
    found = _row(present.findings_html(view.findings), 'data-finding="hemodynamic_instability"')
    assert "“refractory shock”" in found
    assert "“Initially stable”" in found and words.later in found
    for other in ("symptomatic", "location"):  # nothing superseded there: nothing shown
        assert words.later not in _row(card, f'data-input="{other}"')
    faces = _faces(answer, text)
    # Markdown export: a sub-item under the finding's basis line.
    assert (
        "- hemodynamic_instability = yes — “refractory shock” (this question); “vasopressors” "
        f"(this question)\n  - {overrode}\n"
    ) in faces["export"]
    # CLI: right after the last span of that finding.
    cli = faces["cli"].splitlines()
    at = cli.index("    - hemodynamic_instability = yes (text: “vasopressors”)")
    assert cli[at + 1].strip() == overrode
    # CDS card detail.
    cds = faces["cds"].splitlines()
    at = cds.index("- hemodynamic_instability = **yes**: “vasopressors”")
    assert cds[at + 1] == f"  - {words.label} “Initially stable” — {words.later}"


def test_a_statement_the_panel_overrode_says_the_explicit_value_won(
    assistant: Assistant, text: present.Presentation
) -> None:
    answer = assistant.ask(
        "Asymptomatic; cement in segmental arteries after kyphoplasty. Next step?",
        findings={"symptomatic": "yes"},
    )
    assert answer.findings.symptomatic is True
    view = present.answer_view(answer, text)
    (item,) = view.findings.rows[0].overridden
    assert (item.evidence.text, item.by, item.note) == (
        "Asymptomatic", "explicit", text.overridden.explicit
    )
    for face, shown in _faces(answer, text).items():
        assert "“Asymptomatic”" in shown and text.overridden.explicit in shown, face
        assert text.overridden.later not in shown, face


def test_an_overridden_report_span_names_its_resource_and_date_in_every_face(
    assistant: Assistant, text: present.Presentation
) -> None:
    found = Findings(
        symptomatic=True,
        location="peripheral",
        evidence=(
            Evidence(
                finding="symptomatic", value="yes", text="short of breath", origin="text",
                resource="DiagnosticReport/ct-2", resource_date="2026-03-14T08:00:00Z",
            ),
            Evidence(
                finding="location", value="peripheral", text="segmental branches", origin="text",
                resource="DiagnosticReport/ct-1", resource_date="2026-03-12T08:00:00Z",
            ),
        ),
        overridden=(
            Evidence(
                finding="symptomatic", value="no", text="Asymptomatic", origin="text",
                resource="DiagnosticReport/ct-1", resource_date="2026-03-12T08:00:00Z",
            ),
        ),
    )  # fmt: skip
    answer = assistant.ask("Cement emboli after vertebroplasty: next step?")
    answer = answer.model_copy(
        update={"findings": found, "recommendation": assistant.recommend(found)}
    )
    for face, shown in _faces(answer, text).items():
        line = next(x for x in shown.splitlines() if "“Asymptomatic”" in x)
        assert "DiagnosticReport/ct-1 · 2026-03-12 08:00 UTC" in line, face
        assert text.overridden.later in line, face


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("2026-03-14T08:00:00Z", "2026-03-14 08:00 UTC"),
        ("2026-03-14T08:00:00+00:00", "2026-03-14 08:00 UTC"),
        ("2026-03-14T08:00:00+01:00", "2026-03-14 08:00 UTC+0100"),
        ("2026-03-14T08:00:00", "2026-03-14 08:00"),
        ("2026-03-14", "2026-03-14"),
        ("last Tuesday", "last Tuesday"),
        (None, ""),
    ],
)
def test_record_times_are_shown_as_a_clinician_reads_them(value: str | None, shown: str) -> None:
    assert display_time(value) == shown


def test_every_face_shows_the_same_tier_actions_and_escalations(
    assistant: Assistant, text: present.Presentation
) -> None:
    question = "Short of breath after kyphoplasty, cement in the right pulmonary artery. Next step?"
    answer = assistant.ask(question, findings={"hemodynamic_instability": "yes"})
    rec = answer.recommendation
    assert rec is not None and rec.escalations
    view = present.answer_view(answer, text)
    assert view.card is not None
    faces = {
        "card": present.card_html(view.card),
        "chat": present.chat_markdown(view),
        "export": present.export_markdown(
            [present.TurnView(kind="ask", question=question, answer=view)],
            answer.versions,
            answer.disclaimer,
        ),
        "cds": present.cds_detail(rec, answer.findings, text),
        "cli": present.cli_text(answer, text),
    }
    for name, shown in faces.items():
        assert (view.card.tier_name if name == "chat" else rec.tier) in shown, name
        assert rec.escalations[0].label in shown, name
    for name in ("card", "export", "cds", "cli"):
        for action in (*rec.actions, *rec.escalations[0].actions):
            assert action in faces[name], (name, action)


def test_views_are_json(assistant: Assistant, text: present.Presentation) -> None:
    answer = assistant.ask("Asymptomatic peripheral cement emboli: anticoagulate?")
    dumped = present.answer_view(answer, text).model_dump(mode="json")
    assert dumped["card"]["tier"] == answer.recommendation.tier  # type: ignore[union-attr]
    assert dumped["citations"][0]["links"][0]["url"].startswith("https://")


# --- escaping and links --------------------------------------------------------------------------


def test_markdown_filter_shows_html_as_text_and_breaks_link_syntax() -> None:
    out = present.md_text(HOSTILE + "\n[ref]: http://e.example/x.png")
    assert "<img" not in out and "&lt;img" in out
    assert "](" not in out
    assert "\n\\[ref]:" in out


def test_templates_escape_every_field_from_sources_and_questions(
    assistant: Assistant, text: present.Presentation
) -> None:
    answer = assistant.ask("Asymptomatic peripheral cement emboli: anticoagulate?")
    rec = answer.recommendation
    assert rec is not None
    bad = answer.citations[0].model_copy(
        update={"title": HOSTILE, "section": HOSTILE, "snippet": HOSTILE, "url": "javascript:x()"}
    )
    span = Evidence(
        finding="symptomatic", value="yes", text=HOSTILE, origin="text",
        resource=HOSTILE, resource_date=HOSTILE,
    )  # fmt: skip
    derived = DerivedInput(
        id="d", input="symptomatic", value="yes", because=HOSTILE, rationale=HOSTILE,
        citations=(bad,), evidence=(span,),
    )  # fmt: skip
    rec = rec.model_copy(
        update={
            "actions": (HOSTILE,),
            "caveats": (HOSTILE,),
            "rationale": HOSTILE,
            "citations": (bad,),
            "derived": (derived,),
            "certainty": Certainty(level="low", basis=HOSTILE, appraisal="tool"),
        }
    )
    hostile = answer.model_copy(
        update={
            "text": HOSTILE,
            "question": HOSTILE,
            "citations": (bad,),
            "recommendation": rec,
            "findings": answer.findings.model_copy(
                update={"evidence": (span,), "overridden": (span,)}
            ),
        }
    )
    view = present.answer_view(hostile, text)
    assert view.card is not None
    page = present.card_html(view.card) + present.findings_html(view.findings)
    assert "<img" not in page and "${" not in page and "{{" not in page
    assert 'href="javascript' not in page and 'src="http' not in page
    assert "e.example" in page  # shown, as text
    record = present.RecordView(
        procedure=present.ProcedureView(name=HOSTILE, resource=HOSTILE, when=HOSTILE),
        reports=(present.ReportView(resource=HOSTILE, title=HOSTILE, when=HOSTILE),),
        vitals=(
            present.VitalView(
                description=HOSTILE, resource=HOSTILE, threshold="met", convention=HOSTILE
            ),
        ),
        notes=(HOSTILE,),
    )
    markdown = "\n".join(
        [
            present.chat_markdown(view),
            present.citations_markdown(view),
            present.cds_detail(rec, hostile.findings, text, record),
            present.cds_unread_detail(HOSTILE),
            present.export_markdown(
                [present.TurnView(kind="ask", question=HOSTILE, answer=view)],
                answer.versions,
                answer.disclaimer,
            ),
        ]
    )
    assert "<img" not in markdown and "](javascript" not in markdown
    assert "](http://e.example" not in markdown


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://example.org/paper", True),
        ("http://example.org/paper", True),
        ("javascript:alert(1)", False),
        ("data:text/html,<b>x</b>", False),
        ("//evil.example/x", False),
        ("/relative/path", False),
    ],
)
def test_only_absolute_http_links_are_rendered(url: str, kept: bool) -> None:
    c = Citation(
        n=1, source_id="s", title="T", url=url, passage_id="s#a", section="A", snippet="x",
        evidence_type="cohort",
    )  # fmt: skip
    links = present.citation_links(c)
    assert (len(links) == 1) is kept
    assert all(link.url.startswith(("https://", "http://")) for link in links)


def test_citation_links_use_doi_then_pubmed_then_a_different_source_page() -> None:
    c = Citation(
        n=1, source_id="s", title="T", year=2020, doi="10.1016/S0140-6736(20)30183-5",
        pmid="123", url="https://doi.org/10.1016/S0140-6736(20)30183-5", passage_id="s#a",
        section="A", snippet="x", evidence_type="cohort",
    )  # fmt: skip
    links = [(link.label, link.url) for link in present.citation_links(c)]
    assert links[0] == (
        "doi:10.1016/S0140-6736(20)30183-5",
        "https://doi.org/10.1016/S0140-6736%2820%2930183-5",
    )
    assert links[1] == ("PubMed 123", "https://pubmed.ncbi.nlm.nih.gov/123/")
    assert len(links) == 3  # the source URL differs only by encoding; shown as given


def test_streamed_prefixes_grow_and_end_before_the_full_text() -> None:
    words = " ".join(f"w{i} [{i}]" for i in range(40))
    prefixes = list(render.stream_prefixes(words, words_per_chunk=5))
    assert len(prefixes) > 3
    assert all(words.startswith(p) and p.endswith(" ") for p in prefixes)
    assert all(len(a) < len(b) for a, b in itertools.pairwise(prefixes))


# --- one renderer --------------------------------------------------------------------------------

# Every module of the faces and of the presentation layer but render.py (whose helpers build the
# one kind of Markdown made in Python: a link to a vetted URL).
FACES = sorted(
    str(path.relative_to(PACKAGE))
    for path in [
        *(PACKAGE / "web").rglob("*.py"),
        *(PACKAGE / "present").glob("*.py"),
        PACKAGE / "cli.py",
    ]
    if path.name != "render.py"
)
MARKUP = re.compile(
    r"<(div|span|section|ul|ol|li|table|tr|td|th|a|b|i|em|strong|cite|details|h[1-6]|p)\b"
    r"|\*\*\w|\]\(\w"
)


def test_the_markup_check_covers_every_face() -> None:
    assert {"web/ui.py", "web/cds.py", "web/api.py", "cli.py", "present/faces.py"} <= set(FACES)


@pytest.mark.parametrize("face", FACES)
def test_faces_build_no_markup_of_their_own(face: str) -> None:
    tree = ast.parse((PACKAGE / face).read_text(encoding="utf-8"))
    strings = [
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]
    assert [s for s in strings if MARKUP.search(s)] == []
