"""The claim-level composer with hand-made claims: tier first, no other group's claims, cases
introduced as cases, each sentence cited by its own claim, markers that resolve."""

from __future__ import annotations

import re

from assistant.answer.compose import Composer, tier_sentence
from assistant.answer.disagreements import Topic
from assistant.knowledge.keypoints import KeyPoints, QuestionKind
from assistant.types import (
    Certainty,
    Citation,
    Findings,
    Passage,
    Population,
    Recommendation,
)


def claim(cid: str, text: str, **fields: object) -> Passage:
    source = cid.split("#")[0]
    return Passage(id=cid, kind="claim", source_id=source, section_id=cid, section="abstract",
                   locator="abstract", text=text, title=f"Title of {source}", year=2020,
                   doi=f"10.1234/{source}", evidence_type="cohort", **fields)  # type: ignore[arg-type]


CLAIMS = [
    claim("alpha-2020#follow-up", "Patients without symptoms and peripheral emboli need follow-up "
          "only.", population=Population(symptomatic="no", location="peripheral"),
          topics=("management",)),
    claim("beta-2021#anticoagulate", "Emboli that cause symptoms are treated with heparin and "
          "then a coumarin for 6 months.", population=Population(symptomatic="yes"),
          topics=("management",)),
    claim("gamma-2019#case-supportive", "The 75-year-old woman received supportive care only and "
          "was discharged stable.", case=True, topics=("management",)),
    claim("delta-2018#incidence", "Cement embolism followed 23% of sessions in a prospective CT "
          "study.", topics=("incidence",)),
    claim("epsilon-2017#incidence", "Cement embolism was found in 9.4% of patients on chest CT.",
          topics=("incidence",)),
]
KEY_POINTS = KeyPoints(
    kinds=(QuestionKind("incidence", "How common", (re.compile(r"how\s+common", re.I),),
                        ("incidence",), ("epsilon-2017#incidence", "delta-2018#incidence")),),
    cells={"asymptomatic-peripheral": ("alpha-2020#follow-up",),
           "symptomatic-peripheral": ("beta-2021#anticoagulate", "gamma-2019#case-supportive")},
)
LABELS = {"gamma-2019": "Gamma 2019"}


def composer() -> Composer:
    return Composer(CLAIMS, key_points=KEY_POINTS, labels=LABELS)


def cite(cid: str) -> Citation:
    p = next(c for c in CLAIMS if c.id == cid)
    return Citation(source_id=p.source_id, title=p.title, passage_id=cid, section="abstract",
                    snippet=p.text, evidence_type="cohort", locator="abstract")


def rec(rule_id: str, tier: str, label: str, inputs: dict[str, str],
        citations: tuple[str, ...]) -> Recommendation:
    return Recommendation(tier=tier, label=label, rule_id=rule_id, rules_version="1",  # type: ignore[arg-type]
                          actions=("a",), rationale="r", inputs=inputs,
                          citations=tuple(cite(c) for c in citations),
                          certainty=Certainty(level="very low", basis="case reports",
                                              appraisal="tool"))


SYMPTOMATIC = rec("symptomatic-peripheral", "anticoagulation", "anticoagulation",
                  {"symptomatic": "yes", "location": "peripheral"}, ("beta-2021#anticoagulate",))


def test_a_vignette_leads_with_this_patients_tier_then_the_cells_claims() -> None:
    findings = Findings(symptomatic=True, location="peripheral")
    out = composer().compose("Breathless, peripheral cement emboli: what now?", CLAIMS,
                             findings=findings, recommendation=SYMPTOMATIC)
    first = out.sentences[0]
    assert first.role == "tier"
    assert first.text == ("For a patient with symptoms and peripheral emboli, the decision table "
                          "gives: anticoagulation.")
    assert out.sentences[1].cites == ("beta-2021#anticoagulate",)


