"""The curated knowledge base: the shipped sources load, and each malformed file is refused."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from assistant.errors import KnowledgeError
from assistant.knowledge.sources import DOI_RE, PMID_RE, load_knowledge

REPO_ROOT = Path(__file__).resolve().parent.parent

KNOWLEDGE = REPO_ROOT / "knowledge"
FIXTURES = Path(__file__).parent / "fixtures" / "knowledge"
SHARED = REPO_ROOT.parent / "shared"


def test_shipped_knowledge_loads_with_at_least_twenty_sources() -> None:
    kb = load_knowledge(KNOWLEDGE)
    assert len(kb.sources) >= 20


def test_shipped_knowledge_includes_key_sources_with_their_dois() -> None:
    sources = load_knowledge(KNOWLEDGE).sources
    assert sources["siniscalchi-2022"].doi == "10.23750/abm.v93iS1.9425"
    assert sources["siniscalchi-2022"].pmid == "35674479"
    assert sources["clinical-pearl-2021"].doi == "10.1097/01.EEM.0000734624.06857.f3"


def test_every_shipped_source_has_a_valid_doi_or_pmid() -> None:
    for source in load_knowledge(KNOWLEDGE).sources.values():
        assert source.doi or source.pmid, source.id
        if source.doi:
            assert DOI_RE.match(source.doi), source.id
        if source.pmid:
            assert PMID_RE.match(source.pmid), source.id


def test_every_shipped_section_is_non_empty_and_ids_are_unique() -> None:
    kb = load_knowledge(KNOWLEDGE)
    section_ids: list[str] = []
    for source_id, source in kb.sources.items():
        assert source.id == source_id
        assert source.sections, source_id
        for section in source.sections:
            assert section.heading.strip() and section.text.strip(), section.id
            assert section.id.startswith(f"{source_id}#")
            section_ids.append(section.id)
    assert len(section_ids) == len(set(section_ids))


def test_shipped_source_ids_match_their_file_names() -> None:
    kb = load_knowledge(KNOWLEDGE)
    names = {p.stem for p in (KNOWLEDGE / "sources").glob("*.md")}
    assert set(kb.sources) == names


def test_fingerprint_is_stable_across_loads_and_locations(tmp_path: Path) -> None:
    copy = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, copy)
    first = load_knowledge(KNOWLEDGE).fingerprint
    assert load_knowledge(KNOWLEDGE).fingerprint == first
    assert load_knowledge(copy).fingerprint == first


def test_fingerprint_changes_when_a_source_file_changes(tmp_path: Path) -> None:
    copy = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, copy)
    before = load_knowledge(copy).fingerprint
    path = copy / "sources" / "siniscalchi-2022.md"
    path.write_text(path.read_text(encoding="utf-8") + "\nOne more sentence.\n", encoding="utf-8")
    assert load_knowledge(copy).fingerprint != before


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

RUN = 8


def _words(text: str) -> list[str]:
    return re.sub(r"[^\w\s]", " ", text.lower()).split()


def _runs(text: str) -> set[tuple[str, ...]]:
    words = _words(text)
    return {tuple(words[i : i + RUN]) for i in range(len(words) - RUN + 1)}


def _quoted(text: str) -> list[str]:
    return re.findall(r'"([^"\n]+)"', text) + re.findall(r"“([^”\n]+)”", text)


def _copied_runs(knowledge_dir: Path) -> list[str]:
    """Sections with an 8-word run equal to text quoted in the dossier or found in the seeds."""
    dossier = SHARED / "evidence" / "pce-evidence-dossier.md"
    seeds = sorted((SHARED / "seeds").glob("*.txt"))
    if not dossier.is_file() or not seeds:
        pytest.skip(f"the shared dossier and seeds are not present under {SHARED}")
    quoted = _quoted(dossier.read_text(encoding="utf-8"))
    assert len(quoted) > 50, "the dossier's quoted fragments were not found; check the parser"
    verbatim: dict[tuple[str, ...], str] = {}
    for fragment in quoted:
        for run in _runs(fragment):
            verbatim[run] = f'dossier quote "{fragment}"'
    # The seeds are the original pages, so every run of their text counts, quoted or not.
    for seed in seeds:
        for run in _runs(seed.read_text(encoding="utf-8", errors="replace")):
            verbatim.setdefault(run, f"seed {seed.name}")
    return [
        f"{section.id}: '{' '.join(run)}' (from {verbatim[run]})"
        for source in load_knowledge(knowledge_dir).sources.values()
        for section in source.sections
        for run in sorted(_runs(f"{section.heading}\n{section.text}") & verbatim.keys())
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
