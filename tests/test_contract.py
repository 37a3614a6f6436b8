"""The API contract as a third party tests it, against the live server (uvicorn on loopback, with
the web UI mounted at ``/`` as ``pce-assistant serve`` has it):

- Schemathesis (the CLI, pinned in the dev extra) with every check, a fixed seed and a bounded
  number of examples, over the HTTP API and the CDS Hooks endpoints: 0 failures. Once without a
  token, once with PCE_API_TOKEN set (so its auth checks have something to check).
- A typed client generated from the OpenAPI document (openapi-python-client, offline), and a call
  through it that comes back as the typed model.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from servers import serve_app

from assistant import Assistant, Settings
from assistant.retrieval.embeddings import HashEmbedder
from assistant.web.server import build_app

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
SEED = 20261114
MAX_EXAMPLES = 25
TOKEN = "contract-test-token"


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    data_dir = tmp_path_factory.mktemp("contract") / "data"
    return Assistant.from_settings(Settings(data_dir=data_dir), embedder=HashEmbedder())


@pytest.fixture(scope="module")
def live(assistant: Assistant) -> Iterator[str]:
    with serve_app(build_app(assistant=assistant)) as url:
        yield url


@pytest.fixture(scope="module")
def live_with_token(assistant: Assistant) -> Iterator[str]:
    settings = assistant.settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    secured = Assistant(dataclasses.replace(assistant.components, settings=settings),
                        assistant.audit)  # fmt: skip
    with serve_app(build_app(assistant=secured)) as url:
        yield url


def _tool_env() -> dict[str, str]:
    # The tools run offline from this venv (openapi-python-client formats with its ruff).
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "NO_COLOR": "1"}  # fmt: skip


def _schemathesis(url: str, workdir: Path, *extra: str) -> tuple[int, str, ET.Element]:
    junit = workdir / "junit.xml"
    command = [
        str(BIN / "schemathesis"), "run", f"{url}openapi.json",
        "--checks", "all", "--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES),
        "--workers", "2", "--request-timeout", "30", "--no-color",
        "--report", "junit", "--report-junit-path", str(junit), *extra,
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=workdir, env=_tool_env(), capture_output=True, text=True, timeout=900,
        check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    return done.returncode, output, ET.parse(junit).getroot()


def _summary(output: str) -> str:
    lines = [line.strip() for line in output.splitlines()]
    keep = [line for line in lines if "generated" in line or "No issues" in line
            or "failures" in line or "Tested:" in line]  # fmt: skip
    return " | ".join(keep)


def test_schemathesis_finds_no_failure_with_every_check(live: str, tmp_path: Path) -> None:
    code, output, junit = _schemathesis(live, tmp_path)
    print(_summary(output))
    assert code == 0, output[-6000:]
    assert "Tested: 8" in output  # the HTTP API and the three CDS Hooks operations
    assert int(junit.get("failures", "0")) == 0 and int(junit.get("errors", "0")) == 0
    assert "No issues found" in output


def test_schemathesis_finds_no_failure_with_a_token_required(
    live_with_token: str, tmp_path: Path
) -> None:
    code, output, junit = _schemathesis(
        live_with_token, tmp_path, "--header", f"Authorization: Bearer {TOKEN}"
    )
    print(_summary(output))
    assert code == 0, output[-6000:]
    assert int(junit.get("failures", "0")) == 0 and int(junit.get("errors", "0")) == 0


def test_a_client_generated_from_the_openapi_document_makes_a_typed_call(
    live: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(httpx.get(f"{live}openapi.json", timeout=30).json()))
    done = subprocess.run(
        [str(BIN / "openapi-python-client"), "generate", "--path", str(spec),
         "--output-path", str(tmp_path / "pce_client"), "--meta", "none"],
        cwd=tmp_path, env=_tool_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr

    monkeypatch.syspath_prepend(str(tmp_path))
    client_module = importlib.import_module("pce_client")
    recommend = importlib.import_module("pce_client.api.answers.recommend")
    models = importlib.import_module("pce_client.models")

    client = client_module.Client(base_url=live.rstrip("/"), raise_on_unexpected_status=True)
    body = models.RecommendRequest(
        findings=models.ExplicitFindings(symptomatic=True, location="central")
    )
    result = recommend.sync(client=client, body=body)
    assert isinstance(result, models.RecommendResponse)
    assert isinstance(result.recommendation, models.Recommendation)
    assert result.recommendation.tier == models.RecommendationTier.SURGICAL_EMBOLECTOMY
    assert isinstance(result.findings, models.Findings)
    assert result.findings.location == "central"

    bad = recommend.sync(
        client=client, body=models.RecommendRequest(findings=models.ExplicitFindings(location="x"))
    )
    assert isinstance(bad, models.ErrorBody) and "findings.location" in bad.detail