def test_no_claim_about_another_group_of_patients() -> None:
    findings = Findings(symptomatic=True, location="peripheral")
    out = composer().compose("Breathless, peripheral cement emboli: what now?", CLAIMS,
                             findings=findings, recommendation=SYMPTOMATIC)
    cited = {cid for s in out.sentences for cid in s.cites}
    assert "alpha-2020#follow-up" not in cited  # about patients without symptoms
    assert "Patients without symptoms" not in out.text


def test_a_case_claim_is_introduced_as_a_published_case() -> None:
    findings = Findings(symptomatic=True, location="peripheral")
    out = composer().compose("Breathless, peripheral cement emboli: what now?", CLAIMS,
                             findings=findings, recommendation=SYMPTOMATIC)
    (case,) = [s for s in out.sentences if s.cites == ("gamma-2019#case-supportive",)]
    assert case.text.startswith("In a published case (Gamma 2019), the 75-year-old woman")


def test_each_sentence_carries_the_marker_of_its_own_claim_numbered_by_first_use() -> None:
    out = composer().compose("How common is cement embolism?", CLAIMS)
    numbers = [c.n for c in out.citations]
    assert numbers == list(range(1, len(numbers) + 1))
    for s in out.sentences:
        (cid,) = s.cites
        c = next(x for x in out.citations if x.passage_id == cid)
        assert f"{s.text} [{c.n}]" in out.text
        assert c.source_id == cid.split("#")[0] and c.locator == "abstract"


def test_a_specific_question_is_answered_by_the_claim_that_answers_it() -> None:
    out = composer().compose("How common was embolism in the prospective CT study?", CLAIMS)
    assert out.sentences[0].cites == ("delta-2018#incidence",)


def test_a_disagreement_note_only_for_the_disputed_topic_and_ids_that_do_not_resolve_drop() -> None:
    # Built without the loader's check, so an id that does not resolve reaches the composer.
    note = Topic.model_construct(id="incidence", triggers=[re.compile("common")],
                                 note="Rates differ: 23% {delta-2018#incidence} and 9.4% "
                                      "{epsilon-2017#incidence} {missing-2000#gone}.")
    out = composer().compose("How common is cement embolism?", CLAIMS, [note])
    assert out.text.split("\n\n")[-1].startswith("Rates differ: 23% [")
    assert "missing" not in out.text and "{" not in out.text
    findings = Findings(symptomatic=True, location="peripheral")
    vignette = composer().compose("Breathless, peripheral cement emboli: how common?", CLAIMS,
                                  [note], findings=findings, recommendation=SYMPTOMATIC)
    assert "Rates differ" not in vignette.text  # another topic than this patient's cell


def test_needs_information_names_what_is_missing() -> None:
    from assistant.types import MissingFinding

    r = rec("location-unknown", "needs_information", "more information needed",
            {"symptomatic": "yes", "location": "unknown"}, ())
    r = r.model_copy(update={"missing": (MissingFinding(finding="location", question="Where?",
                                                        outcomes={}),)})
    assert tier_sentence(r) == ("For this patient the decision table needs more information "
                                "before it gives a tier: whether the most proximal emboli are "
                                "central or peripheral.")




def test_a_question_about_a_convention_is_answered_by_the_convention_first() -> None:
    kinds = KeyPoints(
        kinds=(*KEY_POINTS.kinds,
               QuestionKind("location-definition", "What counts as central",
                            (re.compile(r"\bwhat\b.{0,30}\bcounts?\b.{0,30}\bcentral", re.I),),
                            ("management",), ("alpha-2020#follow-up",), "location")),
        cells=KEY_POINTS.cells,
    )
    rules = "Central = the pulmonary trunk or a main pulmonary artery. Lobar is not classified."
    out = Composer(CLAIMS, key_points=kinds, labels=LABELS,
                   conventions={"location": rules}).compose("What counts as central?", CLAIMS)
    assert out.sentences[0].role == "convention" and out.sentences[0].cites == ()
    assert out.text.startswith(rules)
    other = Composer(CLAIMS, key_points=kinds, labels=LABELS, conventions={"location": rules})
    assert rules not in other.compose("How common is cement embolism?", CLAIMS).text


