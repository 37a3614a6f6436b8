"""The presentation layer: one view model, rendered by templates for every face.

The assistant uses the hash embedder (no model); recommendations come from the shipped rules
table through ``Assistant.recommend_from``, as the CDS service and the findings panel get them.
"""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path
from typing import Any

import pytest

from assistant import present
from assistant.assistant import Assistant
from assistant.errors import KnowledgeError
from assistant.present import render
from assistant.retrieval.embeddings import HashEmbedder
from assistant.settings import Settings
from assistant.types import Certainty, Citation, Recommendation

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
    ],
    ids=["unknown-field", "missing-tier", "panel-finding-without-hint"],
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
    findings, rec = recommend(assistant, symptomatic="yes", location="peripheral")
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
    rec = rec.model_copy(
        update={
            "actions": (HOSTILE,),
            "caveats": (HOSTILE,),
            "rationale": HOSTILE,
            "citations": (bad,),
        }
    )
    hostile = answer.model_copy(
        update={"text": HOSTILE, "question": HOSTILE, "citations": (bad,), "recommendation": rec}
    )
    view = present.answer_view(hostile, text)
    assert view.card is not None
    html = present.card_html(view.card)
    assert "<img" not in html and "${" not in html and "{{" not in html
    assert 'href="javascript' not in html and 'src="http' not in html
    assert "e.example" in html  # shown, as text
    markdown = "\n".join(
        [
            present.chat_markdown(view),
            present.citations_markdown(view),
            present.cds_detail(rec, answer.findings, text),
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

FACES = ("web/ui.py", "web/cds.py", "cli.py")
MARKUP = re.compile(r"<(div|span|section|ul|ol|li|table|tr|td|a|b|h[1-6]|p)\b|\*\*Escalation")


@pytest.mark.parametrize("face", FACES)
def test_faces_build_no_markup_of_their_own(face: str) -> None:
    tree = ast.parse((PACKAGE / face).read_text(encoding="utf-8"))
    strings = [
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]
    assert [s for s in strings if MARKUP.search(s)] == []
