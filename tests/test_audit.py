"""The SQLite audit trail: WAL, export round-trips, concurrent writers, and failures that never
cost the clinician the answer."""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from assistant import Assistant, Settings
from assistant.audit import COLUMNS, AuditLog
from assistant.retrieval.embeddings import HashEmbedder

QUESTION = "Asymptomatic peripheral cement emboli after kyphoplasty: anticoagulate?"


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assistant]:
    data_dir = tmp_path_factory.mktemp("audit") / "data"
    yield Assistant.from_settings(Settings(data_dir=data_dir), embedder=HashEmbedder())


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "audit" / "audit.sqlite3")


def fill(log: AuditLog) -> list[str]:
    return [
        str(
            log.record(
                "ask",
                surface="python",
                user="dr-ä",
                question='Cement "emboli", after PKP — anticoagulate?\nSecond line',
                in_scope=1,
                findings={"symptomatic": False, "location": "peripheral"},
                tier="surveillance",
                rule_id="asymptomatic-peripheral",
                escalations=[],
                citations=[{"n": 1, "source_id": "krueger-2009"}],
                versions={"app": "0.1.0"},
                latency_ms=12.5,
            )
        ),
        str(log.record("feedback", ref="abc", outcome="helpful", comment=None)),
        str(log.record("cds", tier="anticoagulation", escalations=["intracardiac_cement"])),
    ]


# --- storage -------------------------------------------------------------------------------------


def test_audit_database_uses_wal_journal_mode(log: AuditLog) -> None:
    assert log.record("ask", question="x") is not None
    with sqlite3.connect(log.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_record_returns_the_given_or_a_new_id(log: AuditLog) -> None:
    assert log.record("ask", id="answer-1") == "answer-1"
    generated = log.record("ask")
    assert generated and generated != "answer-1"
    assert [r["id"] for r in log.rows()] == ["answer-1", generated]


def test_unknown_audit_column_is_a_programming_error(log: AuditLog) -> None:
    with pytest.raises(ValueError, match="unknown audit column 'colour'"):
        log.record("ask", colour="red")


def test_export_jsonl_round_trips_every_row(log: AuditLog, tmp_path: Path) -> None:
    ids = fill(log)
    out = tmp_path / "export" / "audit.jsonl"
    assert log.export(out, "jsonl") == 3
    lines = out.read_text(encoding="utf-8").splitlines()
    exported = [json.loads(line) for line in lines]
    assert exported == list(log.rows())
    assert [r["id"] for r in exported] == ids
    assert json.loads(exported[0]["findings"]) == {"symptomatic": False, "location": "peripheral"}
    assert exported[0]["question"].endswith("\nSecond line") and exported[0]["user"] == "dr-ä"


def test_export_csv_round_trips_every_row(log: AuditLog, tmp_path: Path) -> None:
    fill(log)
    out = tmp_path / "audit.csv"
    assert log.export(out, "csv") == 3
    with out.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == COLUMNS
        exported = list(reader)
    expected = [{k: "" if v is None else str(v) for k, v in row.items()} for row in log.rows()]
    assert exported == expected
    assert json.loads(exported[2]["escalations"]) == ["intracardiac_cement"]


def test_export_of_an_empty_trail_writes_only_the_header(log: AuditLog, tmp_path: Path) -> None:
    assert log.export(tmp_path / "empty.csv", "csv") == 0
    assert (tmp_path / "empty.csv").read_text().strip() == ",".join(COLUMNS)
    with pytest.raises(ValueError, match="use csv or jsonl"):
        log.export(tmp_path / "x.xml", "xml")


# --- concurrency ---------------------------------------------------------------------------------


def test_concurrent_writer_threads_lose_and_duplicate_nothing(log: AuditLog) -> None:
    threads, per_thread = 16, 25
    barrier = threading.Barrier(threads)

    def write(t: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            assert log.record("ask", id=f"t{t}-{i}", question=f"q {t} {i}") == f"t{t}-{i}"

    workers = [threading.Thread(target=write, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    ids = [r["id"] for r in log.rows()]
    assert len(ids) == threads * per_thread
    assert len(set(ids)) == len(ids)
    assert set(ids) == {f"t{t}-{i}" for t in range(threads) for i in range(per_thread)}
    assert log.failures == 0


def _write_from_process(path: str, p: int, n: int) -> None:
    audit = AuditLog(Path(path))
    for i in range(n):
        if audit.record("ask", id=f"p{p}-{i}") is None:
            raise SystemExit(1)


def test_concurrent_writer_processes_lose_nothing(log: AuditLog) -> None:
    log.record("ask", id="first")  # the schema exists before the processes race
    context = multiprocessing.get_context("fork")
    procs = [
        context.Process(target=_write_from_process, args=(str(log.path), p, 25)) for p in range(4)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    assert log.count() == 1 + 4 * 25


# --- failures never cost the answer --------------------------------------------------------------
# A locked or read-only database is tested through the HTTP API in tests/test_faults.py.


@pytest.fixture
def swap_audit(assistant: Assistant) -> Iterator[Callable[[AuditLog], AuditLog]]:
    original = assistant.audit

    def install(log: AuditLog) -> AuditLog:
        assistant.audit = log
        return log

    yield install
    assistant.audit = original


def test_unwritable_location_still_answers(
    assistant: Assistant,
    swap_audit: Callable[[AuditLog], AuditLog],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the audit directory should be")
    log = swap_audit(AuditLog(blocker / "audit.sqlite3"))
    with caplog.at_level(logging.ERROR, logger="assistant.audit"):
        answer = assistant.ask(QUESTION)
    assert answer.recommendation is not None
    assert log.failures == 1
    assert "audit write failed" in caplog.text
