"""The decision table: the shipped table against the real knowledge, broken tables, and the engine.

Broken tables live in tests/fixtures/rules/ and cite a tiny fake knowledge base built here.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import itertools
import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from assistant.clinical.rules import Overlay, Rule, RuleTable, check_rules, load_rules
from assistant.errors import AssistantError, RulesError
from assistant.knowledge.sources import load_knowledge
from assistant.types import TIERS, Citation, Conflict, Evidence, Findings

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "knowledge" / "rules.yaml"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "rules"

SYMPTOMATIC = {"yes": True, "no": False, "unknown": None}
LOCATION = {"central": "central", "peripheral": "peripheral", "unknown": None}
FLAG = {"yes": True, "no": False, "unknown": None}


@pytest.fixture(scope="module")
def knowledge() -> dict[str, Citation]:
    """The shipped knowledge's citation index: claim id -> Citation."""
    return load_knowledge(ROOT / "knowledge").citations()


@pytest.fixture(scope="module")
def table(knowledge: dict[str, Citation]) -> RuleTable:
    return load_rules(SHIPPED, knowledge)


@pytest.fixture(scope="module")
def fake_sources() -> dict[str, Citation]:
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
    assert table.version == "2026.11.3"
    assert table.fingerprint == hashlib.sha256(SHIPPED.read_bytes()).hexdigest()[:12]
    assert [r.id for r in table.rows] == [
        "asymptomatic-peripheral", "symptomatic-peripheral", "asymptomatic-central",
        "symptomatic-central", "symptoms-unknown", "location-unknown",
    ]
    assert dict(table.inputs) == {
        "symptomatic": ("yes", "no", "unknown"),
        "location": ("central", "peripheral", "unknown"),
    }
    assert "TOOL" in table.location_convention.upper() or "tool" in table.location_convention
    assert "lobar" in table.location_convention.lower()


def test_rules_shipped_table_has_exactly_one_row_for_every_combination(table: RuleTable) -> None:
    for combo in itertools.product(*table.inputs.values()):
        values = dict(zip(table.inputs, combo, strict=True))
        fired = [r.id for r in table.rows
                 if all(values[k] in allowed for k, allowed in r.when.items())]
        assert len(fired) == 1, (values, fired)


def test_rules_asymptomatic_peripheral_gives_surveillance(table: RuleTable) -> None:
    rec = table.recommend(findings("no", "peripheral"))
    assert (rec.tier, rec.rule_id) == ("surveillance", "asymptomatic-peripheral")
    assert rec.missing == ()
    assert any("Siniscalchi 2022" in c and "LMWH" in c for c in rec.caveats)
    assert any("anticoagulation is not needed" in a for a in rec.actions)


def test_rules_symptomatic_peripheral_gives_anticoagulation(table: RuleTable) -> None:
    rec = table.recommend(findings("yes", "peripheral"))
    assert (rec.tier, rec.rule_id) == ("anticoagulation", "symptomatic-peripheral")
    assert any("heparin" in a and "oral anticoagulation" in a for a in rec.actions)
    assert any("6 months of a coumarin" in a for a in rec.actions)


def test_rules_asymptomatic_central_gives_anticoagulation(table: RuleTable) -> None:
    rec = table.recommend(findings("no", "central"))
    assert (rec.tier, rec.rule_id) == ("anticoagulation", "asymptomatic-central")


def test_rules_symptomatic_central_gives_surgical_embolectomy(table: RuleTable) -> None:
    rec = table.recommend(findings("yes", "central"))
    assert (rec.tier, rec.rule_id) == ("surgical_embolectomy", "symptomatic-central")
    assert rec.label == "consider surgical embolectomy"
    assert any("with anticoagulation" in a and "cardiothoracic" in a for a in rec.actions)
    assert any("Endovascular" in a and "risk" in a for a in rec.actions)


@pytest.mark.parametrize("location", ["central", "peripheral", "unknown"])
def test_rules_unknown_symptoms_give_needs_information_at_any_location(
    table: RuleTable, location: str
) -> None:
    rec = table.recommend(findings("unknown", location))
    assert (rec.tier, rec.rule_id) == ("needs_information", "symptoms-unknown")


@pytest.mark.parametrize("symptomatic", ["yes", "no"])
def test_rules_unknown_location_gives_needs_information(
    table: RuleTable, symptomatic: str
) -> None:
    rec = table.recommend(findings(symptomatic, "unknown"))
    assert (rec.tier, rec.rule_id) == ("needs_information", "location-unknown")


