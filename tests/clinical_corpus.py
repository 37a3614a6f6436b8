"""The clinical-text corpus (tests/fixtures/corpus/*.yaml) and how the product shows its tier.

Shared by tests/test_corpus.py (every case) and tests/test_findings_property.py (variants).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from assistant.clinical.findings import resolve_findings
from assistant.clinical.lexicon import Lexicon
from assistant.clinical.rules import RuleTable, load_rules
from assistant.knowledge.sources import load_knowledge
from assistant.settings import default_knowledge_dir
from assistant.types import Evidence, Findings

CORPUS_DIR = Path(__file__).parent / "fixtures" / "corpus"
FINDINGS = (
    "symptomatic",
    "location",
    "unclear_location",
    "hemodynamic_instability",
    "intracardiac_cement",
    "procedure",
)
DOMAINS: dict[str, set[Any]] = {
    "symptomatic": {True, False, None},
    "location": {"central", "peripheral", None},
    "unclear_location": {"lobar", "unclear", None},
    "hemodynamic_instability": {True, False, None},
    "intracardiac_cement": {True, False, None},
    "procedure": {"vertebroplasty", "kyphoplasty", None},
}
KINDS = {
    "radiology-report", "case-report", "ed-note", "discharge-summary", "clinic-note", "question"
}
DEFINITE = {"surveillance", "anticoagulation", "surgical_embolectomy"}
ENTRY_KEYS = {"id", "kind", "text", "expect", "conflict", "spans", "tier", "tags", "note"}


def load_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for path in sorted(CORPUS_DIR.glob("*.yaml")):
        for entry in yaml.safe_load(path.read_text(encoding="utf-8")):
            cases.append({**entry, "file": path.name})
    return cases


def load_real_rules() -> RuleTable:
    """The product's rules table (knowledge/rules.yaml), citations checked against the sources."""
    knowledge = default_knowledge_dir()
    return load_rules(knowledge / "rules.yaml", load_knowledge(knowledge).citations)


def effective(findings: Findings, rules: RuleTable) -> tuple[dict[str, Any], list[Evidence]]:
    """The findings as the table uses them: the extracted values, plus what the table derives
    (instability stated, symptoms not stated -> symptomatic), with the spans behind each."""
    values = {name: getattr(findings, name) for name in FINDINGS}
    evidence: list[Evidence] = []
    for derived in rules.recommend(findings).derived:
        if values.get(derived.input) is None:
            values[derived.input] = {"yes": True, "no": False}.get(derived.value, derived.value)
            evidence += list(derived.evidence)
    return values, evidence


def shown_tier(findings: Findings, rules: RuleTable) -> str | None:
    """The tier the assistant shows: a card only when the text states a clinical finding or asks
    what to do (Assistant.ask), and then the real rules table decides."""
    if findings.has_clinical_finding() or findings.asks_management:
        return rules.recommend(findings).tier
    return None


def tier_of(text: str, lexicon: Lexicon, rules: RuleTable) -> str | None:
    return shown_tier(resolve_findings(text, lexicon), rules)


def table_tier(values: dict[str, Any], conflict: list[str], rules: RuleTable) -> str | None:
    """The tier the real table gives for these expected findings (None: nothing clinical)."""
    findings = Findings(
        symptomatic=None if "symptomatic" in conflict else values["symptomatic"],
        location=None if "location" in conflict else values["location"],
        unclear_location=values["unclear_location"],
        hemodynamic_instability=values["hemodynamic_instability"],
        intracardiac_cement=values["intracardiac_cement"],
    )
    if not findings.has_clinical_finding() and not conflict:
        return None
    return rules.recommend(findings).tier
