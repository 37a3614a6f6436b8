"""The decision table: the shipped table against the real knowledge, broken tables, and the engine.

Broken tables live in tests/fixtures/rules/ and cite a tiny fake knowledge base built here.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import itertools
import os
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from assistant.clinical.rules import Overlay, Rule, RuleTable, check_rules, load_rules
from assistant.errors import AssistantError, DataError, RulesError
from assistant.knowledge.sources import load_knowledge
from assistant.types import Citation, Conflict, Evidence, Findings

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "knowledge" / "rules.yaml"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "rules"

SYMPTOMATIC = {"yes": True, "no": False, "unknown": None}
LOCATION = {"central": "central", "peripheral": "peripheral", "unknown": None}
FLAG = {"yes": True, "no": False, "unknown": None}


@pytest.fixture(scope="module")
def knowledge() -> dict[str, Citation]:
    """The shipped knowledge's citation index: claim id -> Citation."""
    return load_knowledge(ROOT / "knowledge").citations


@pytest.fixture(scope="module")
def table(knowledge: dict[str, Citation]) -> RuleTable:
    return load_rules(SHIPPED, knowledge)


@pytest.fixture(scope="module")
def fake_citations() -> dict[str, Citation]:
    """A fake source's two claims, as the citation index the table resolves against."""
    return {
        cid: Citation(source_id="fake-2020", title="A fake source", year=2020,
                      doi="10.1234/fake", passage_id=cid, section="abstract",
                      snippet=f"Fake claim {cid}.", evidence_type="case report",
                      locator="abstract")
        for cid in ("fake-2020#algorithm", "fake-2020#severity")
    }


def rows_and_escalations(table: RuleTable) -> list[Rule | Overlay]:
    return [*table.rows, *table.escalations]


def evidence(finding: str, value: str, text: str) -> Evidence:
    return Evidence(finding=finding, value=value, text=text, origin="text")  # type: ignore[arg-type]


def findings(symptomatic: str = "unknown", location: str = "unknown",
             hemodynamic: str = "unknown", intracardiac: str = "unknown") -> Findings:
    return Findings(
        symptomatic=SYMPTOMATIC[symptomatic],
        location=LOCATION[location],  # type: ignore[arg-type]
        hemodynamic_instability=FLAG[hemodynamic],
        intracardiac_cement=FLAG[intracardiac],
    )


def conflict(finding: str, *spans: tuple[str, str]) -> Conflict:
    return Conflict(
        finding=finding,  # type: ignore[arg-type]
        evidence=tuple(
            Evidence(finding=finding, value=value, text=text, origin="text")  # type: ignore[arg-type]
            for text, value in spans
        ),
    )


# ------------------------------------------------------------------------------- shipped table
def test_rules_shipped_table_passes_every_check(knowledge: dict[str, Citation]) -> None:
    assert check_rules(SHIPPED, knowledge) == []


def test_rules_shipped_table_exposes_version_rows_and_fingerprint(table: RuleTable) -> None:
    assert table.version == "2026.11.4"
    assert table.fingerprint == hashlib.sha256(SHIPPED.read_bytes()).hexdigest()[:12]
    assert [r.id for r in table.rows] == [
        "asymptomatic-peripheral", "symptomatic-peripheral", "asymptomatic-central",
        "symptomatic-central", "symptoms-unknown", "location-unknown",
    ]
    assert dict(table.inputs) == {
        "symptomatic": ("yes", "no", "unknown"),
        "location": ("central", "peripheral", "unknown"),
    }
    assert "convention of this tool" in table.location_convention
    assert "lobar" in table.location_convention.lower()


# Every row is reached and every tier given (the exhaustive gap/overlap check runs at load).
@pytest.mark.parametrize(
    ("symptomatic", "location", "tier", "rule_id"),
    [
        ("no", "peripheral", "surveillance", "asymptomatic-peripheral"),
        ("yes", "peripheral", "anticoagulation", "symptomatic-peripheral"),
        ("no", "central", "anticoagulation", "asymptomatic-central"),
        ("yes", "central", "surgical_embolectomy", "symptomatic-central"),
        *[("unknown", loc, "needs_information", "symptoms-unknown") for loc in LOCATION],
        *[(s, "unknown", "needs_information", "location-unknown") for s in ("yes", "no")],
    ],
)
def test_rules_each_cell_of_the_table_gives_its_tier(
    table: RuleTable, symptomatic: str, location: str, tier: str, rule_id: str
) -> None:
    rec = table.recommend(findings(symptomatic, location))
    assert (rec.tier, rec.rule_id) == (tier, rule_id)