def test_rules_every_shipped_row_and_tier_is_reachable(table: RuleTable) -> None:
    hit = {
        table.recommend(findings(s, loc)).rule_id
        for s, loc in itertools.product(SYMPTOMATIC, LOCATION)
    }
    assert hit == {r.id for r in table.rows}
    assert {r.tier for r in table.rows} == set(TIERS)


@pytest.mark.parametrize("rule_id", ["symptomatic-peripheral", "asymptomatic-central",
                                     "symptomatic-central"])
def test_rules_anticoagulating_rows_say_how_uncertain_the_evidence_is(
    table: RuleTable, rule_id: str
) -> None:
    rule = next(r for r in table.rows if r.id == rule_id)
    caveats = " ".join(rule.caveats)
    for needle in ("case reports and reviews", "no diagnostic or treatment standard",
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
    for item in rows_and_escalations(table):
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
    assert rec.certainty.statement.startswith("Certainty of evidence: very low — ")
    assert rec.certainty.statement.endswith("(this tool's appraisal)")
    (esc,) = rec.escalations
    assert esc.certainty is not None and esc.certainty.basis
    assert all(r.certainty is not None for r in rows_and_escalations(table))


def test_rules_malformed_certainty_is_refused_naming_the_row(
    tmp_path: Path, fake_sources: Mapping[str, Citation]
) -> None:
    path = tmp_path / "rules.yaml"
    text = (FIXTURES / "valid.yaml").read_text(encoding="utf-8")
    path.write_text(text.replace('    citations: ["fake-2020#algorithm"]\n',
                                 '    citations: ["fake-2020#algorithm"]\n'
                                 '    certainty: {level: "unsure", basis: "x", appraisal: tool}\n',
                                 1), encoding="utf-8")
    problems = check_rules(path, fake_sources)
    assert any("row 'quiet-peripheral'" in p and "certainty.level" in p for p in problems), problems


# --------------------------------------------------------------------------------- escalations
def test_rules_escalations_never_change_the_tier(table: RuleTable) -> None:
    for s, loc, hd, ic in itertools.product(SYMPTOMATIC, LOCATION, FLAG, FLAG):
        base = table.recommend(findings(s, loc))
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


def test_rules_missing_location_outcomes_name_the_tier_each_answer_gives(
    table: RuleTable,
) -> None:
    rec = table.recommend(findings("yes", "unknown"))
    # A symptomatic patient is also asked about haemodynamics; here the location is the point.
    assert [m.finding for m in rec.missing] == ["location", "hemodynamic_instability"]
    missing = rec.missing[0]
    assert missing.outcomes == {
        "central": "consider surgical embolectomy (surgical_embolectomy)",
        "peripheral": "anticoagulation (anticoagulation)",
    }


def test_rules_missing_symptoms_outcomes_name_the_tier_each_answer_gives(
    table: RuleTable,
) -> None:
    (missing,) = table.recommend(findings("unknown", "peripheral")).missing
    assert missing.finding == "symptomatic"
    assert missing.outcomes == {
        "yes": "anticoagulation (anticoagulation)",
        "no": "clinical surveillance (surveillance)",
    }


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


def test_rules_conflicting_haemodynamic_status_is_asked_without_changing_the_tier(
    table: RuleTable,
) -> None:
    f = Findings(symptomatic=True, location="peripheral", conflicts=(
        conflict("hemodynamic_instability", ("stable", "no"), ("hypotensive", "yes")),
    ))
    rec = table.recommend(f)
    assert rec.tier == "anticoagulation" and rec.escalations == ()
    (missing,) = rec.missing
    assert missing.finding == "hemodynamic_instability"
    assert '"stable"' in missing.question and '"hypotensive"' in missing.question
    assert missing.outcomes["yes"].startswith("adds escalation: haemodynamic instability")
    assert "tier unchanged: anticoagulation (anticoagulation)" in missing.outcomes["no"]


def test_rules_symptomatic_patient_is_asked_about_haemodynamics_without_changing_the_tier(
    table: RuleTable,
) -> None:
    rec = table.recommend(findings("yes", "central"))
    assert rec.tier == "surgical_embolectomy" and rec.escalations == ()
    (missing,) = rec.missing
    assert missing.finding == "hemodynamic_instability"
    assert missing.outcomes["yes"].startswith("adds escalation: haemodynamic instability")
    assert "tier unchanged: consider surgical embolectomy" in missing.outcomes["no"]


@pytest.mark.parametrize(("symptomatic", "hemodynamic"), [("no", "unknown"), ("yes", "no")])
def test_rules_haemodynamics_are_not_asked_without_symptoms_or_when_known(
    table: RuleTable, symptomatic: str, hemodynamic: str
) -> None:
    rec = table.recommend(findings(symptomatic, "peripheral", hemodynamic))
    assert "hemodynamic_instability" not in {m.finding for m in rec.missing}


def test_rules_known_findings_are_not_asked_again(table: RuleTable) -> None:
    assert table.recommend(findings("yes", "central", "no", "no")).missing == ()


# ---------------------------------------------------------------------- inputs, trace, purity
def test_rules_inputs_record_the_evaluated_values(table: RuleTable) -> None:
    rec = table.recommend(findings("yes", "unknown", "no"))
    assert rec.inputs == {"symptomatic": "yes", "location": "unknown",
                          "hemodynamic_instability": "no", "intracardiac_cement": "unknown"}
    assert rec.rules_version == table.version


def test_rules_trace_checks_every_row_condition_and_marks_the_match(table: RuleTable) -> None:
    rec = table.recommend(findings("no", "central", hemodynamic="yes"))
    items = rows_and_escalations(table)
    assert len(rec.trace) == sum(len(r.when) for r in items)
    assert {s.rule_id for s in rec.trace} == {r.id for r in items}
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
    # Why it takes microseconds (make bench reports ~13 µs): every combination is evaluated once
    # at load, so recommend() never evaluates the table again.
    assert len(table._outcomes) == len(table._combinations()) == 81

    def no_evaluation(*_: object) -> None:
        raise AssertionError("recommend() evaluated the table")

    monkeypatch.setattr(RuleTable, "_evaluate", no_evaluation)
    rec = table.recommend(findings("yes", "central", "yes", "yes"))
    assert rec.tier == "surgical_embolectomy" and len(rec.escalations) == 2


# ----------------------------------------------------------------------------- broken tables
def test_rules_valid_fixture_table_loads(fake_sources: Mapping[str, Citation]) -> None:
    table = load_rules(FIXTURES / "valid.yaml", fake_sources)
    assert table.version == "0.0.1"
    rec = table.recommend(findings("no", "peripheral", hemodynamic="yes"))
    assert (rec.tier, rec.rule_id) == ("surveillance", "quiet-peripheral")
    assert rec.citations[0] == fake_sources["fake-2020#algorithm"]
    assert [e.id for e in rec.escalations] == ["hemodynamic_instability"]


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("unknown_field.yaml",
         "unknown_field.yaml: row 'quiet-peripheral': unknown field 'tierr' "
         "(did you mean 'tier'?)"),
        ("unknown_value.yaml",
         "unknown_value.yaml: row 'quiet-central': unknown value 'centrl' for input 'location' "
         "(did you mean 'central'?)"),
        ("duplicate_id.yaml", "duplicate_id.yaml: row 'treat': duplicate row id 'treat'"),
        ("unresolved_citation.yaml",
         "unresolved_citation.yaml: escalation 'hemodynamic_instability': citation "
         "'fake-2020#severty' does not resolve to a claim of 'fake-2020' "
         "(did you mean 'fake-2020#severity'?)"),
        ("gap.yaml", "gap.yaml: gap: no row fires for symptomatic=yes, location=unknown"),
        ("overlap.yaml",
         "overlap.yaml: overlap: rows 'quiet-peripheral' (surveillance) and 'treat' "
         "(anticoagulation) both fire for symptomatic=no, location=peripheral"),
        ("bad_yaml.yaml", "bad_yaml.yaml: invalid YAML at line 23, column 5"),
    ],
)
def test_rules_broken_table_fails_with_its_intended_error(
    fake_sources: Mapping[str, Citation], fixture: str, expected: str
) -> None:
    path = FIXTURES / fixture
    with pytest.raises(RulesError) as caught:
        load_rules(path, fake_sources)
    err = caught.value
    assert isinstance(err, AssistantError)
    assert err.path == str(path)
    assert any(p.startswith(expected) for p in err.problems), err.problems
    assert check_rules(path, fake_sources) == err.problems
    assert str(path) in str(err)


