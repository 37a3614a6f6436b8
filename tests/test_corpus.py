"""Every case of the clinical-text corpus gives its expected findings, spans and tier through the
REAL rules table (knowledge/rules.yaml), and every span the extractor reports is an exact slice of
its input. The corpus and its conventions: tests/fixtures/corpus/README.md."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from clinical_corpus import (
    DEFINITE,
    DOMAINS,
    ENTRY_KEYS,
    FINDINGS,
    KINDS,
    effective,
    load_cases,
    load_real_rules,
    shown_tier,
    table_tier,
)

from assistant.clinical.findings import resolve_findings
from assistant.clinical.lexicon import Lexicon, load_lexicon
from assistant.clinical.rules import RuleTable
from assistant.types import Evidence, Findings

CASES = load_cases()
VIGNETTES = yaml.safe_load(
    (Path(__file__).parent / "fixtures" / "vignettes.yaml").read_text(encoding="utf-8")
)


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return load_lexicon()


@pytest.fixture(scope="module")
def rules() -> RuleTable:
    return load_real_rules()


def all_evidence(findings: Findings) -> list[Evidence]:
    """What the basis shows: the spans used, those in conflict, and those overridden."""
    return [
        *findings.evidence,
        *(e for c in findings.conflicts for e in c.evidence),
        *findings.overridden,
    ]


# --- the corpus itself ---------------------------------------------------------------------------


def test_corpus_cases_are_well_formed(rules: RuleTable) -> None:
    ids = Counter(case["id"] for case in CASES)
    assert not [i for i, n in ids.items() if n > 1], "ids must be unique"
    assert len(CASES) >= 184 + 40
    for case in CASES:
        where = f"{case['file']}:{case['id']}"
        assert set(case) - {"file"} <= ENTRY_KEYS, where
        assert case["kind"] in KINDS, where
        assert set(case["expect"]) == set(FINDINGS), where
        for name, value in case["expect"].items():
            assert value in DOMAINS[name], (where, name)
        conflict = case.get("conflict") or []
        for name in conflict:
            assert case["expect"][name] is None, (where, name)
        for name, spans in (case.get("spans") or {}).items():
            assert name in DOMAINS, (where, name)
            assert all(span in case["text"] for span in spans), (where, name)
        derived = table_tier(case["expect"], conflict, rules)
        if derived is None and "asks-management" in case.get("tags", []):
            derived = "needs_information"
        assert derived == case["tier"], (where, "tier must follow from the expected findings")


# --- every case ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case_gives_expected_findings_spans_and_tier(
    case: dict[str, Any], lexicon: Lexicon, rules: RuleTable
) -> None:
    text = case["text"]
    found = resolve_findings(text, lexicon)
    got, derived = effective(found, rules)
    assert got == case["expect"]
    assert sorted({c.finding for c in found.conflicts}) == sorted(case.get("conflict") or [])
    shown = [*all_evidence(found), *derived]
    for name, spans in (case.get("spans") or {}).items():
        finding = "location" if name == "unclear_location" else name
        reported = [(e.start, e.end) for e in shown if e.finding == finding and e.start is not None]
        for span in spans:
            at = [i for i in range(len(text)) if text.startswith(span, i)]
            assert any(
                s < i + len(span) and i < e for i in at for s, e in reported
            ), f"{name}: expected span {span!r} is not among the evidence {reported}"
    tier = shown_tier(found, rules)
    assert tier == case["tier"]
    assert not (tier in DEFINITE and tier != case["tier"]), "a wrong definite tier"


# --- spans are real ------------------------------------------------------------------------------


def test_every_reported_span_is_an_exact_slice_of_its_input(lexicon: Lexicon) -> None:
    texts = [case["text"] for case in CASES]
    texts += [v["question"] for v in VIGNETTES]
    texts += [turn for v in VIGNETTES for turn in v.get("history", ())]
    checked = 0
    for text in texts:
        findings = resolve_findings(text, lexicon)
        for ev in all_evidence(findings):
            assert ev.start is not None and ev.end is not None, (text, ev)
            assert 0 <= ev.start < ev.end <= len(text), (text, ev)
            assert text[ev.start : ev.end] == ev.text, (text, ev)
            checked += 1
    assert checked > 1000


# --- the intracardiac question (issue 10) ---------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_cement_in_the_heart_is_asked_about_exactly_when_left_open_or_symptomatic_central(
    case: dict[str, Any], lexicon: Lexicon, rules: RuleTable
) -> None:
    found = resolve_findings(case["text"], lexicon)
    if shown_tier(found, rules) is None:
        return  # no card, nothing asked
    values, _ = effective(found, rules)
    open_ = "intracardiac-open" in case.get("tags", [])
    expected = values["intracardiac_cement"] is None and (
        open_ or (values["symptomatic"] is True and values["location"] == "central")
    )
    asked = {m.finding for m in rules.recommend(found).missing}
    assert ("intracardiac_cement" in asked) == expected
