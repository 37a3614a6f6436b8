"""The audit trail on a real PostgreSQL server (initdb + pg_ctl on loopback): the same schema as
SQLite, idempotent inserts, the spool while the server is down, and ``audit export``."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import PostgresServer

from assistant.audit import COLUMNS, SCHEMA_VERSION, AuditLog
from assistant.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_log(postgres: PostgresServer, tmp_path: Path) -> Iterator[AuditLog]:
    postgres.query("DROP TABLE IF EXISTS events, audit_schema")
    yield AuditLog(postgres.url, spool=tmp_path / "spool.jsonl")
    if not postgres.running():
        postgres.start()


def _fill(log: AuditLog) -> list[str]:
    return [
        str(log.record("ask", surface="http", user="dr-ä", question='Cement "emboli"\nline 2',
                       in_scope=1, findings={"symptomatic": False}, tier="surveillance",
                       escalations=[], latency_ms=12.5)),
        str(log.record("feedback", ref="abc", outcome="helpful")),
        str(log.record("cds", tier="anticoagulation", escalations=["intracardiac_cement"])),
    ]


def test_postgres_gets_the_same_columns_and_schema_version_as_sqlite(
    pg_log: AuditLog, postgres: PostgresServer, tmp_path: Path
) -> None:
    _fill(pg_log)
    columns = [name for (name,) in postgres.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'events' "
        "ORDER BY ordinal_position")]
    assert columns == COLUMNS
    assert postgres.query("SELECT version FROM audit_schema") == [(SCHEMA_VERSION,)]
    AuditLog(postgres.url, spool=tmp_path / "other.jsonl").record("ask", id="second-creator")
    assert postgres.query("SELECT version FROM audit_schema") == [(SCHEMA_VERSION,)]
    lite = AuditLog(tmp_path / "audit.sqlite3")
    _fill(lite)
    strip = [{k: v for k, v in r.items() if k not in ("id", "ts")} for r in lite.rows()]
    assert strip == [{k: v for k, v in r.items() if k not in ("id", "ts")}
                     for r in pg_log.rows()][:3]


def test_a_replayed_id_is_not_inserted_twice(pg_log: AuditLog) -> None:
    event = uuid.uuid4().hex
    assert pg_log.record("ask", id=event, question="first") == event
    assert pg_log.record("ask", id=event, question="again") == event
    assert [(r["id"], r["question"]) for r in pg_log.rows()] == [(event, "first")]


def test_events_while_postgres_is_stopped_are_spooled_then_replayed_in_order(
    pg_log: AuditLog, postgres: PostgresServer
) -> None:
    pg_log.record("ask", id="before")
    postgres.stop()
    during = [pg_log.record("ask", id=f"during-{i}") for i in range(20)]
    assert during == [f"during-{i}" for i in range(20)]
    assert pg_log.pending() == 20 and pg_log.lost == 0
    postgres.start()
    for _ in range(600):  # bounded wait for the background replay (it backs off to 10 s)
        if pg_log.pending() == 0:
            break
        time.sleep(0.05)
    assert pg_log.pending() == 0
    assert [r["id"] for r in pg_log.rows()] == ["before", *during]


def test_audit_export_reads_postgres_and_sqlite_alike(
    pg_log: AuditLog, postgres: PostgresServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    ids = _fill(pg_log)
    monkeypatch.setenv("PCE_AUDIT_URL", postgres.url)
    monkeypatch.setenv("PCE_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "pg.jsonl"
    assert main(["audit", "export", "--out", str(out)]) == 0
    assert "127.0.0.1" in capsys.readouterr().out
    exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in exported] == ids
    assert exported[0]["question"] == 'Cement "emboli"\nline 2' and exported[0]["user"] == "dr-ä"

    monkeypatch.delenv("PCE_AUDIT_URL")
    lite = AuditLog(tmp_path / "data" / "audit.sqlite3")
    lite_ids = _fill(lite)
    assert main(["audit", "export", "--out", str(tmp_path / "lite.csv")]) == 0
    with sqlite3.connect(lite.path) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 3
    assert (tmp_path / "lite.csv").read_text(encoding="utf-8").count("\n") >= 1 + len(lite_ids)


def test_export_with_postgres_down_exits_2_with_one_line(
    pg_log: AuditLog, postgres: PostgresServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    _fill(pg_log)
    postgres.stop()
    monkeypatch.setenv("PCE_AUDIT_URL", postgres.url)
    monkeypatch.setenv("PCE_DATA_DIR", str(tmp_path / "data"))
    assert main(["audit", "export", "--out", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "cannot read the audit database" in err and "Traceback" not in err