def test_rules_rows_say_what_to_do_in_their_own_words(table: RuleTable) -> None:
    expected = {
        ("asymptomatic-peripheral", "actions"): ["anticoagulation is not recommended"],
        ("asymptomatic-peripheral", "caveats"): ["Siniscalchi 2022", "LMWH"],
        ("symptomatic-peripheral", "actions"): ["oral anticoagulation", "6 months of a coumarin"],
        ("symptomatic-central", "actions"): ["with anticoagulation", "cardiothoracic",
                                             "Endovascular", "risk"],
    }
    rows = {r.id: r for r in table.rows}
    for (rule_id, field), needles in expected.items():
        text = " ".join(getattr(rows[rule_id], field))
        for needle in needles:
            assert needle in text, (rule_id, needle)


@pytest.mark.parametrize("rule_id", ["symptomatic-peripheral", "asymptomatic-central",
                                     "symptomatic-central"])
def test_rules_anticoagulating_rows_say_how_uncertain_the_evidence_is(
    table: RuleTable, rule_id: str
) -> None:
    rule = next(r for r in table.rows if r.id == rule_id)
    caveats = " ".join(rule.caveats)
    for needle in ("case reports and reviews", "no agreed standard for diagnosing or treating",
                   "did not trigger platelet aggregation", "in vitro", "Clinical Pearl 2021"):
        assert needle in caveats, (rule_id, needle)
    cited = {c.passage_id for c in rule.citations}
    assert {"krueger-2009#no-standard",
            "clinical-pearl-2021#anticoagulation-uncertain-in-vitro",
            "blinc-2004#no-platelet-aggregation",
            "gurba-2016#cement-and-clot-together"} <= cited
    assert rule.certainty is not None and rule.certainty.level == "very low"


def test_rules_citations_are_the_claims_of_the_citation_index(
    table: RuleTable, knowledge: dict[str, Citation]
) -> None:
    for item in [*rows_and_escalations(table), *table.derived]:
        assert item.citations, item.id
        for cit in item.citations:
            assert cit == knowledge[cit.passage_id], (item.id, cit.passage_id)
            assert cit.n == 0


def test_rules_cite_claims_with_their_locators(table: RuleTable) -> None:
    for item in rows_and_escalations(table):
        assert item.citations, item.id
        for c in item.citations:
            assert c.passage_id.startswith(f"{c.source_id}#"), c.passage_id
            assert c.locator and c.section == c.locator and c.snippet


def test_rules_certainty_is_carried_onto_recommendation_and_escalation(table: RuleTable) -> None:
    rec = table.recommend(findings("yes", "peripheral", hemodynamic="yes"))
    assert rec.certainty is not None and rec.certainty.level == "very low"
    assert rec.certainty.appraisal == "tool"
    (esc,) = rec.escalations
    assert esc.certainty is not None and esc.certainty.basis
    assert all(r.certainty is not None for r in rows_and_escalations(table))


def test_rules_malformed_certainty_is_refused_naming_the_row(
    tmp_path: Path, fake_citations: Mapping[str, Citation]
) -> None:
    path = tmp_path / "rules.yaml"
    text = (FIXTURES / "valid.yaml").read_text(encoding="utf-8")
    path.write_text(text.replace('    citations: ["fake-2020#algorithm"]\n',
                                 '    citations: ["fake-2020#algorithm"]\n'
                                 '    certainty: {level: "unsure", basis: "x", appraisal: tool}\n',
                                 1), encoding="utf-8")
    problems = check_rules(path, fake_citations)
    assert any("rows[quiet-peripheral].certainty.level" in p for p in problems), problems


# --------------------------------------------------------------------------------- escalations
def test_rules_escalations_never_change_the_tier(table: RuleTable) -> None:
    for s, loc, hd, ic in itertools.product(SYMPTOMATIC, LOCATION, FLAG, FLAG):
        # Instability changes the tier only through the derivation, and only when the symptom
        # status is not stated: then it counts as symptomatic (tested below).
        derived = s == "unknown" and hd == "yes"
        base = table.recommend(findings("yes" if derived else s, loc))
        rec = table.recommend(findings(s, loc, hd, ic))
        assert (rec.tier, rec.rule_id, rec.actions, rec.label) == (
            base.tier, base.rule_id, base.actions, base.label
        ), (s, loc, hd, ic)
        expected = {n for n, v in (("hemodynamic_instability", hd), ("intracardiac_cement", ic))
                    if v == "yes"}
        assert {e.id for e in rec.escalations} == expected


