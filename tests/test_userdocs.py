"""A user's own documents: loaded, tagged user-supplied, kept across reloads, and indexed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from assistant.cli import main
from assistant.errors import InputError
from assistant.knowledge.corpus import load_corpus
from assistant.knowledge.userdocs import (
    add_user_documents,
    load_user_document,
    load_user_sources,
    user_document_paths,
)
from assistant.retrieval.embeddings import SentenceTransformerEmbedder
from assistant.retrieval.index import ensure_index
from assistant.retrieval.retrievers import make_retriever
from assistant.settings import Settings

USERDOCS = Path(__file__).parent / "fixtures" / "userdocs"


@pytest.fixture
def seeds() -> list[Path]:
    """Two user documents kept in the repository (a .txt protocol and a .md case note)."""
    return sorted(USERDOCS.iterdir())


def write_pdf(path: Path, pages: list[str]) -> Path:
    """A small real PDF with one line of Helvetica text per page."""
    writer = PdfWriter()
    helvetica = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    for line in pages:
        page = writer.add_blank_page(width=400, height=144)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): helvetica})}
        )
        content = DecodedStreamObject()
        content.set_data(f"BT /F1 12 Tf 20 70 Td ({line}) Tj ET".encode("latin-1"))
        page.replace_contents(content)
    writer.write(path)
    return path


def test_seed_documents_become_user_supplied_sources_with_stable_ids(
    seeds: list[Path], tmp_path: Path
) -> None:
    added = add_user_documents(seeds, tmp_path / "data")
    assert len(added) == len(seeds)
    for path, source in zip(seeds, added, strict=True):
        assert source.user_supplied and source.evidence_type == "user-supplied"
        assert source.title == path.stem
        assert source.id.startswith("user-") and source.sections
        assert all(s.id.startswith(f"{source.id}#") and s.text for s in source.sections)
        assert load_user_document(path).id == source.id  # same content, same id
    assert len({s.id for s in added}) == len(added)


def test_added_documents_survive_a_reload_with_the_same_ids(
    seeds: list[Path], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    added = add_user_documents(seeds, data_dir)
    reloaded = load_user_sources(data_dir)
    assert sorted(reloaded) == sorted(s.id for s in added)
    for source in added:
        assert reloaded[source.id] == source


def test_adding_the_same_document_twice_keeps_one_copy(seeds: list[Path], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    add_user_documents(seeds[:1], data_dir)
    add_user_documents(seeds[:1], data_dir)
    assert len(user_document_paths(data_dir)) == 1
    assert len(load_user_sources(data_dir)) == 1


def test_user_documents_join_the_corpus_and_change_its_fingerprint(
    seeds: list[Path], settings: Settings
) -> None:
    before = load_corpus(settings)
    added = add_user_documents(seeds, settings.data_dir)
    after = load_corpus(settings)
    assert after.fingerprint != before.fingerprint
    assert after.knowledge.fingerprint == before.knowledge.fingerprint
    assert set(after.user_sources) == {s.id for s in added}
    user_passages = [p for p in after.passages if p.user_supplied]
    assert {p.source_id for p in user_passages} == set(after.user_sources)
    assert all(p.evidence_type == "user-supplied" for p in user_passages)


def test_markdown_with_level_two_headings_gives_one_section_per_heading(tmp_path: Path) -> None:
    path = tmp_path / "ward-notes.md"
    path.write_text(
        "Local protocol for cement embolism.\n\n## Imaging\nChest CT if dyspnoea.\n\n"
        "## Anticoagulation\nDiscuss with haematology.\n\n## Imaging\nRepeat at one year.\n",
        encoding="utf-8",
    )
    source = load_user_document(path)
    assert source.title == "ward-notes"
    assert [(s.heading, s.text) for s in source.sections] == [
        ("Introduction", "Local protocol for cement embolism."),
        ("Imaging", "Chest CT if dyspnoea."),
        ("Anticoagulation", "Discuss with haematology."),
        ("Imaging", "Repeat at one year."),
    ]
    assert [s.id.split("#")[1] for s in source.sections] == [
        "introduction", "imaging", "anticoagulation", "imaging-2",
    ]


def test_plain_text_file_is_one_section(tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    path.write_text("  Cement was seen in the azygos vein.  \n", encoding="utf-8")
    source = load_user_document(path)
    assert [(s.heading, s.text) for s in source.sections] == [
        ("Document", "Cement was seen in the azygos vein.")
    ]


def test_pdf_is_loaded_with_one_section_per_page(tmp_path: Path) -> None:
    path = write_pdf(
        tmp_path / "case.pdf",
        ["Cement reached the pulmonary arteries.", "Follow-up CT at one year was unchanged."],
    )
    source = load_user_document(path)
    assert [s.heading for s in source.sections] == ["Page 1", "Page 2"]
    assert [s.id for s in source.sections] == [f"{source.id}#page-1", f"{source.id}#page-2"]
    assert "pulmonary arteries" in source.sections[0].text
    assert "one year" in source.sections[1].text
    assert load_user_document(path).id == source.id


def test_unsupported_suffix_raises_input_error_and_adds_nothing(
    seeds: list[Path], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    bad = tmp_path / "notes.docx"
    bad.write_bytes(b"PK\x03\x04 not really a docx")
    with pytest.raises(InputError, match=r"unsupported file type '\.docx'") as caught:
        add_user_documents([*seeds, bad], data_dir)
    assert caught.value.field == "path"
    assert user_document_paths(data_dir) == []
    assert load_user_sources(data_dir) == {}


def test_missing_file_raises_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_user_document(tmp_path / "absent.txt")


def test_file_without_text_raises_input_error(tmp_path: Path) -> None:
    path = tmp_path / "blank.txt"
    path.write_text("   \n\n", encoding="utf-8")
    with pytest.raises(InputError, match="no text"):
        load_user_document(path)


def test_cli_index_with_an_unsupported_file_exits_2_with_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "scan.png"
    bad.write_bytes(b"\x89PNG")
    assert main(["index", "--add", str(bad), "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "unsupported file type '.png'" in err
    assert "Traceback" not in err


@pytest.mark.integration
def test_cli_index_adds_seeds_and_hybrid_search_finds_the_lmwh_statement(
    seeds: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    real_embedder: SentenceTransformerEmbedder,
) -> None:
    data_dir = tmp_path / "data"
    argv = ["index", "--add", *map(str, seeds), "--data-dir", str(data_dir)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    print(out)
    assert out.count("Added user-supplied document") == len(seeds)
    assert "Built collection" in out
    assert f"{len(seeds)} user-supplied document(s)" in out

    settings = Settings(data_dir=data_dir)
    corpus = load_corpus(settings)
    assert len(corpus.user_sources) == len(seeds)
    index, report = ensure_index(settings, corpus.passages, real_embedder, corpus.fingerprint)
    assert not report.built, "the library should reuse the index the CLI built"
    retriever = make_retriever("hybrid", settings, corpus, index, real_embedder)
    hits = retriever.retrieve("prophylactic LMWH for asymptomatic patients", 5)
    assert any(p.user_supplied and "LMWH" in p.text for p in hits), [p.id for p in hits]
