"""The curated knowledge base of claims: the shipped files load, and every malformed claim is
refused with the file and the claim id named."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from fixtures.verbatim.make_runs import digest, runs

from assistant.clinical.rules import load_rules
from assistant.errors import KnowledgeError
from assistant.knowledge.coverage import dossier_facts
from assistant.knowledge.keypoints import cell_problems
from assistant.knowledge.sources import DOI_RE, PMID_RE, citation_for, load_knowledge

REPO_ROOT = Path(__file__).resolve().parent.parent

KNOWLEDGE = REPO_ROOT / "knowledge"
FIXTURE = Path(__file__).parent / "fixtures" / "knowledge" / "valid"
SHARED = REPO_ROOT.parent / "shared"
DOSSIER = SHARED / "evidence" / "pce-evidence-dossier.md"
VERBATIM = Path(__file__).parent / "fixtures" / "verbatim" / "runs.txt"


@pytest.fixture(scope="module")
def kb():  # type: ignore[no-untyped-def]
    return load_knowledge(KNOWLEDGE)


# --- the shipped knowledge -----------------------------------------------------------------------


def test_shipped_knowledge_loads_sources_and_claims(kb) -> None:  # type: ignore[no-untyped-def]
    assert len(kb.sources) >= 60
    assert len(kb.claims) >= 200
    assert sum(len(s.claims) for s in kb.sources.values()) == len(kb.claims)


def test_shipped_knowledge_includes_key_sources_with_their_dois(kb) -> None:  # type: ignore[no-untyped-def]
    sources = kb.sources
    assert sources["siniscalchi-2022"].doi == "10.23750/abm.v93iS1.9425"
    assert sources["siniscalchi-2022"].pmid == "35674479"
    assert sources["clinical-pearl-2021"].doi == "10.1097/01.EEM.0000734624.06857.f3"
    assert sources["krueger-2009"].claims[0].id == "krueger-2009#no-standard"


def test_every_shipped_source_has_a_valid_identifier_or_at_least_a_url(kb) -> None:  # type: ignore[no-untyped-def]
    for source in kb.sources.values():
        assert source.doi or source.pmid or source.url, source.id
        assert source.url and source.url.startswith(("http://", "https://")), source.id
        if source.doi:
            assert DOI_RE.match(source.doi), source.id
        if source.pmid:
            assert PMID_RE.match(source.pmid), source.id


def test_a_source_without_doi_or_pmid_is_cited_by_url_saying_none_is_recorded(kb) -> None:  # type: ignore[no-untyped-def]
    source = kb.sources["blinc-2004"]
    assert source.doi is None and source.pmid is None
    citation = citation_for(source, source.claims[0])
    assert citation.identifier == f"{source.url} (no DOI or PMID recorded)"
    assert citation.passage_id == source.claims[0].id and citation.locator


def test_claim_ids_are_global_unique_and_files_are_named_by_source_id(kb) -> None:  # type: ignore[no-untyped-def]
    names = {p.stem for p in (KNOWLEDGE / "sources").glob("*.yaml")}
    assert set(kb.sources) == names
    ids = [c.id for s in kb.sources.values() for c in s.claims]
    assert len(ids) == len(set(ids))
    for source in kb.sources.values():
        for claim in source.claims:
            assert claim.id.startswith(f"{source.id}#") and claim.source_id == source.id
            assert claim.text.strip() and claim.locator.strip() and claim.topics
            assert set(claim.topics) <= set(kb.topics)


def test_relayed_findings_name_the_study_they_come_from(kb) -> None:  # type: ignore[no-untyped-def]
    relayed = [c for c in kb.claims.values() if c.via]
    assert relayed
    tozzi = kb.claims["wang-2012#tozzi-case-embolectomy"]
    assert tozzi.via == "Tozzi 2002" and tozzi.case


def test_populations_use_the_tables_terms(kb) -> None:  # type: ignore[no-untyped-def]
    with_population = [c for c in kb.claims.values() if c.population is not None]
    assert with_population
    claim = kb.claims["krueger-2009#asymptomatic-peripheral-follow-up"]
    assert claim.population is not None
    assert claim.population.model_dump(exclude_none=True) == {
        "symptomatic": "no", "location": "peripheral",
    }


def test_fingerprint_is_stable_across_loads_and_locations(tmp_path: Path) -> None:
    copy = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, copy)
    first = load_knowledge(KNOWLEDGE).fingerprint
    assert load_knowledge(KNOWLEDGE).fingerprint == first
    assert load_knowledge(copy).fingerprint == first


@pytest.mark.parametrize("file", ["sources/siniscalchi-2022.yaml", "key_points.yaml"])
def test_fingerprint_changes_when_a_knowledge_file_changes(tmp_path: Path, file: str) -> None:
    copy = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, copy)
    before = load_knowledge(copy).fingerprint
    path = copy / file
    path.write_text(path.read_text(encoding="utf-8") + "\n# reviewed\n", encoding="utf-8")
    assert load_knowledge(copy).fingerprint != before


# --- coverage of the dossier ---------------------------------------------------------------------


def test_every_dossier_fact_is_a_claim_or_a_listed_exclusion(kb) -> None:  # type: ignore[no-untyped-def]
    coverage = kb.coverage
    assert coverage is not None
    assert coverage.universe == tuple(f"F{i}" for i in range(1, 81))
    assert coverage.uncovered() == []
    for fact in coverage.universe:
        claimed = any(fact in c.facts for c in kb.claims.values())
        assert claimed != (fact in coverage.excluded), fact


def test_the_declared_fact_universe_matches_the_dossier_when_it_is_present() -> None:
    if not DOSSIER.is_file():
        pytest.skip(f"the evidence dossier is not present at {DOSSIER}")
    facts = dossier_facts(DOSSIER.read_text(encoding="utf-8"))
    coverage = load_knowledge(KNOWLEDGE).coverage
    assert coverage is not None
    assert tuple(facts) == coverage.universe


def test_an_uncovered_fact_is_refused_naming_coverage_and_the_fact(tmp_path: Path) -> None:
    copy = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, copy)
    path = copy / "coverage.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["excluded"] = [e for e in data["excluded"] if e["fact"] != "F8"]  # F8 has no claim
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(KnowledgeError) as caught:
        load_knowledge(copy)
    assert Path(caught.value.path).name == "coverage.yaml"
    assert "F8: neither declared by a claim nor excluded" in str(caught.value)


# --- key points and cells ------------------------------------------------------------------------


def test_every_question_kind_has_resolving_key_points_and_cues(kb) -> None:  # type: ignore[no-untyped-def]
    key_points = kb.key_points
    assert key_points is not None and len(key_points.kinds) >= 17
    for kind in key_points.kinds:
        assert kind.key_points and kind.cues, kind.id
        assert all(cid in kb.claims for cid in kind.key_points), kind.id


def test_cells_name_exactly_the_rows_and_escalations_of_the_table(kb) -> None:  # type: ignore[no-untyped-def]
    table = load_rules(KNOWLEDGE / "rules.yaml", kb.citations)
    ids = [*(r.id for r in table.rows), *(e.id for e in table.escalations)]
    assert cell_problems(kb.key_points, ids) == []
    problems = cell_problems(kb.key_points, [*ids, "new-row"])
    assert problems == ["cells: no claims for rule 'new-row'"]


def test_a_key_point_that_does_not_resolve_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, copy)
    path = copy / "key_points.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("- krueger-2009#six-month-coumarin",
                                 "- krueger-2009#six-month-coumarine", 1), encoding="utf-8")
    with pytest.raises(KnowledgeError, match="six-month-coumarine' does not resolve") as caught:
        load_knowledge(copy)
    assert Path(caught.value.path).name == "key_points.yaml"


# --- malformed claims ----------------------------------------------------------------------------

Edit = Callable[[str], str]


def _replace(old: str, new: str) -> Edit:
    return lambda text: text.replace(old, new, 1)


ALPHA_TEXT = "In a fixture cohort, cement seen in the azygos vein"


@pytest.mark.parametrize(
    ("file", "edit", "field", "problem"),
    [
        ("alpha-2020", _replace(ALPHA_TEXT, "They saw cement in the azygos vein"),
         "claims[azygos-leakage]", "starts with the pronoun 'They'"),
        ("alpha-2020", _replace(ALPHA_TEXT, "This cohort saw cement in the azygos vein"),
         "claims[azygos-leakage]", "pronoun 'This'"),
        ("alpha-2020", _replace(ALPHA_TEXT, "The introduction describes cement in the azygos vein"),
         "claims[azygos-leakage]", "refers to a document"),
        ("alpha-2020", _replace(ALPHA_TEXT, "The paper begins by noting cement in the azygos vein"),
         "claims[azygos-leakage]", "refers to a document"),
        ("beta-2021", _replace("A fixture patient", "Like the Gamma cohort, a fixture patient"),
         "claims[case-summary]", "names 'Gamma' (source alpha-2020)"),
        ("beta-2021", _replace("A fixture patient", "As in 2020, a fixture patient"),
         "claims[case-summary]", "year 2020 of another study"),
        ("alpha-2020", _replace("topics: [leakage, risk-factors]", "topics: [leakage, risk]"),
         "claims[azygos-leakage]", "unknown topic 'risk'"),
        ("alpha-2020", _replace('{symptomatic: "no"}', '{colour: "no"}'),
         "claims[cement-volume].population.colour", "unknown field"),
        ("alpha-2020", _replace('{symptomatic: "no"}', '{symptomatic: "maybe"}'),
         "claims[cement-volume].population.symptomatic", "expected one of: yes, no"),
        ("alpha-2020", _replace('{symptomatic: "no"}', "{symptomatic: true}"),
         "claims[cement-volume].population.symptomatic", "expected one of: yes, no"),
        ("alpha-2020", _replace("  - id: cement-volume", "  - id: azygos-leakage"),
         "claims[azygos-leakage]", "duplicate claim id"),
        ("alpha-2020", _replace("case: false", "case: false\n    reviewer: someone"),
         "claims[azygos-leakage].reviewer", "unknown field"),
        ("alpha-2020", _replace("text: >-\n      In a fixture cohort, cement seen in the azygos "
                                "vein during injection predicted pulmonary\n      cement embolism "
                                "on follow-up chest CT.", 'text: "  "'),
         "claims[azygos-leakage].text", "at least 1 character"),
        ("alpha-2020", _replace(ALPHA_TEXT, ALPHA_TEXT + " word" * 60),
         "claims[azygos-leakage]", "at most 60"),
        ("alpha-2020", _replace('url: "https://doi.org/10.1234/fixture.alpha"\n', ""),
         "url", "required field is missing"),
        ("alpha-2020", _replace('doi: "10.1234/fixture.alpha"', 'doi: "doi:10.1234/x"'),
         "doi", "is not a DOI"),
        ("alpha-2020", _replace('evidence_type: "cohort"', 'evidence_type: "anecdote"'),
         "evidence_type", "meta-analysis"),
        ("alpha-2020", _replace("id: alpha-2020", "id: alpha-2021"), "id", "file name"),
        ("alpha-2020", _replace("claims:\n", "claims: [unclosed\n"), "", "invalid YAML"),
    ],
    ids=[
        "pronoun-they", "pronoun-this", "document-reference", "begins-by", "other-author",
        "other-year", "unknown-topic", "unknown-population-key", "unknown-population-value",
        "population-boolean", "duplicate-claim-id", "unknown-claim-field", "empty-text",
        "too-long", "missing-url", "malformed-doi", "unknown-evidence-type", "id-not-file-name",
        "bad-yaml",
    ],
)
def test_malformed_claim_file_is_refused_naming_the_file_and_the_claim(
    tmp_path: Path, file: str, edit: Edit, field: str, problem: str
) -> None:
    copy = tmp_path / "knowledge"
    shutil.copytree(FIXTURE, copy)
    path = copy / "sources" / f"{file}.yaml"
    original = path.read_text(encoding="utf-8")
    broken = edit(original)
    assert broken != original, "the edit did not apply to the fixture text"
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(KnowledgeError) as caught:
        load_knowledge(copy)
    error = caught.value
    assert Path(error.path).name == f"{file}.yaml"
    assert error.field == field
    assert problem in error.problem
    assert f"{file}.yaml" in str(error)


def test_another_studys_name_is_allowed_when_the_claim_declares_via(tmp_path: Path) -> None:
    copy = tmp_path / "knowledge"
    shutil.copytree(FIXTURE, copy)
    path = copy / "sources" / "beta-2021.yaml"
    text = path.read_text(encoding="utf-8").replace(
        "A fixture patient", "In the Gamma 2020 series, a fixture patient", 1
    ).replace("    case: true\n", '    case: true\n    via: "Gamma 2020"\n', 1)
    path.write_text(text, encoding="utf-8")
    claim = load_knowledge(copy).claims["beta-2021#case-summary"]
    assert claim.via == "Gamma 2020"


def test_fixture_knowledge_base_loads() -> None:
    kb = load_knowledge(FIXTURE)
    assert sorted(kb.sources) == ["alpha-2020", "beta-2021"]
    assert [c.id for c in kb.sources["alpha-2020"].claims] == [
        "alpha-2020#azygos-leakage",
        "alpha-2020#cement-volume",
    ]
    assert kb.key_points is None and kb.coverage is None  # optional files


def test_old_markdown_sources_are_refused_with_a_message(tmp_path: Path) -> None:
    copy = tmp_path / "knowledge"
    shutil.copytree(FIXTURE, copy)
    (copy / "sources" / "old-2019.md").write_text("---\nid: old-2019\n---\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match="no longer read"):
        load_knowledge(copy)


def test_missing_knowledge_directory_raises_knowledge_error(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match="PCE_KNOWLEDGE_DIR"):
        load_knowledge(tmp_path / "nowhere")


# --- paraphrase guard ----------------------------------------------------------------------------
# Hashes of every 8-word run of the dossier's quotes and of the seed pages: no source text in the
# repository, and the guard runs on any machine (fixtures/verbatim/make_runs.py regenerates them).


def _verbatim_runs() -> set[str]:
    lines = VERBATIM.read_text(encoding="utf-8").splitlines()
    hashes = {line for line in lines if line and not line.startswith("#")}
    assert len(hashes) > 500, f"{VERBATIM} looks truncated"
    return hashes


def _copied_runs(knowledge_dir: Path) -> list[str]:
    """Claims with an 8-word run equal to text quoted in the dossier or found in the seeds."""
    verbatim = _verbatim_runs()
    return [
        f"{claim.id}: '{run}'"
        for claim in load_knowledge(knowledge_dir).claims.values()
        for run in sorted(runs(claim.text))
        if digest(run) in verbatim
    ]


def test_knowledge_paraphrases_rather_than_copies_the_dossier_and_seeds() -> None:
    copied = _copied_runs(KNOWLEDGE)
    assert not copied, "copied text, paraphrase it:\n" + "\n".join(copied)


def test_paraphrase_guard_catches_a_copied_dossier_quote(tmp_path: Path) -> None:
    copy = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, copy)
    path = copy / "sources" / "krueger-2009.yaml"
    quote = "there is no clear diagnostic or treatment standard for PCE"
    original = path.read_text(encoding="utf-8")
    text = original.replace("found no established standard", f"found that {quote}; no standard", 1)
    assert text != original, "the edit did not apply to the knowledge text"
    path.write_text(text, encoding="utf-8")
    copied = _copied_runs(copy)
    assert copied and all(line.startswith("krueger-2009#") for line in copied)


def test_a_claim_without_a_dossier_fact_must_be_listed_as_seed_only(tmp_path: Path) -> None:
    copy = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, copy)
    path = copy / "coverage.yaml"
    text = path.read_text(encoding="utf-8")
    cut = text.index("  - claim: siniscalchi-2022#route-venous-plexuses")
    path.write_text(text[:cut], encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"siniscalchi-2022#route-venous-plexuses.*seed_only"):
        load_knowledge(copy)


def test_seed_only_lists_exactly_the_claims_without_a_dossier_fact() -> None:
    kb = load_knowledge(KNOWLEDGE)
    factless = {cid for cid, c in kb.claims.items() if not c.facts}
    data = yaml.safe_load((KNOWLEDGE / "coverage.yaml").read_text(encoding="utf-8"))
    assert {s["claim"] for s in data["seed_only"]} == factless


# Routing cues are written for a class of question; ordinary clinical wording in a vignette
# (vital signs, who is asking, the procedure's name, when it was done) must not fire them.
@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Orthopaedic surgeon here, cement emboli on the CT, what do we do?", "source-wang-2012"),
        ("The spine surgeon wants to know what to do about peripheral emboli", "removal"),
        ("Peripheral emboli after balloon kyphoplasty, anticoagulate?",
         "kyphoplasty-vs-vertebroplasty"),
        ("Dyspnoea 3 months after vertebroplasty, segmental cement", "anticoagulation-duration"),
        ("Respiratory rate 28 and heart rate 112 with peripheral emboli", "incidence"),
        ("SpO2 88% on air, cement in both lower lobes", "incidence"),
        ("She is on long-term warfarin for AF; cement in a segmental branch", "outcomes"),
        ("Presenting with pleuritic pain after T12 PVP; CT shows segmental cement", "presentation"),
        ("CT shows cement in the right PA, patient breathless", "imaging"),
        ("Thoracic vertebroplasty yesterday, now peripheral emboli", "risk-factors"),
        ("Emboli seen 2 days after the procedure, no symptoms", "timing"),
        ("Bliemel's kyphoplasty series: how often were radiographs positive?", "source-krueger"),
    ],
)
def test_a_routing_cue_does_not_fire_on_ordinary_clinical_wording(
    kb, text: str, kind: str  # type: ignore[no-untyped-def]
) -> None:
    assert kb.key_points.kind(kind).cue_hits(text) == 0


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("What counts as a central cement embolus?", "location-definition"),
        ("is a lobar embolus central or peripheral for your table?", "location-definition"),
        ("Should we thrombolyse a massive cement PE in shock?", "unstable-patient"),
        ("Is there a role for alteplase when the patient is hypotensive?", "unstable-patient"),
        ("HR 112, SpO2 88%, cement in the RPA. What now?", "management"),
        ("Is kyphoplasty safer than vertebroplasty for cement embolism?",
         "kyphoplasty-vs-vertebroplasty"),
        ("How long should we continue warfarin?", "anticoagulation-duration"),
        ("Does she need surgery for the cement in her pulmonary artery?", "removal"),
        ("How does cement embolism usually present?", "presentation"),
        ("Which scan is best to look for cement in the lungs?", "imaging"),
        ("Can symptoms start months after vertebroplasty?", "timing"),
        ("What is the embolism rate after vertebroplasty?", "incidence"),
    ],
)
def test_a_routing_cue_fires_on_its_class_of_question(
    kb, text: str, kind: str  # type: ignore[no-untyped-def]
) -> None:
    assert kb.key_points.kind(kind).cue_hits(text) > 0