def test_rules_hemodynamic_instability_adds_emergency_escalation(table: RuleTable) -> None:
    rec = table.recommend(findings("yes", "peripheral", hemodynamic="yes"))
    assert rec.tier == "anticoagulation"
    (esc,) = rec.escalations
    assert esc.id == "hemodynamic_instability"
    assert any("critical care" in a for a in esc.actions)
    assert {c.passage_id for c in esc.citations} >= {
        "wang-2012#symptomatic-emergency", "rahimi-2018#conservative-unless-haemodynamic-change"
    }


def test_rules_intracardiac_cement_adds_echo_and_cardiothoracic_escalation(
    table: RuleTable,
) -> None:
    rec = table.recommend(findings("no", "peripheral", intracardiac="yes"))
    assert rec.tier == "surveillance"
    (esc,) = rec.escalations
    assert esc.id == "intracardiac_cement"
    assert any("echocardiography" in a for a in esc.actions)
    assert any("cardiothoracic" in a for a in esc.actions)
    assert {"hatzantonis-2017#case-outcome-echo-unchanged",
            "wu-2024#case-rv-free-wall-perforation"} <= {c.passage_id for c in esc.citations}


# ----------------------------------------------------------------------- missing and conflicts
def test_rules_needs_information_lists_each_missing_finding_with_outcomes(
    table: RuleTable,
) -> None:
    rec = table.recommend(Findings())
    assert rec.tier == "needs_information"
    by_name = {m.finding: m for m in rec.missing}
    assert set(by_name) == {"symptomatic", "location"}
    assert set(by_name["symptomatic"].outcomes) == {"yes", "no"}
    assert set(by_name["location"].outcomes) == {"central", "peripheral"}
    yes = by_name["symptomatic"].outcomes["yes"]
    assert yes.startswith("still needs location")
    assert "consider surgical embolectomy (surgical_embolectomy)" in yes
    assert "anticoagulation (anticoagulation)" in yes
    assert "pulmonary trunk" in by_name["location"].question


@pytest.mark.parametrize(
    ("f", "asked", "outcomes"),
    [
        # A symptomatic patient is also asked about haemodynamics; here the location is the point.
        (findings("yes", "unknown"), ["location", "hemodynamic_instability"],
         {"central": "consider surgical embolectomy (surgical_embolectomy)",
          "peripheral": "anticoagulation (anticoagulation)"}),
        (findings("unknown", "peripheral"), ["symptomatic"],
         {"yes": "anticoagulation (anticoagulation)",
          "no": "clinical surveillance (surveillance)"}),
    ],
    ids=["location", "symptoms"],
)
def test_rules_missing_finding_outcomes_name_the_tier_each_answer_gives(
    table: RuleTable, f: Findings, asked: list[str], outcomes: dict[str, str]
) -> None:
    rec = table.recommend(f)
    assert [m.finding for m in rec.missing] == asked
    assert rec.missing[0].outcomes == outcomes


def test_rules_conflicting_symptoms_give_needs_information_with_both_spans(
    table: RuleTable,
) -> None:
    # The conflict wins even if a value was also set: the tool never guesses between spans.
    f = Findings(symptomatic=False, location="central",
                 conflicts=(conflict("symptomatic", ("asymptomatic", "no"), ("dyspnoea", "yes")),))
    rec = table.recommend(f)
    assert rec.tier == "needs_information"
    assert rec.inputs["symptomatic"] == "unknown"
    (missing,) = rec.missing
    assert '"asymptomatic"' in missing.question and '"dyspnoea"' in missing.question
    assert missing.outcomes == {
        "yes": "consider surgical embolectomy (surgical_embolectomy)",
        "no": "anticoagulation (anticoagulation)",
    }


def test_rules_conflicting_location_gives_needs_information_with_both_spans(
    table: RuleTable,
) -> None:
    f = Findings(symptomatic=True, conflicts=(
        conflict("location", ("main pulmonary artery", "central"), ("subsegmental", "peripheral")),
    ))
    rec = table.recommend(f)
    assert (rec.tier, rec.rule_id) == ("needs_information", "location-unknown")
    missing = next(m for m in rec.missing if m.finding == "location")
    assert '"main pulmonary artery"' in missing.question and '"subsegmental"' in missing.question


def test_rules_unclear_location_term_is_asked_about_by_name(table: RuleTable) -> None:
    rec = table.recommend(Findings(symptomatic=False, location="peripheral",
                                   unclear_location="lobar"))
    assert rec.tier == "needs_information"
    assert rec.inputs["location"] == "unknown"
    (missing,) = rec.missing
    assert missing.finding == "location" and "'lobar'" in missing.question


