"""The SQLite audit trail: WAL, export round-trips, concurrent writers, and failures that never
cost the clinician the answer."""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from assistant import Assistant, Settings
from assistant.audit import COLUMNS, SCHEMA_VERSION, AuditLog
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


def test_read_only_database_still_answers_and_spools_the_events(
    assistant: Assistant,
    swap_audit: Callable[[AuditLog], AuditLog],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = AuditLog(tmp_path / "ro.sqlite3")
    log.record("ask", id="existing")  # a real database, then opened read-only
    uri = f"file:{log.path}?mode=ro"
    monkeypatch.setattr(log, "_connect", lambda: sqlite3.connect(uri, uri=True))
    swap_audit(log)
    with caplog.at_level(logging.ERROR, logger="assistant.audit"):
        answer = assistant.ask(QUESTION)
        _, rec, card_id = assistant.recommend_from({"symptomatic": True, "location": "central"})
    assert answer.recommendation is not None and answer.recommendation.tier == "surveillance"
    assert rec.tier == "surgical_embolectomy"
    assert log.failures == 2 and log.lost == 0
    assert "audit write failed" in caplog.text and "readonly" in caplog.text
    assert "the answer was still returned" in caplog.text
    assert QUESTION not in caplog.text, "the log must not carry the question (the spool does)"
    assert [r["id"] for r in log.rows()] == ["existing"]
    assert [json.loads(line)["id"] for line in log.spool.path.read_text().splitlines()] == [
        answer.id, card_id,
    ]


def test_locked_database_still_answers_then_replays_the_spool_in_order(
    assistant: Assistant,
    swap_audit: Callable[[AuditLog], AuditLog],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = AuditLog(tmp_path / "locked.sqlite3")
    log.record("ask", id="existing")

    def impatient() -> sqlite3.Connection:  # the real 10 s busy wait, shortened for the test
        conn = sqlite3.connect(log.path, timeout=0.2)
        conn.execute("PRAGMA busy_timeout = 200")
        return conn

    monkeypatch.setattr(log, "_connect", impatient)
    swap_audit(log)
    holder = sqlite3.connect(log.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with caplog.at_level(logging.ERROR, logger="assistant.audit"):
            answer = assistant.ask(QUESTION)
            feedback = assistant.record_feedback(answer.id, "helpful")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert answer.recommendation is not None and answer.text
    assert feedback is not None, "the feedback is kept (spooled), not dropped"
    assert log.failures == 2
    assert "database is locked" in caplog.text
    assert log.record("ask", id="after") == "after"  # queued behind the spooled events
    log.drain()
    assert [r["id"] for r in log.rows()] == ["existing", answer.id, feedback, "after"]
    assert log.pending() == 0


def test_unwritable_location_still_answers_and_counts_the_lost_event(
    assistant: Assistant,
    swap_audit: Callable[[AuditLog], AuditLog],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the audit directory should be")
    log = swap_audit(AuditLog(blocker / "audit.sqlite3"))  # the spool would be there too
    with caplog.at_level(logging.ERROR, logger="assistant.audit"):
        answer = assistant.ask(QUESTION)
    assert answer.recommendation is not None
    assert log.failures == 1 and log.lost == 1
    assert "audit write failed" in caplog.text and "LOST" in caplog.text


# --- the spool: nothing lost, nothing duplicated --------------------------------------------------


class DownAuditLog(AuditLog):
    """The real audit log, with a switch that makes the database refuse connections."""

    down = False

    def _connect(self) -> sqlite3.Connection:
        if self.down:
            raise sqlite3.OperationalError("unable to open database file (simulated outage)")
        return super()._connect()


@pytest.fixture
def down_log(tmp_path: Path) -> DownAuditLog:
    return DownAuditLog(tmp_path / "audit.sqlite3", spool=tmp_path / "spool" / "audit.jsonl")


def test_events_during_an_outage_are_replayed_in_order_exactly_once(
    down_log: DownAuditLog,
) -> None:
    down_log.record("ask", id="before")
    down_log.down = True
    during = [down_log.record("ask", id=f"during-{i}") for i in range(5)]
    assert during == [f"during-{i}" for i in range(5)]
    assert down_log.pending() == 5 and down_log.failures == 5
    down_log.down = False
    assert down_log.drain() == 5
    assert down_log.drain() == 0
    assert [r["id"] for r in down_log.rows()] == ["before", *during]


def test_a_replay_interrupted_after_the_insert_does_not_duplicate(
    down_log: DownAuditLog,
) -> None:
    down_log.down = True
    down_log.record("ask", id="a")
    down_log.record("feedback", id="b", ref="a", outcome="helpful")
    spooled = down_log.spool.path.read_text()
    down_log.down = False
    down_log.drain()
    down_log.spool.path.write_text(spooled)  # as if the process died before emptying the spool
    assert down_log.drain() == 2
    assert [r["id"] for r in down_log.rows()] == ["a", "b"]


def test_the_spool_drains_by_itself_once_the_database_is_back(down_log: DownAuditLog) -> None:
    down_log.down = True
    ids = [down_log.record("ask", id=f"e{i}") for i in range(3)]
    down_log.down = False
    for _ in range(400):  # bounded: the drainer backs off at most a few seconds here
        if down_log.pending() == 0:
            break
        time.sleep(0.05)
    assert down_log.pending() == 0
    assert [r["id"] for r in down_log.rows()] == ids


def test_a_torn_spool_line_is_set_aside_and_the_rest_replayed(down_log: DownAuditLog) -> None:
    down_log.down = True
    down_log.record("ask", id="whole")
    with down_log.spool.path.open("a") as handle:
        handle.write('{"id": "torn", "kin')  # a crash mid-write
    down_log.down = False
    down_log.drain()
    assert [r["id"] for r in down_log.rows()] == ["whole"]
    rejected = down_log.spool.path.with_name(down_log.spool.path.name + ".rejected")
    assert rejected.read_text().startswith('{"id": "torn"')


def _spool_from_process(db: str, spool: str, p: int, n: int) -> None:
    audit = DownAuditLog(Path(db), spool=Path(spool))
    audit.down = True
    audit._start_drainer = lambda: None  # type: ignore[method-assign]  # only this test drains
    for i in range(n):
        if audit.record("ask", id=f"p{p}-{i}") is None:
            raise SystemExit(1)


def test_processes_share_one_spool_without_losing_a_line(down_log: DownAuditLog) -> None:
    context = multiprocessing.get_context("fork")
    procs = [
        context.Process(
            target=_spool_from_process,
            args=(str(down_log.path), str(down_log.spool.path), p, 50),
        )
        for p in range(4)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    assert down_log.pending() == 200
    assert down_log.drain() == 200
    ids = [r["id"] for r in down_log.rows()]
    assert sorted(ids) == sorted(f"p{p}-{i}" for p in range(4) for i in range(50))
    for p in range(4):  # each process's events keep their order
        mine = [i for i in ids if i.startswith(f"p{p}-")]
        assert mine == [f"p{p}-{i}" for i in range(50)]


# --- schema ---------------------------------------------------------------------------------------


def test_schema_is_created_idempotently_with_a_version(log: AuditLog) -> None:
    log.record("ask", id="one")
    again = AuditLog(log.path)
    again.record("ask", id="two")
    with sqlite3.connect(log.path) as conn:
        assert conn.execute("SELECT version FROM audit_schema").fetchall() == [(SCHEMA_VERSION,)]
        columns = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
    assert columns == COLUMNS
    assert again.count() == 2


LEGACY_SCHEMA = """
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
  ts TEXT NOT NULL, kind TEXT NOT NULL, surface TEXT, user TEXT, question TEXT, in_scope INTEGER,
  findings TEXT, tier TEXT, rule_id TEXT, escalations TEXT, citations TEXT, versions TEXT,
  latency_ms REAL, ref TEXT, outcome TEXT, comment TEXT);
INSERT INTO events (id, ts, kind) VALUES ('old', '2026-01-01T00:00:00.000+00:00', 'ask');
"""


def test_a_database_from_before_the_schema_version_keeps_its_rows(log: AuditLog) -> None:
    log.path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(log.path) as conn:
        conn.executescript(LEGACY_SCHEMA)
    log.record("ask", id="new")
    assert [r["id"] for r in log.rows()] == ["old", "new"]


def test_a_repeated_id_is_ignored_not_duplicated(log: AuditLog) -> None:
    assert log.record("ask", id="same", question="first") == "same"
    assert log.record("ask", id="same", question="second") == "same"
    assert [(r["id"], r["question"]) for r in log.rows()] == [("same", "first")]
