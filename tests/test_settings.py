"""Settings: one object, unknown keys rejected with a did-you-mean, defaults from package data."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.errors import ConfigurationError
from assistant.settings import Settings, default_knowledge_dir, default_questions_dir


def test_unknown_pce_environment_variable_is_rejected_with_a_suggestion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PCE_TOPK", "3")
    with pytest.raises(ConfigurationError, match=r"PCE_TOPK is not a setting \(did you mean "
                                                 r"PCE_TOP_K\?\)"):
        Settings()


def test_unknown_key_in_dot_env_is_rejected_with_a_suggestion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("PCE_TOP_K=3\nPCE_RETREIVER=bm25\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError) as caught:
        Settings()
    assert "pce_retreiver" in str(caught.value).lower()
    assert "did you mean PCE_RETRIEVER?" in str(caught.value)
    (tmp_path / ".env").write_text("PCE_TOP_K=3\n", encoding="utf-8")
    assert Settings().top_k == 3


def test_a_shared_dot_env_may_hold_other_tools_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("OTHER_TOOL_TOKEN=abc\nPCE_TOP_K=4\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert Settings().top_k == 4


def test_an_unknown_keyword_is_rejected_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"top_kk is not a setting \(did you mean "):
        Settings(data_dir=tmp_path, top_kk=3)  # type: ignore[call-arg]


def test_an_invalid_value_names_the_variable_and_the_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PCE_TOP_K", "many")
    with pytest.raises(ConfigurationError, match=r"PCE_TOP_K: .*valid integer.*'many'"):
        Settings()


def test_defaults_come_from_the_package_and_the_environment_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings().knowledge_dir == default_knowledge_dir()
    assert (default_knowledge_dir() / "rules.yaml").is_file()
    assert sorted(p.stem for p in default_questions_dir().glob("*.jsonl"))
    monkeypatch.setenv("PCE_KNOWLEDGE_DIR", str(tmp_path))
    assert Settings().knowledge_dir == tmp_path


def test_fingerprint_follows_settings_that_change_answers_only(tmp_path: Path) -> None:
    base = Settings(data_dir=tmp_path / "a")
    assert Settings(data_dir=tmp_path / "b").fingerprint() == base.fingerprint()
    assert Settings(data_dir=tmp_path / "a", top_k=7).fingerprint() != base.fingerprint()
    assert Settings(data_dir=tmp_path / "a", scope_threshold=0.5).fingerprint() != (
        base.fingerprint()
    )
