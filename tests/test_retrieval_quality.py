"""Retrieval quality on the shipped knowledge with the real model: hybrid recall@5 must be 1.0.

Each question was written for this test; its acceptable sources are those whose sections answer
it (read from knowledge/sources). Dense-only and BM25-only recall are printed for comparison.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from assistant.retrieval.retrievers import Retriever, make_retriever

if TYPE_CHECKING:
    from conftest import RealIndex

pytestmark = pytest.mark.integration

K = 5

QUESTIONS: list[tuple[str, set[str]]] = [
    # mechanism and timing
    ("How does bone cement get from the vertebral body into the pulmonary arteries?",
     {"siniscalchi-2022", "clinical-pearl-2021", "josr-2021"}),
    ("How long after vertebroplasty does pulmonary cement embolism usually become apparent?",
     {"clinical-pearl-2021", "rothermich-2014", "pierre-2025", "leitman-2011"}),
    ("Can cement embolism present months or even years after vertebral augmentation?",
     {"pierre-2025", "leitman-2011", "rothermich-2014", "wu-2024", "rodrigues-2019"}),
    ("Can cement embolism cause symptoms while the cement is still being injected?",
     {"wang-2012", "rothermich-2014", "clinical-pearl-2021"}),
    # incidence
    ("How common is pulmonary cement embolism after vertebroplasty or kyphoplasty?",
     {"krueger-2009", "wang-2012", "luetmer-2011", "venmans-2010", "josr-2021", "choe-2004",
      "venmans-2008", "mansour-2018", "butscheidt-2018"}),
    ("Why do published incidence rates of cement embolism differ so much between studies?",
     {"rothermich-2014", "wang-2012", "krueger-2009", "venmans-2010", "butscheidt-2018",
      "choe-2004", "venmans-2008", "josr-2021", "luetmer-2011", "mansour-2018"}),
    ("What did post-mortem CT and autopsy show about cement emboli and cause of death?",
     {"butscheidt-2018"}),
    ("How often do operators notice cement embolism during the vertebroplasty itself?",
     {"luetmer-2011", "jbjs-2003-leakage"}),
    # anticoagulation
    ("Is acrylic bone cement thrombogenic in laboratory studies?", {"clinical-pearl-2021"}),
    ("For how many months should a symptomatic patient with cement emboli be anticoagulated?",
     {"krueger-2009", "szolnoky-2012", "hatzantonis-2017", "vena-cava-2006", "kumar-2014"}),
    ("Is there an accepted standard of care for diagnosing and treating cement embolism?",
     {"krueger-2009", "clinical-pearl-2021"}),
    ("Which treatment algorithm is based on symptoms and whether emboli are central or peripheral?",
     {"krueger-2009", "clinical-pearl-2021", "ignacio-2018"}),
    ("Should asymptomatic patients with cement emboli get prophylactic low-molecular-weight "
     "heparin?", {"siniscalchi-2022", "mansour-2018"}),
    ("Can a symptomatic patient recover with supportive care only, without anticoagulants?",
     {"waler-2020"}),
    # risk factors
    ("Does treating three or more vertebral levels increase the risk of cement embolism?",
     {"josr-2021", "luetmer-2011", "wang-2023", "choe-2004"}),
    ("Are thoracic fractures at higher risk of cement embolism than lumbar ones?",
     {"josr-2021", "wang-2023"}),
    ("Does leakage of cement into the azygos vein or paravertebral veins predict embolism?",
     {"venmans-2010", "choe-2004", "wneu-2017-leakage", "josr-2021"}),
    ("Does a larger injected volume of PMMA raise the risk of pulmonary embolism of cement?",
     {"josr-2019", "venmans-2008", "josr-2021", "luetmer-2011"}),
    ("Is cement leakage more frequent with vertebroplasty than with balloon kyphoplasty?",
     {"wneu-2017-leakage", "papanastassiou-2012", "spine-2009-complications", "choe-2004"}),
    ("Are patients with multiple myeloma or other cancers more prone to cement embolism?",
     {"mansour-2018", "choe-2004", "wang-2023", "rodrigues-2019"}),
    # imaging
    ("What do cement emboli look like on a plain chest X-ray?", {"choe-2004", "yoo-2004"}),
    ("How do cement emboli appear on chest CT?",
     {"venmans-2010", "venmans-2008", "siniscalchi-2022"}),
    ("Is routine chest imaging needed after vertebroplasty in patients without symptoms?",
     {"venmans-2010"}),
    ("Does CT detect more cement leaks than plain radiographs?",
     {"jbjs-2003-leakage", "choe-2004"}),
    # complications
    ("Can pulmonary cement embolism lead to acute respiratory distress syndrome?", {"yoo-2004"}),
    ("Can a cement fragment perforate the right ventricle and cause pericardial effusion?",
     {"wu-2024", "tseng-2023", "wang-2012"}),
    ("Can cement embolism cause lung infarction?", {"ajnr-1999-acrylic", "rothermich-2014"}),
    # intracardiac cement and removal
    ("How should cement found in the right atrium after vertebroplasty be managed?",
     {"hatzantonis-2017", "szolnoky-2012", "jkms-2018", "tseng-2023"}),
    ("When should cement emboli be removed surgically rather than treated conservatively?",
     {"rahimi-2018", "rothermich-2014", "wang-2012", "clinical-pearl-2021", "krueger-2009"}),
    ("Can a cement fragment be retrieved with an endovascular catheter technique?",
     {"vena-cava-2006", "jkms-2018", "rothermich-2014"}),
    # prevention
    ("How can cement viscosity and injection pressure reduce leakage?",
     {"saad-2022", "wneu-2017-leakage"}),
    ("Why use biplane fluoroscopy while injecting cement?",
     {"ajnr-1999-acrylic", "jbjs-2003-leakage", "venmans-2008"}),
    # Luetmer 2011 answers it too: the operator was not associated with embolism (a claim of
    # its own since knowledge became claims).
    ("Does operator experience matter in preventing cement embolism?",
     {"krueger-2009", "luetmer-2011"}),
]


def _retriever(real_index: RealIndex, mode: str) -> Retriever:
    r = real_index
    return make_retriever(mode, r.settings, r.corpus, r.index, r.embedder)


def test_questions_name_only_shipped_sources(real_index: RealIndex) -> None:
    known = set(real_index.corpus.sources)
    for question, expected in QUESTIONS:
        assert expected <= known, (question, expected - known)
    assert len(QUESTIONS) >= 24


@pytest.mark.parametrize(("question", "expected"), QUESTIONS, ids=[q for q, _ in QUESTIONS])
def test_hybrid_top5_contains_an_acceptable_source(
    real_index: RealIndex, question: str, expected: set[str]
) -> None:
    hits = _retriever(real_index, "hybrid").retrieve(question, K)
    found = [p.source_id for p in hits]
    assert expected & set(found), f"{question!r}: expected one of {sorted(expected)}, got {found}"


def test_report_recall_at_5_per_retriever(
    real_index: RealIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    recall: dict[str, float] = {}
    misses: dict[str, list[str]] = {}
    for mode in ("hybrid", "dense", "bm25"):
        retriever = _retriever(real_index, mode)
        missed = [
            question
            for question, expected in QUESTIONS
            if not expected & {p.source_id for p in retriever.retrieve(question, K)}
        ]
        recall[mode] = 1 - len(missed) / len(QUESTIONS)
        misses[mode] = missed
    with capsys.disabled():
        print(f"\nrecall@{K} over {len(QUESTIONS)} questions: "
              + ", ".join(f"{mode} {value:.3f}" for mode, value in recall.items()))
        for mode, missed in misses.items():
            for question in missed:
                print(f"  {mode} missed: {question}")
    assert recall["hybrid"] == 1.0  # the per-question test above names any miss