def test_rules_overlap_names_both_rows_and_tiers_for_each_combination(
    fake_sources: Mapping[str, Citation],
) -> None:
    problems = check_rules(FIXTURES / "overlap.yaml", fake_sources)
    assert problems == [
        "overlap.yaml: overlap: rows 'treat' (anticoagulation) and 'quiet-central' "
        "(anticoagulation) both fire for symptomatic=no, location=central "
        "(hit_policy unique allows one)",
        "overlap.yaml: overlap: rows 'quiet-peripheral' (surveillance) and 'treat' "
        "(anticoagulation) both fire for symptomatic=no, location=peripheral "
        "(hit_policy unique allows one)",
    ]


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = (FIXTURES / "valid.yaml").read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "rules.yaml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def test_rules_every_problem_is_listed_not_just_the_first(
    tmp_path: Path, fake_sources: Mapping[str, Citation]
) -> None:
    text = (FIXTURES / "valid.yaml").read_text(encoding="utf-8")
    text = text.replace("tier: surveillance", "tier: surveilance")
    text = text.replace("  - id: ask-location", "  - id: ask")
    text = text.replace('citations: ["fake-2020#severity"]', 'citations: ["nope-2020#x"]')
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    problems = check_rules(path, fake_sources)
    assert any("unknown tier 'surveilance' (did you mean 'surveillance'?)" in p for p in problems)
    assert any("duplicate row id 'ask'" in p for p in problems)
    assert any("unknown source 'nope-2020'" in p for p in problems)
    assert all(p.startswith("rules.yaml: ") for p in problems)


