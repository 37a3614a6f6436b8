"""The CI gate on the test split, with the real model and a real embedded Chroma index.

All three retrievers run (so the report compares them); the gate is judged on hybrid. The report
is written to this test's temp directory and its path is part of the failure message.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from assistant.evals.cases import load_cases
from assistant.evals.report import write_report
from assistant.evals.runner import GATE, MODES, gate_failures, run_eval

if TYPE_CHECKING:
    from conftest import RealIndex

pytestmark = pytest.mark.integration


def test_eval_gate_passes_on_the_test_split(real_index: RealIndex, tmp_path: Path) -> None:
    cases = load_cases(split="test")
    run = run_eval(real_index.settings, cases, MODES, embedder=real_index.embedder,
                   progress=False, split="test")
    write_report(run, tmp_path)
    hybrid = run.modes["hybrid"].by_split["test"]
    failures = gate_failures(run)
    assert not failures, (
        f"CI gate failed on {hybrid.n} test cases (thresholds {GATE}); "
        f"report: {tmp_path / 'latest.md'}\n" + "\n".join(failures)
    )