@pytest.mark.parametrize(
    ("f", "tier", "spans"),
    [
        (Findings(symptomatic=True, location="peripheral", conflicts=(
            conflict("hemodynamic_instability", ("stable", "no"), ("hypotensive", "yes")),)),
         "anticoagulation (anticoagulation)", ['"stable"', '"hypotensive"']),
        (findings("yes", "central"), "consider surgical embolectomy (surgical_embolectomy)", []),
    ],
    ids=["conflicting-status", "symptomatic-status-unknown"],
)
def test_rules_haemodynamics_are_asked_about_without_changing_the_tier(
    table: RuleTable, f: Findings, tier: str, spans: list[str]
) -> None:
    rec = table.recommend(f)
    assert rec.escalations == ()
    missing = next(m for m in rec.missing if m.finding == "hemodynamic_instability")
    assert all(span in missing.question for span in spans)
    assert missing.outcomes["yes"].startswith("adds escalation: haemodynamic instability")
    assert missing.outcomes["no"] == f"no escalation; tier unchanged: {tier}"


@pytest.mark.parametrize(
    ("symptomatic", "location", "hemodynamic", "intracardiac"),
    [("no", "central", "unknown", "unknown"), ("yes", "central", "no", "no"),
     ("yes", "peripheral", "no", "unknown"), ("no", "peripheral", "unknown", "unknown")],
)
def test_rules_known_findings_and_overlays_outside_ask_when_are_not_asked(
    table: RuleTable, symptomatic: str, location: str, hemodynamic: str, intracardiac: str
) -> None:
    rec = table.recommend(findings(symptomatic, location, hemodynamic, intracardiac))
    assert rec.missing == ()


@pytest.mark.parametrize(
    ("symptomatic", "hemodynamic", "rule_id"),
    [("yes", "no", "symptomatic-central"), ("yes", "yes", "symptomatic-central"),
     # Instability with the symptom status unstated counts as symptomatic (the derivation).
     ("unknown", "yes", "symptomatic-central")],
)
def test_rules_symptomatic_central_asks_about_intracardiac_cement_without_changing_the_tier(
    table: RuleTable, symptomatic: str, hemodynamic: str, rule_id: str
) -> None:
    f = findings(symptomatic, "central", hemodynamic)
    rec = table.recommend(f)
    assert rec.rule_id == rule_id and rec.tier == "surgical_embolectomy"
    assert "intracardiac_cement" not in {e.id for e in rec.escalations}
    asked = next(m for m in rec.missing if m.finding == "intracardiac_cement")
    assert asked.question == "Is there cement in the right atrium or right ventricle?"
    assert asked.outcomes["yes"] == (
        "adds escalation: "
        + ", ".join(e.label for e in table.recommend(
            f.model_copy(update={"intracardiac_cement": True})).escalations)
        + "; tier unchanged: consider surgical embolectomy (surgical_embolectomy)"
    )
    assert asked.outcomes["no"].endswith(
        "tier unchanged: consider surgical embolectomy (surgical_embolectomy)")
    # Answering it adds or drops only the overlay: the tier never moves.
    for answer in (True, False):
        again = table.recommend(f.model_copy(update={"intracardiac_cement": answer}))
        assert (again.rule_id, again.tier) == (rec.rule_id, rec.tier)
        assert "intracardiac_cement" not in {m.finding for m in again.missing}


@pytest.mark.parametrize(("symptomatic", "location"),
                         [("no", "central"), ("yes", "peripheral"), ("no", "peripheral"),
                          ("unknown", "unknown")])
def test_rules_a_heart_mentioned_without_settling_it_is_asked_about_in_any_cell(
    table: RuleTable, symptomatic: str, location: str
) -> None:
    base = findings(symptomatic, location)
    hedged = base.model_copy(update={"evidence": (
        evidence("intracardiac_cement", "possible", "right atrium"),
        evidence("intracardiac_cement", "not assessed", "heart not imaged"),
    )})
    before, rec = table.recommend(base), table.recommend(hedged)
    assert (rec.tier, rec.rule_id, rec.escalations) == (
        before.tier, before.rule_id, before.escalations)
    assert rec.inputs["intracardiac_cement"] == "unknown"
    asked = [m for m in rec.missing if m.finding == "intracardiac_cement"]
    assert [m.finding for m in rec.missing if m.finding != "intracardiac_cement"] == [
        m.finding for m in before.missing]
    (question,) = asked
    assert question.question.startswith("The record mentions the heart without settling")
    assert ('"right atrium" (intracardiac_cement=possible) and "heart not imaged" '
            "(intracardiac_cement=not assessed)") in question.question