def test_rules_bare_yes_and_no_are_values_not_booleans(
    tmp_path: Path, fake_sources: Mapping[str, Citation]
) -> None:
    text = (FIXTURES / "valid.yaml").read_text(encoding="utf-8").replace('"yes"', "yes")
    path = tmp_path / "rules.yaml"
    path.write_text(text.replace('"no"', "no"), encoding="utf-8")
    table = load_rules(path, fake_sources)
    assert table.inputs["symptomatic"] == ("yes", "no", "unknown")
    assert table.recommend(findings("no", "peripheral")).rule_id == "quiet-peripheral"


def test_rules_unknown_input_name_suggests_the_right_one(
    tmp_path: Path, fake_sources: Mapping[str, Citation]
) -> None:
    path = _variant(tmp_path, 'when: {symptomatic: "unknown"}', 'when: {symptomatc: "unknown"}')
    assert any("unknown input 'symptomatc' in 'when' (did you mean 'symptomatic'?)" in p
               for p in check_rules(path, fake_sources))


def test_rules_escalation_cannot_read_a_table_input(
    tmp_path: Path, fake_sources: Mapping[str, Citation]
) -> None:
    path = _variant(tmp_path, 'when: {hemodynamic_instability: "yes"}',
                    'when: {symptomatic: "yes"}')
    assert any("escalation 'hemodynamic_instability': unknown input 'symptomatic'" in p
               for p in check_rules(path, fake_sources))


def test_rules_ask_when_is_checked_like_a_condition(
    tmp_path: Path, fake_sources: Mapping[str, Citation]
) -> None:
    text = (FIXTURES / "valid.yaml").read_text(encoding="utf-8")
    path = tmp_path / "rules.yaml"
    path.write_text(text + '  hemodynamic_instability:\n    ask_when: {symptomatic: "yse"}\n'
                    '    question: "Unstable?"\n    conflict: "Unstable? ({spans})"\n',
                    encoding="utf-8")
    problems = check_rules(path, fake_sources)
    assert any("unknown value 'yse' for input 'symptomatic' (did you mean 'yes'?)" in p
               for p in problems), problems


def test_rules_conflict_question_must_show_the_spans(
    tmp_path: Path, fake_sources: Mapping[str, Citation]
) -> None:
    path = _variant(tmp_path, 'conflict: "Symptoms? ({spans})"', 'conflict: "Symptoms? ({span})"')
    problems = check_rules(path, fake_sources)
    assert any("unknown placeholder '{span}' (did you mean 'spans'?)" in p for p in problems)
    assert any("'conflict' must show '{spans}'" in p for p in problems)


def test_rules_missing_file_is_reported_not_raised_by_check(
    tmp_path: Path, fake_sources: Mapping[str, Citation]
) -> None:
    problems = check_rules(tmp_path / "absent.yaml", fake_sources)
    assert problems and problems[0].startswith("absent.yaml: cannot read the rules table")
    with pytest.raises(RulesError):
        load_rules(tmp_path / "absent.yaml", fake_sources)