def test_the_note_on_this_patients_overlay_is_shown_and_no_other() -> None:
    from assistant.types import Escalation

    overlay = Topic.model_construct(id="intracardiac_cement", triggers=[re.compile("heart")],
                                    note="Sources differ on cement in the heart "
                                         "{delta-2018#incidence}.")
    other = Topic.model_construct(id="incidence", triggers=[re.compile("heart")],
                                  note="Rates differ {epsilon-2017#incidence}.")
    escalated = SYMPTOMATIC.model_copy(update={"escalations": (
        Escalation(id="intracardiac_cement", label="intracardiac cement", actions=("echo",),
                   rationale="r", citations=()),)})
    findings = Findings(symptomatic=True, location="peripheral", intracardiac_cement=True)
    out = composer().compose("Breathless, cement in the heart: what now?", CLAIMS,
                             [overlay, other], findings=findings, recommendation=escalated)
    assert "Sources differ on cement in the heart" in out.text
    assert "Rates differ" not in out.text
    plain = composer().compose("Breathless, cement in the heart: what now?", CLAIMS,
                               [overlay], findings=findings, recommendation=SYMPTOMATIC)
    assert "Sources differ" not in plain.text


def test_an_input_the_table_derived_counts_as_a_finding_for_populations() -> None:
    # Instability counts as symptoms in the table; a claim about patients without symptoms
    # must not be shown although the text itself stated no symptom status.
    derived = SYMPTOMATIC.model_copy(update={"rule_id": "symptoms-unknown",
                                             "tier": "needs_information",
                                             "inputs": {"symptomatic": "yes",
                                                        "location": "unknown"}})
    out = composer().compose("Hypotensive with cement emboli: what now?", CLAIMS,
                             findings=Findings(), recommendation=derived)
    assert "alpha-2020#follow-up" not in {cid for s in out.sentences for cid in s.cites}


def test_a_specific_kind_is_routed_before_the_general_one_and_typed_words_break_ties() -> None:
    from assistant.answer.lexical import Idf
    from assistant.answer.route import Router

    general = QuestionKind("management", "Management", (re.compile(r"what\s+should\s+we\s+do"),),
                           ("management",), ("alpha-2020#follow-up",), general=True)
    unstable = QuestionKind("unstable", "Unstable", (re.compile(r"hypotens\w*"),),
                            ("management",), ("beta-2021#anticoagulate",))
    rates = QuestionKind("incidence", "How common", (re.compile(r"\bleak\s+rates?"),),
                         ("incidence",), ("delta-2018#incidence",))
    versus = QuestionKind("versus", "VP vs KP", (re.compile(r"\bvertebroplasty\s+vs\b"),),
                          ("incidence",), ("epsilon-2017#incidence",))
    router = Router(KeyPoints(kinds=(general, unstable, rates, versus), cells={}),
                    {p.id: p.text for p in CLAIMS}, {}, Idf(p.text for p in CLAIMS))
    first = router.route("What should we do if she becomes hypotensive?")[0]
    assert first.kind.id == "unstable"
    assert router.route("vertebroplasty vs kyphoplasty leak rates?")[0].kind.id == "versus"
    # An expansion of an abbreviation feeds the cues but does not outweigh what was typed.
    expanded = router.route("leak rates after VP?", "leak rates after VP? vertebroplasty vs")
    assert [r.kind.id for r in expanded][:2] == ["incidence", "versus"]


def test_how_long_is_answered_by_the_sentence_with_a_duration() -> None:
    claims = [
        claim("eta-2011#three-patients", "Anticoagulation after the embolism was given to 3 "
              "patients.", topics=("management",)),
        claim("zeta-2010#six-months", "Anticoagulation after the embolism was given for 6 "
              "months.", topics=("management",)),
    ]
    kp = KeyPoints(kinds=(), cells={})
    out = Composer(claims, key_points=kp).compose("How long was anticoagulation given after "
                                                  "the embolism?", claims)
    assert out.sentences[0].cites == ("zeta-2010#six-months",)