def test_rules_open_evidence_never_reopens_a_stated_value(table: RuleTable) -> None:
    stated = findings("no", "peripheral", intracardiac="no").model_copy(update={"evidence": (
        evidence("intracardiac_cement", "possible", "right atrium"),)})
    assert table.recommend(stated).missing == ()


@pytest.mark.parametrize(("symptomatic", "location"),
                         [("no", "central"), ("yes", "peripheral"), ("no", "peripheral")])
def test_rules_intracardiac_cement_is_not_asked_outside_symptomatic_central(
    table: RuleTable, symptomatic: str, location: str
) -> None:
    rec = table.recommend(findings(symptomatic, location))
    assert "intracardiac_cement" not in {m.finding for m in rec.missing}


# ---------------------------------------------------------------------- inputs, trace, purity
def test_rules_inputs_record_the_evaluated_values(table: RuleTable) -> None:
    rec = table.recommend(findings("yes", "unknown", "no"))
    assert rec.inputs == {"symptomatic": "yes", "location": "unknown",
                          "hemodynamic_instability": "no", "intracardiac_cement": "unknown"}
    assert rec.rules_version == table.version


def test_rules_trace_checks_every_row_condition_and_marks_the_match(table: RuleTable) -> None:
    rec = table.recommend(findings("no", "central", hemodynamic="yes"))
    items = rows_and_escalations(table)
    # Each derivation also checks that its input is not stated.
    assert len(rec.trace) == sum(len(r.when) for r in items) + sum(
        len(d.when) + 1 for d in table.derived
    )
    assert {s.rule_id for s in rec.trace} == {r.id for r in [*items, *table.derived]}
    fully_matched = {
        rid for rid in {s.rule_id for s in rec.trace}
        if all(s.matched for s in rec.trace if s.rule_id == rid)
    }
    assert fully_matched == {"asymptomatic-central", "hemodynamic_instability"}
    assert any(s.condition.startswith("location = central") and s.matched for s in rec.trace)


def test_rules_recommend_is_pure_same_findings_give_equal_results(table: RuleTable) -> None:
    f = Findings(symptomatic=True, unclear_location="lobar", hemodynamic_instability=True)
    first = table.recommend(f)
    first.inputs["symptomatic"] = "tampered"
    first.missing[0].outcomes["central"] = "tampered"
    again, third = table.recommend(f), table.recommend(f)
    assert again == third
    assert again.inputs["symptomatic"] == "yes"
    assert again.missing[0].outcomes["central"] != "tampered"


