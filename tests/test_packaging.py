"""Packaging: the wheel carries knowledge/ and the question sets, and works installed.

The integration tests build a wheel from a copy of the sources (offline, no build isolation),
install it NON-editable into a fresh virtual environment and run the installed
``pce-assistant`` from a directory outside the repository. The new environment borrows the
project environment's dependencies through a ``.pth`` line, so nothing is downloaded and torch is
not installed twice; ``.pth`` files in a borrowed directory are not executed, so the project's
editable install stays invisible and only the wheel provides ``assistant``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers import free_port

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def test_every_subpackage_of_assistant_is_listed_for_the_wheel() -> None:
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "assistant").rglob("__init__.py")
    }
    assert found <= set(SETUPTOOLS["packages"]), "add the new subpackage to pyproject.toml"


def test_data_folders_are_mapped_into_the_package() -> None:
    mapped = SETUPTOOLS["package-dir"]
    assert mapped == {
        "assistant._data.knowledge": "knowledge",
        "assistant._data.questions": "evals/questions",
    }
    for package, folder in mapped.items():
        assert package in SETUPTOOLS["packages"] and (ROOT / folder).is_dir()
    for package in ("assistant._data.knowledge", "assistant._data.questions"):
        assert SETUPTOOLS["package-data"][package], package


# --- the installed wheel (integration) ------------------------------------------------------------


@dataclass(frozen=True)
class Installed:
    wheel: Path
    bin: Path
    run_dir: Path
    env: dict[str, str]

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "pce-assistant"), *args], cwd=self.run_dir, env=self.env,
            capture_output=True, text=True, timeout=timeout, check=False,
        )


def _copy_sources(dest: Path) -> Path:
    """What a source distribution holds; building from a copy keeps build/ out of the repo."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "assistant", dest / "assistant", ignore=ignore)
    for folder in SETUPTOOLS["package-dir"].values():
        shutil.copytree(ROOT / folder, dest / folder, ignore=ignore)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    source = _copy_sources(base / "src")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "--wheel-dir", str(base / "dist"), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (wheel,) = (base / "dist").glob("pce_assistant-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    (Path(purelib) / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall",
         "--quiet", str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    run_dir = base / "elsewhere"
    run_dir.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(base / "home"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PCE_DATA_DIR": str(base / "data"),
    }
    return Installed(wheel, venv / "bin", run_dir, env)


@pytest.mark.integration
def test_wheel_carries_the_knowledge_and_the_question_sets(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for path in (ROOT / "knowledge").rglob("*"):
        if path.is_file():
            assert f"assistant/_data/knowledge/{path.relative_to(ROOT / 'knowledge')}" in names
    for path in (ROOT / "evals" / "questions").glob("*.jsonl"):
        assert f"assistant/_data/questions/{path.name}" in names


@pytest.mark.integration
def test_installed_rules_check_reads_the_packaged_table(installed: Installed) -> None:
    result = installed.cli("rules", "check")
    assert result.returncode == 0, result.stderr
    assert "site-packages/assistant/_data/knowledge/rules.yaml: OK" in result.stdout
    assert str(ROOT) not in result.stdout


@pytest.mark.integration
def test_installed_ask_answers_as_json_from_outside_the_repository(installed: Installed) -> None:
    result = installed.cli(
        "ask", "Asymptomatic peripheral cement emboli after kyphoplasty: anticoagulate?",
        "--retriever", "bm25", "--json",
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["recommendation"]["tier"] == "surveillance"
    assert answer["citations"] and answer["versions"]["settings"]


@pytest.mark.integration
def test_installed_serve_answers_healthz(installed: Installed) -> None:
    port = free_port()
    log = installed.run_dir / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(installed.bin / "pce-assistant"), "serve", "--port", str(port)],
            cwd=installed.run_dir, env=installed.env, stdout=out, stderr=subprocess.STDOUT,
        )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    health: dict[str, object] = {}
    try:
        deadline = time.monotonic() + 300  # the first start embeds the shipped knowledge
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with opener.open(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
                    health = json.loads(reply.read())
                    break
            except OSError:
                time.sleep(0.5)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)
    assert health.get("status") == "ok", log.read_text(errors="replace")[-3000:]
    sources = (ROOT / "knowledge" / "sources").iterdir()
    shipped = [p for p in sources if p.suffix in (".md", ".yaml")]
    assert health["sources"] == len(shipped)