def test_a_search_style_query_that_mentions_a_finding_is_answered_by_the_evidence_first() -> None:
    waiting = rec("location-unknown", "needs_information", "more information needed",
                  {"symptomatic": "yes", "location": "unknown"}, ())
    findings = Findings(symptomatic=True)
    query = composer().compose("symptomatic cement embolism incidence", CLAIMS,
                               findings=findings, recommendation=waiting)
    assert query.sentences[0].role == "claim" and query.sentences[-1].role == "tier"
    vignette = composer().compose("Breathless after vertebroplasty. Cement emboli on CT.", CLAIMS,
                                  findings=findings, recommendation=waiting)
    assert vignette.sentences[0].role == "tier"  # sentences that describe a patient


def test_why_and_where_are_answered_by_the_sentence_that_gives_a_reason_or_a_site() -> None:
    claims = [
        claim("eta-2011#six-months", "Cement emboli were anticoagulated for 6 months in most "
              "series.", topics=("management",)),
        claim("zeta-2010#endothelium", "Cement emboli are anticoagulated for 6 months because "
              "endothelium then covers them.", topics=("management",)),
        claim("theta-2012#ct", "Cement emboli in the lungs were seen on chest CT in most "
              "patients.", topics=("imaging",)),
        claim("iota-2013#small-vessels", "Cement emboli in the lungs usually lodge in small "
              "peripheral vessels.", topics=("imaging",)),
    ]
    kp = KeyPoints(kinds=(), cells={})
    why = Composer(claims, key_points=kp).compose(
        "Why are cement emboli anticoagulated for 6 months?", claims)
    assert why.sentences[0].cites == ("zeta-2010#endothelium",)
    where = Composer(claims, key_points=kp).compose(
        "Where in the lungs are cement emboli usually seen?", claims)
    assert where.sentences[0].cites == ("iota-2013#small-vessels",)


def test_the_longest_interval_is_answered_by_the_sentence_with_a_duration() -> None:
    claims = [
        claim("eta-2011#discovered", "Cement in the lungs was discovered on chest CT in 26% of "
              "patients after vertebroplasty.", topics=("incidence",)),
        claim("zeta-2010#late", "Cement in the lungs was discovered 10 years after "
              "vertebroplasty.", case=True, topics=("timing",)),
    ]
    kp = KeyPoints(kinds=(), cells={})
    out = Composer(claims, key_points=kp).compose(
        "What is the longest interval between vertebroplasty and discovery of cement in the "
        "lungs?", claims)
    assert out.sentences[0].cites == ("zeta-2010#late",)


def test_a_named_sources_claims_lead_over_another_sources_claims_that_share_its_words() -> None:
    claims = [
        claim("pearl-2021#algorithm", "The treatment algorithm of the Pearl gives heparin for "
              "central cement emboli.", topics=("management",)),
        claim("acep-2019#monitor", "The ACEP article says patients without symptoms with "
              "peripheral emboli can be monitored.", topics=("source-recommendations",)),
    ]
    kinds = (QuestionKind("acep", "ACEP", (re.compile(r"\bACEP\b"),), ("source-recommendations",),
                          ("acep-2019#monitor",)),)
    out = Composer(claims, key_points=KeyPoints(kinds=kinds, cells={}),
                   names={"acep-2019": ["ACEP"]}).compose(
        "ACEP: what's their algorithm for cement emboli?", claims, named=("acep-2019",))
    assert out.sentences[0].cites == ("acep-2019#monitor",)


def test_number_words_match_digits_and_stray_letters_are_not_terms() -> None:
    from assistant.answer.lexical import terms

    assert terms("at one year") == terms("at 1 year")
    assert "s" not in terms("what's the rationale")
    assert "3" in terms("grade 3 of 5")  # a digit alone is a term
