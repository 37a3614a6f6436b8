"""Append-only audit trail in SQLite (WAL): every answer, recommendation and feedback.

A failing audit write (locked or read-only database) is logged and never loses the answer.
Each write opens its own connection, so concurrent requests from threads or processes are safe.
"""

from __future__ import annotations

import csv
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    ts TEXT NOT NULL,
    kind TEXT NOT NULL,            -- ask | recommend | cds | feedback
    surface TEXT,                  -- python | http | cds | ui | cli | eval
    user TEXT,
    question TEXT,
    in_scope INTEGER,
    findings TEXT,                 -- JSON, with evidence spans
    tier TEXT,
    rule_id TEXT,
    escalations TEXT,              -- JSON list
    citations TEXT,                -- JSON list
    versions TEXT,                 -- JSON
    latency_ms REAL,
    ref TEXT,                      -- feedback: the answer/card id it is about
    outcome TEXT,                  -- feedback: helpful, not_helpful, evidence_wrong, accepted...
    comment TEXT
);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind);
CREATE INDEX IF NOT EXISTS events_ref ON events(ref);
"""
COLUMNS = [
    "seq",
    "id",
    "ts",
    "kind",
    "surface",
    "user",
    "question",
    "in_scope",
    "findings",
    "tier",
    "rule_id",
    "escalations",
    "citations",
    "versions",
    "latency_ms",
    "ref",
    "outcome",
    "comment",
]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._ready = False
        self._lock = threading.Lock()
        self.failures = 0

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10.0)
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn

    def _ensure(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # closing(): the sqlite3 context manager commits but never closes the connection.
            with closing(self._connect()) as conn, conn:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(SCHEMA)
            self._ready = True

    def record(self, kind: str, **fields: Any) -> str | None:
        """Append one event; returns its id, or None if it could not be written (logged)."""
        event_id = str(fields.pop("id", None) or uuid.uuid4())
        row: dict[str, Any] = {"id": event_id, "ts": _now(), "kind": kind}
        for key, value in fields.items():
            if key not in COLUMNS:
                raise ValueError(f"unknown audit column {key!r}")
            if isinstance(value, (dict, list, tuple)):
                value = json.dumps(value, ensure_ascii=False)
            if isinstance(value, str):
                # A lone surrogate (a broken client's user name...) cannot be stored as UTF-8:
                # keep the event with U+FFFD in its place rather than lose it or the answer.
                value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
            row[key] = value
        try:
            self._ensure()
            names = ", ".join(row)
            marks = ", ".join("?" for _ in row)
            with closing(self._connect()) as conn, conn:
                conn.execute(f"INSERT INTO events ({names}) VALUES ({marks})", list(row.values()))
        except (sqlite3.Error, OSError, ValueError) as exc:
            self.failures += 1
            log.error("audit write failed (%s): %s; the answer was still returned", self.path, exc)
            return None
        return event_id

    def rows(self, kind: str | None = None) -> Iterator[dict[str, Any]]:
        self._ensure()
        query = "SELECT * FROM events" + (" WHERE kind = ?" if kind else "") + " ORDER BY seq"
        with closing(self._connect()) as conn:
            conn.row_factory = sqlite3.Row
            for row in conn.execute(query, (kind,) if kind else ()):
                yield dict(row)

    def count(self, kind: str | None = None) -> int:
        return sum(1 for _ in self.rows(kind))

    def export(self, out: Path, fmt: str = "jsonl") -> int:
        """Write every event to CSV or JSONL; returns the number of rows written."""
        n = 0
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8", newline="") as handle:
            if fmt == "csv":
                writer = csv.DictWriter(handle, fieldnames=COLUMNS)
                writer.writeheader()
                for row in self.rows():
                    writer.writerow(row)
                    n += 1
            elif fmt == "jsonl":
                for row in self.rows():
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                    n += 1
            else:
                raise ValueError(f"unknown export format {fmt!r}; use csv or jsonl")
        return n


def elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)
