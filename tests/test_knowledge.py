"""The curated knowledge base: the shipped sources load, and each malformed file is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fixtures.verbatim.make_runs import digest, runs

from assistant.errors import KnowledgeError
from assistant.knowledge.sources import DOI_RE, PMID_RE, load_knowledge

REPO_ROOT = Path(__file__).resolve().parent.parent

KNOWLEDGE = REPO_ROOT / "knowledge"
FIXTURES = Path(__file__).parent / "fixtures" / "knowledge"
VERBATIM = FIXTURES.parent / "verbatim" / "runs.txt"


def test_shipped_knowledge_loads_every_source_under_its_file_name_with_an_identifier() -> None:
    # The loader refuses a source without a DOI/PMID, an empty section or a duplicate id
    # (the broken fixtures below); this checks what it let through.
    kb = load_knowledge(KNOWLEDGE)
    assert len(kb.sources) >= 20
    assert set(kb.sources) == {p.stem for p in (KNOWLEDGE / "sources").glob("*.md")}
    assert kb.sources["siniscalchi-2022"].doi == "10.23750/abm.v93iS1.9425"
    assert kb.sources["siniscalchi-2022"].pmid == "35674479"
    assert kb.sources["clinical-pearl-2021"].doi == "10.1097/01.EEM.0000734624.06857.f3"
    for source in kb.sources.values():
        assert (source.doi and DOI_RE.match(source.doi)) or (
            source.pmid and PMID_RE.match(source.pmid)), source.id
        assert source.sections and all(
            s.id.startswith(f"{source.id}#") and s.text.strip() for s in source.sections)
    section_ids = [s.id for source in kb.sources.values() for s in source.sections]
    assert len(section_ids) == len(set(section_ids)) == len(kb.citations)


def test_fingerprint_follows_the_content_not_the_location(tmp_path: Path) -> None:
    copy = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, copy)
    first = load_knowledge(KNOWLEDGE).fingerprint
    assert load_knowledge(KNOWLEDGE).fingerprint == load_knowledge(copy).fingerprint == first
    path = copy / "sources" / "siniscalchi-2022.md"
    path.write_text(path.read_text(encoding="utf-8") + "\nOne more sentence.\n", encoding="utf-8")
    assert load_knowledge(copy).fingerprint != first


def test_fixture_knowledge_base_loads() -> None:
    kb = load_knowledge(FIXTURES / "valid")
    assert sorted(kb.sources) == ["alpha-2020", "beta-2021"]
    assert [s.id for s in kb.sources["alpha-2020"].sections] == [
        "alpha-2020#azygos-leakage",
        "alpha-2020#cement-volume",
    ]


@pytest.mark.parametrize(
    ("case", "file_name", "field", "problem"),
    [
        ("missing-identifier", "no-identifier-2020.md", "front matter", "doi or a pmid"),
        ("duplicate-id", "alpha-copy.md", "id", "duplicate id 'alpha-2020'"),
        ("empty-section", "empty-section-2020.md", "section 'Discussion'", "is empty"),
        ("bad-yaml", "bad-yaml-2020.md", "front matter", "invalid YAML"),
        ("malformed-doi", "malformed-doi-2020.md", "doi", "is not a DOI"),
        ("unknown-evidence-type", "unknown-type-2020.md", "evidence_type", "systematic review"),
        ("text-before-heading", "text-before-heading-2020.md", "sections", "before the first"),
    ],
)
def test_broken_source_file_raises_knowledge_error_naming_path_and_field(
    case: str, file_name: str, field: str, problem: str
) -> None:
    with pytest.raises(KnowledgeError) as caught:
        load_knowledge(FIXTURES / "broken" / case)
    error = caught.value
    assert Path(error.path).name == file_name
    assert error.field == field
    assert problem in error.problem
    assert f"{file_name}:" in str(error) and f": {field}: " in str(error)
    assert error.details[0].line, "every problem names its line"


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
    """Sections with an 8-word run equal to text quoted in the dossier or found in the seeds."""
    verbatim = _verbatim_runs()
    return [
        f"{section.id}: '{run}'"
        for source in load_knowledge(knowledge_dir).sources.values()
        for section in source.sections
        for run in sorted(runs(f"{section.heading}\n{section.text}"))
        if digest(run) in verbatim
    ]


def test_knowledge_paraphrases_rather_than_copies_the_dossier_and_seeds() -> None:
    copied = _copied_runs(KNOWLEDGE)
    assert not copied, "copied text, paraphrase it:\n" + "\n".join(copied)


def test_paraphrase_guard_catches_a_copied_dossier_quote(tmp_path: Path) -> None:
    copy = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, copy)
    path = copy / "sources" / "krueger-2009.md"
    quote = "there is no clear diagnostic or treatment standard for PCE"
    path.write_text(path.read_text(encoding="utf-8") + f"\nThey wrote that {quote}.\n", "utf-8")
    copied = _copied_runs(copy)
    assert copied and all(line.startswith("krueger-2009#") for line in copied)