def test_rules_recommend_touches_no_files(
    table: RuleTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = [findings(*c) for c in itertools.product(SYMPTOMATIC, LOCATION, FLAG, FLAG)]
    cases.append(Findings(conflicts=(conflict("symptomatic", ("a", "no"), ("b", "yes")),),
                          unclear_location="lobar"))
    expected = [table.recommend(f) for f in cases]

    touched: list[tuple[object, ...]] = []

    def no_io(*args: object, **_kwargs: object) -> None:
        touched.append(args)
        raise OSError("recommend() must not touch files")

    # The patch is undone before asserting, so pytest can still read files to report a failure.
    with monkeypatch.context() as patch:
        for target, name in ((builtins, "open"), (io, "open"), (os, "open"), (Path, "open"),
                             (Path, "read_text"), (Path, "read_bytes"), (Path, "exists")):
            patch.setattr(target, name, no_io)
        try:
            results = [table.recommend(f) for f in cases]
        except OSError:
            results = []
    assert touched == []
    assert results == expected


def test_rules_recommend_is_a_lookup_of_outcomes_evaluated_at_load(
    table: RuleTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Why it takes microseconds (make bench reports ~13 µs): every combination of values (and of
    # unstated inputs a derivation may fill) is evaluated once at load, never again.
    assert len(table._outcomes) == len(list(table._keys())) >= 3**4

    def no_evaluation(*_: object) -> None:
        raise AssertionError("recommend() evaluated the table")

    monkeypatch.setattr(RuleTable, "_evaluate", no_evaluation)
    rec = table.recommend(findings("yes", "central", "yes", "yes"))
    assert rec.tier == "surgical_embolectomy" and len(rec.escalations) == 2


# ------------------------------------------------------------------------ derivations (data)
def test_rules_instability_with_symptoms_not_stated_counts_as_symptomatic(
    table: RuleTable,
) -> None:
    f = Findings(location="central", hemodynamic_instability=True,
                 evidence=(evidence("hemodynamic_instability", "yes", "hypotensive"),))
    rec = table.recommend(f)
    assert (rec.tier, rec.rule_id) == ("surgical_embolectomy", "symptomatic-central")
    assert rec.inputs["symptomatic"] == "yes"
    (derived,) = rec.derived
    assert (derived.id, derived.input, derived.value) == (
        "instability-counts-as-symptoms", "symptomatic", "yes")
    assert derived.because == "hemodynamic_instability = yes"
    assert [c.passage_id for c in derived.citations] == [
        "wang-2012#freitag-case-during-injection", "wang-2012#symptomatic-emergency"
    ]
    assert [(e.finding, e.text) for e in derived.evidence] == [("symptomatic", "hypotensive")]
    assert any(s.rule_id == derived.id and s.matched for s in rec.trace)
    assert any("(is yes; derived)" in s.condition for s in rec.trace if s.matched)
    assert "symptomatic" not in {m.finding for m in rec.missing}


@pytest.mark.parametrize(
    "f",
    [
        Findings(symptomatic=False, location="peripheral", hemodynamic_instability=True),
        Findings(location="peripheral", hemodynamic_instability=True, conflicts=(
            conflict("symptomatic", ("asymptomatic", "no"), ("dyspnoea", "yes")),)),
        Findings(location="peripheral", hemodynamic_instability=None),
    ],
    ids=["stated-no", "in-conflict", "stability-unknown"],
)
def test_rules_derivation_never_overrides_a_stated_or_contested_input(
    table: RuleTable, f: Findings
) -> None:
    rec = table.recommend(f)
    assert rec.derived == ()
    assert rec.tier == ("surveillance" if f.symptomatic is False else "needs_information")


def test_rules_answering_instability_shows_that_it_changes_the_tier_through_the_derivation(
    table: RuleTable,
) -> None:
    f = Findings(location="peripheral", conflicts=(
        conflict("hemodynamic_instability", ("stable", "no"), ("BP 80/50", "yes")),))
    missing = {m.finding: m for m in table.recommend(f).missing}
    yes = missing["hemodynamic_instability"].outcomes["yes"]
    assert "symptomatic counts as yes" in yes and yes.endswith("anticoagulation (anticoagulation)")


# -------------------------------------------------------------------------- table structure
def test_rules_location_caveat_is_written_once_and_shown_where_location_decides(
    table: RuleTable,
) -> None:
    caveat = table.location_caveat
    assert caveat and SHIPPED.read_text(encoding="utf-8").count("no source defines\n  the cut") == 1
    for rule in table.rows:
        assert (caveat in rule.caveats) == ("location" in rule.when), rule.id
        assert rule.caveats.count(caveat) <= 1


def test_rules_certainty_is_carried_to_the_recommendation_and_escalation(
    tmp_path: Path, fake_citations: Mapping[str, Citation]
) -> None:
    certainty = ('    certainty: {level: "very low", basis: "Case reports only.", '
                 'appraisal: tool}\n')
    text = (FIXTURES / "valid.yaml").read_text(encoding="utf-8")
    text = text.replace('    citations: ["fake-2020#algorithm"]\n  - id: treat',
                        '    citations: ["fake-2020#algorithm"]\n' + certainty + "  - id: treat")
    text = text.replace('    citations: ["fake-2020#severity"]\n',
                        '    citations: ["fake-2020#severity"]\n' + certainty)
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    rec = load_rules(path, fake_citations).recommend(findings("no", "peripheral", "yes"))
    assert rec.certainty is not None and rec.escalations[0].certainty == rec.certainty
    assert (rec.certainty.level, rec.certainty.appraisal) == ("very low", "tool")
    path.write_text(text.replace('"very low"', '"very lo"', 1), encoding="utf-8")
    assert any("certainty.level: unknown value 'very lo' (did you mean 'very low'?)" in p
               for p in check_rules(path, fake_citations))


def test_rules_citations_resolve_against_any_id_index_the_knowledge_provides(
    tmp_path: Path, fake_citations: Mapping[str, Citation]
) -> None:
    # Tomorrow's claim ids ('<source>#<claim id>') resolve the same way as today's section ids.
    claims = {key.replace("#", "#claim-"): c for key, c in fake_citations.items()}
    path = _variant(tmp_path, ("fake-2020#", "fake-2020#claim-"))
    assert check_rules(path, claims) == []
    assert check_rules(path, fake_citations) != []


# ----------------------------------------------------------------------------- broken tables
def test_rules_valid_fixture_table_loads(fake_citations: Mapping[str, Citation]) -> None:
    table = load_rules(FIXTURES / "valid.yaml", fake_citations)
    assert table.version == "0.0.1"
    rec = table.recommend(findings("no", "peripheral", hemodynamic="yes"))
    assert (rec.tier, rec.rule_id) == ("surveillance", "quiet-peripheral")
    assert rec.citations[0] == fake_citations["fake-2020#algorithm"]
    assert [e.id for e in rec.escalations] == ["hemodynamic_instability"]


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("unknown_field.yaml",
         "unknown_field.yaml:13: rows[quiet-peripheral].tierr: unknown field "
         "(did you mean 'tier'?)"),
        ("unknown_value.yaml",
         "unknown_value.yaml:26: rows[quiet-central].when.location: unknown value 'centrl' for "
         "input 'location' (did you mean 'central'?)"),
        ("duplicate_id.yaml",
         "duplicate_id.yaml:25: rows[treat].id: duplicate id 'treat' (first at line 18)"),
        ("unresolved_citation.yaml",
         "unresolved_citation.yaml:52: escalations[hemodynamic_instability].citations[0]: "
         "citation 'fake-2020#severty' does not resolve to a claim of 'fake-2020' "
         "(did you mean 'fake-2020#severity'?)"),
        ("gap.yaml", "gap.yaml:10: rows: gap: no row fires for symptomatic=yes, location=unknown"),
        ("overlap.yaml",
         "overlap.yaml:18: rows[treat]: overlap: rows 'quiet-peripheral' (surveillance) and "
         "'treat' (anticoagulation) both fire for symptomatic=no, location=peripheral"),
        ("bad_yaml.yaml", "bad_yaml.yaml:23: invalid YAML at line 23, column 5"),
    ],
)
def test_rules_broken_table_fails_with_file_line_field_and_its_intended_error(
    fake_citations: Mapping[str, Citation], fixture: str, expected: str
) -> None:
    path = FIXTURES / fixture
    with pytest.raises(RulesError) as caught:
        load_rules(path, fake_citations)
    err = caught.value
    assert isinstance(err, DataError) and isinstance(err, AssistantError)
    assert err.path == str(path)
    assert any(p.startswith(expected) for p in err.problems), err.problems
    assert check_rules(path, fake_citations) == err.problems
    assert str(path) in str(err)
    assert all(d.line for d in err.details), err.details


def test_rules_overlap_names_both_rows_and_tiers_for_each_combination(
    fake_citations: Mapping[str, Citation],
) -> None:
    problems = check_rules(FIXTURES / "overlap.yaml", fake_citations)
    assert problems == [
        "overlap.yaml:25: rows[quiet-central]: overlap: rows 'treat' (anticoagulation) and "
        "'quiet-central' (anticoagulation) both fire for symptomatic=no, location=central "
        "(hit_policy unique allows one)",
        "overlap.yaml:18: rows[treat]: overlap: rows 'quiet-peripheral' (surveillance) and "
        "'treat' (anticoagulation) both fire for symptomatic=no, location=peripheral "
        "(hit_policy unique allows one)",
    ]


def _variant(tmp_path: Path, *edits: tuple[str, str], append: str = "") -> Path:
    text = (FIXTURES / "valid.yaml").read_text(encoding="utf-8")
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "rules.yaml"
    path.write_text(text + append, encoding="utf-8")
    return path


def test_rules_every_problem_is_listed_not_just_the_first(
    tmp_path: Path, fake_citations: Mapping[str, Citation]
) -> None:
    path = _variant(tmp_path, ("tier: surveillance", "tier: surveilance"),
                    ("  - id: ask-location", "  - id: ask"),
                    ('citations: ["fake-2020#severity"]', 'citations: ["nope-2020#x"]'))
    problems = check_rules(path, fake_citations)
    assert any("unknown value 'surveilance' (did you mean 'surveillance'?)" in p
               for p in problems)
    assert any("duplicate id 'ask'" in p for p in problems)
    assert any("unknown source 'nope-2020'" in p for p in problems)
    assert all(p.startswith("rules.yaml:") for p in problems)


def test_rules_bare_yes_and_no_are_values_not_booleans(
    tmp_path: Path, fake_citations: Mapping[str, Citation]
) -> None:
    path = _variant(tmp_path, ('"yes"', "yes"), ('"no"', "no"))
    table = load_rules(path, fake_citations)
    assert table.inputs["symptomatic"] == ("yes", "no", "unknown")
    assert table.recommend(findings("no", "peripheral")).rule_id == "quiet-peripheral"


DERIVED = ('derived:\n  - {{id: d, input: symptomatic, value: "{value}", when: {{{when}}}, '
           'rationale: "r", citations: ["fake-2020#algorithm"]}}\n')


@pytest.mark.parametrize(
    ("edits", "append", "expected"),
    [
        ([('when: {symptomatic: "unknown"}', 'when: {symptomatc: "unknown"}')], "",
         "rows[ask].when.symptomatc: unknown input 'symptomatc' (did you mean 'symptomatic'?)"),
        ([('when: {hemodynamic_instability: "yes"}', 'when: {symptomatic: "yes"}')], "",
         "escalations[hemodynamic_instability].when.symptomatic: unknown input 'symptomatic'"),
        ([], '  hemodynamic_instability:\n    ask_when: {symptomatic: "yse"}\n'
             '    question: "Unstable?"\n    conflict: "Unstable? ({spans})"\n',
         "missing.hemodynamic_instability.ask_when.symptomatic: unknown value 'yse' for input "
         "'symptomatic' (did you mean 'yes'?)"),
        ([], '  symptomatic_extra: {question: "x?", conflict: "x ({spans})"}\n',
         "missing.symptomatic_extra: unknown input 'symptomatic_extra'"),
        ([('conflict: "Symptoms? ({spans})"', 'conflict: "Symptoms? ({span})"')], "",
         "missing.symptomatic.conflict: uses unknown placeholder '{span}' (did you mean 'spans'?)"),
        ([('conflict: "Symptoms? ({spans})"', 'conflict: "Symptoms? ({span})"')], "",
         "missing.symptomatic.conflict: must show '{spans}'"),
        ([], '  hemodynamic_instability:\n    question: "Unstable?"\n'
             '    conflict: "Unstable? ({spans})"\n    open: "Unstable?"\n',
         "missing.hemodynamic_instability.open: must show '{spans}'"),
        ([], DERIVED.format(value="maybe", when='hemodynamic_instability: "yes"'),
         "derived[d].value: unknown value 'maybe'"),
        ([], DERIVED.format(value="yes", when='symptomatic: "unknown"'),
         "derived[d].when.symptomatic: a derivation fills an unstated input"),
    ],
    ids=["when-input", "escalation-reads-table-input", "ask-when-value", "missing-unknown-input",
         "template-placeholder", "template-required", "open-template-required", "derived-value",
         "derived-self-reference"],
)
def test_rules_condition_and_template_problems_name_their_place(
    tmp_path: Path, fake_citations: Mapping[str, Citation], edits: list[tuple[str, str]],
    append: str, expected: str,
) -> None:
    problems = check_rules(_variant(tmp_path, *edits, append=append), fake_citations)
    assert any(expected in p for p in problems), problems


def test_rules_missing_file_is_reported_not_raised_by_check(
    tmp_path: Path, fake_citations: Mapping[str, Citation]
) -> None:
    problems = check_rules(tmp_path / "absent.yaml", fake_citations)
    assert problems and problems[0].startswith("absent.yaml: cannot read the rules table")
    with pytest.raises(RulesError):
        load_rules(tmp_path / "absent.yaml", fake_citations)


# Statements of absence in the table ("no source here reports ...") are checked against every
# claim of the knowledge base, so they stay true when claims are added.
def _claims_mentioning(pattern: str) -> dict[str, str]:
    kb = load_knowledge(ROOT / "knowledge")
    return {cid: c.text for cid, c in kb.claims.items() if re.search(pattern, c.text, re.I)}


def test_rules_no_source_reports_thrombolysis_for_cement_emboli(table: RuleTable) -> None:
    overlay = next(e for e in table.escalations if e.id == "hemodynamic_instability")
    assert "no source in this knowledge base reports thrombolytic treatment" in overlay.rationale
    mentions = _claims_mentioning(r"thromboly|alteplase|tenecteplase|fibrinoly")
    assert mentions, "the overlay cites the claims that mention thrombolytic drugs"
    cited = {c.passage_id for c in overlay.citations}
    for cid, text in mentions.items():
        assert cid in cited, cid
        assert re.search(r"\b(?:no|without)\b[^.]*thrombolytic", text, re.I), (cid, text)


def test_rules_no_source_evaluates_direct_oral_anticoagulants(table: RuleTable) -> None:
    mentions = _claims_mentioning(r"apixaban|rivaroxaban|dabigatran|edoxaban|\bDOAC")
    assert set(mentions) == {"shm-cement-abstract#case-enoxaparin-then-apixaban"}
    assert "prophylactic-range" in mentions["shm-cement-abstract#case-enoxaparin-then-apixaban"]
    for row in table.rows:
        if row.tier in ("anticoagulation", "surgical_embolectomy"):
            assert any("no source here evaluates them" in c for c in row.caveats), row.id
            assert "shm-cement-abstract#case-enoxaparin-then-apixaban" in {
                c.passage_id for c in row.citations}, row.id
