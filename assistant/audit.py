"""Append-only audit trail: every answer, recommendation and feedback, in SQL (SQLAlchemy Core).

SQLite (WAL) is the embedded default; ``PCE_AUDIT_URL`` points every worker and machine at one
PostgreSQL (``postgresql+psycopg://user:password@host:5432/db``). Both get the same table, created
idempotently, and a schema version in ``audit_schema``.

No event is lost when the database is down, locked or read-only: the answer is still returned and
the event goes to a local append-only spool (JSON lines, fsync'd, shared by the processes of one
machine under a file lock). While the spool holds anything, new events queue behind it, so the
database receives them in order; a background thread replays the spool once the database answers
again (backing off while it does not). Each event carries an id (the answer's uuid) and the insert
ignores an id it already has, so a replay never duplicates.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

if TYPE_CHECKING:
    from assistant.settings import Settings

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
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
WRITABLE = COLUMNS[1:]  # seq is the database's

METADATA = sa.MetaData()
EVENTS = sa.Table(
    "events",
    METADATA,
    # BIGINT identity on PostgreSQL; SQLite keeps its INTEGER PRIMARY KEY AUTOINCREMENT (rowid).
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("id", sa.Text, nullable=False, unique=True),
    sa.Column("ts", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # ask | recommend | cds | feedback
    sa.Column("surface", sa.Text),  # python | http | cds | ui | cli | eval
    sa.Column("user", sa.Text),
    sa.Column("question", sa.Text),
    sa.Column("in_scope", sa.Integer),
    sa.Column("findings", sa.Text),  # JSON, with evidence spans
    sa.Column("tier", sa.Text),
    sa.Column("rule_id", sa.Text),
    sa.Column("escalations", sa.Text),  # JSON list
    sa.Column("citations", sa.Text),  # JSON list
    sa.Column("versions", sa.Text),  # JSON
    sa.Column("latency_ms", sa.Float),
    sa.Column("ref", sa.Text),  # feedback: the answer/card id it is about
    sa.Column("outcome", sa.Text),  # feedback: helpful, not_helpful, evidence_wrong, accepted...
    sa.Column("comment", sa.Text),
    sa.Index("events_kind", "kind"),
    sa.Index("events_ref", "ref"),
    sqlite_autoincrement=True,
)
SCHEMA = sa.Table(
    "audit_schema",
    METADATA,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied", sa.Text, nullable=False),
)
# Errors that mean "the database cannot take this now": spool the event, try again later.
DOWN = (SQLAlchemyError, sqlite3.Error, OSError)
DRAIN_BATCH = 500
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
PG_SCHEMA_LOCK = 7_235_001  # pg_advisory_xact_lock key: one schema creator at a time


def _reason(exc: BaseException) -> str:
    """The database driver's own message, without SQLAlchemy's statement and parameters."""
    orig = getattr(exc, "orig", None)
    return f"{type(orig or exc).__name__}: {orig or exc}".strip()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _clean(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str):
        # A lone surrogate (a broken client's user name...) cannot be stored as UTF-8:
        # keep the event with U+FFFD in its place rather than lose it or the answer.
        value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value


class Spool:
    """A local append-only JSONL file of events waiting for the database (one per machine).

    Appends and the replay take an exclusive file lock, so the processes of one machine share it;
    every append is fsync'd before ``record`` returns, so a crash right after loses nothing.
    """

    def __init__(self, path: Path) -> None:
        from filelock import FileLock

        self.path = path
        self._lock = FileLock(str(path) + ".lock")
        self._thread_lock = threading.Lock()

    def pending(self) -> int:
        """Events waiting (a cheap check on the hot path: the file's size first)."""
        if not self.has_pending():
            return 0
        with self._thread_lock, self._lock, self.path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())

    def has_pending(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except OSError:  # missing, or its directory is not one: nothing can be waiting there
            return False

    def append(self, row: dict[str, Any]) -> None:
        line = json.dumps(row, ensure_ascii=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def drain(self, insert: Any) -> int:
        """Hand every spooled event, in order, to ``insert(rows)``; empty the file only after."""
        if not self.has_pending():
            return 0
        with self._thread_lock, self._lock:
            rows: list[dict[str, Any]] = []
            bad: list[str] = []
            with self.path.open(encoding="utf-8") as handle:
                for line in handle:
                    if not line.strip():
                        continue
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:  # a line torn by a crash mid-write
                        bad.append(line)
            for start in range(0, len(rows), DRAIN_BATCH):
                insert(rows[start : start + DRAIN_BATCH])
            if bad:
                rejected = self.path.with_name(self.path.name + ".rejected")
                with rejected.open("a", encoding="utf-8") as handle:
                    handle.writelines(bad)
                log.error("audit spool: %d unreadable line(s) moved to %s", len(bad), rejected)
            with self.path.open("w", encoding="utf-8") as handle:  # truncate, durably
                handle.flush()
                os.fsync(handle.fileno())
            return len(rows)


class AuditLog:
    """The audit trail in SQLite (a path, or ``sqlite:///...``) or any SQLAlchemy URL."""

    def __init__(self, target: Path | str, spool: Path | None = None) -> None:
        self.path: Path | None
        text = str(target)
        if isinstance(target, Path) or "://" not in text:
            self.path = Path(target)
            self.url = sa.engine.make_url("sqlite://")
        else:
            self.url = sa.engine.make_url(text)
            self.path = (
                Path(self.url.database)
                if self.url.get_backend_name() == "sqlite" and self.url.database
                else None
            )
        if spool is None:
            if self.path is None:
                raise ValueError("an audit database URL needs a spool path (PCE_AUDIT_SPOOL)")
            spool = self.path.with_name(self.path.name + ".spool.jsonl")
        self.spool = Spool(spool)
        self.failures = 0  # events not written straight to the database (spooled, or lost)
        self.lost = 0  # events neither the database nor the spool could take
        self._engine: sa.Engine | None = None
        self._ready = False
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self._backoff = BACKOFF_FIRST_S
        self._drainer: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditLog:
        return cls(settings.audit_url or settings.audit_path, spool=settings.audit_spool_path)

    def describe(self) -> str:
        if self.path is not None:
            return str(self.path)
        return self.url.render_as_string(hide_password=True)

    # -- connection and schema ---------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """A new SQLite connection (SQLite only; tests override it to simulate faults)."""
        assert self.path is not None
        conn = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn

    def engine(self) -> sa.Engine:
        if self._engine is None:
            if self.path is not None:
                # A connection per use (NullPool), made by _connect, as concurrent processes need.
                self._engine = sa.create_engine(
                    "sqlite://", creator=lambda: self._connect(), poolclass=sa.pool.NullPool
                )
            else:
                self._engine = sa.create_engine(
                    self.url,
                    pool_pre_ping=True,  # a restarted server's dead connections are replaced
                    pool_size=4,
                    max_overflow=8,
                    pool_timeout=10,
                    connect_args={"connect_timeout": 5},
                )
        return self._engine

    def _ensure(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with closing(self._connect()) as conn:
                    conn.execute("PRAGMA journal_mode = WAL")
            with self.engine().begin() as conn:
                if conn.dialect.name == "postgresql":  # concurrent CREATEs race on pg_type
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_SCHEMA_LOCK})
                for table in (EVENTS, SCHEMA):
                    conn.execute(sa.schema.CreateTable(table, if_not_exists=True))
                for index in EVENTS.indexes:
                    conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))
                versions = [v for (v,) in conn.execute(sa.select(SCHEMA.c.version))]
                if SCHEMA_VERSION not in versions:
                    conn.execute(
                        self._insert(conn, SCHEMA, "version"),
                        [{"version": SCHEMA_VERSION, "applied": _now()}],
                    )
                if versions and max(versions) > SCHEMA_VERSION:
                    log.warning(
                        "audit schema version %d is newer than this app's %d",
                        max(versions),
                        SCHEMA_VERSION,
                    )
            self._ready = True

    @staticmethod
    def _insert(conn: sa.Connection, table: sa.Table, key: str) -> Any:
        """INSERT that skips a row whose ``key`` exists (idempotent replays)."""
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table).on_conflict_do_nothing(index_elements=[key])
        if conn.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return sqlite_insert(table).on_conflict_do_nothing(index_elements=[key])
        raise ValueError(f"audit database dialect {conn.dialect.name!r} is not supported")

    def _write(self, rows: Sequence[dict[str, Any]]) -> None:
        self._ensure()
        with self.engine().begin() as conn:
            conn.execute(self._insert(conn, EVENTS, "id"), list(rows))

    # -- writing -----------------------------------------------------------------------------

    def record(self, kind: str, **fields: Any) -> str | None:
        """Append one event; returns its id, or None only if neither database nor spool took it."""
        event_id = str(fields.pop("id", None) or uuid.uuid4())
        row: dict[str, Any] = dict.fromkeys(WRITABLE)
        row.update(id=event_id, ts=_now(), kind=kind)
        for key, value in fields.items():
            if key not in WRITABLE or key in ("id", "ts", "kind"):
                raise ValueError(f"unknown audit column {key!r}")
            row[key] = _clean(value)
        # While older events wait in the spool (or the database just failed), queue behind them.
        if not self.spool.has_pending() and time.monotonic() >= self._retry_at:
            try:
                self._write([row])
                return event_id
            except DOWN as exc:
                self._back_off()
                log.error(  # the driver's message only: the statement would log the question
                    "audit write failed (%s): %s; the event goes to the spool %s and the "
                    "answer was still returned",
                    self.describe(),
                    _reason(exc),
                    self.spool.path,
                )
        return self._spool(row)

    def _spool(self, row: dict[str, Any]) -> str | None:
        with self._lock:
            self.failures += 1
        try:
            self.spool.append(row)
        except OSError as exc:
            with self._lock:
                self.lost += 1
            log.error(
                "audit event %s LOST: the spool %s is not writable either: %s",
                row["id"],
                self.spool.path,
                exc,
            )
            return None
        self._start_drainer()
        return str(row["id"])

    def _back_off(self) -> None:
        with self._lock:
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)

    def drain(self) -> int:
        """Replay the spool into the database now; returns the events replayed (raises if down)."""
        replayed = self.spool.drain(self._write)
        with self._lock:
            self._retry_at = 0.0
            self._backoff = BACKOFF_FIRST_S
        if replayed:
            log.warning("audit: replayed %d spooled event(s) into %s", replayed, self.describe())
        return replayed

    def pending(self) -> int:
        return self.spool.pending()

    def _start_drainer(self) -> None:
        with self._lock:
            if self._drainer is not None and self._drainer.is_alive():
                return
            self._drainer = threading.Thread(
                target=self._drain_loop, name="audit-drain", daemon=True
            )
            self._drainer.start()

    def _drain_loop(self) -> None:
        while self.spool.has_pending():
            time.sleep(max(0.05, self._retry_at - time.monotonic()))
            try:
                self.drain()
            except DOWN as exc:
                self._back_off()
                log.info("audit database still unavailable (%s); retrying", _reason(exc))

    # -- reading -----------------------------------------------------------------------------

    def rows(self, kind: str | None = None) -> Iterator[dict[str, Any]]:
        self._ensure()
        query = sa.select(EVENTS).order_by(EVENTS.c.seq)
        if kind:
            query = query.where(EVENTS.c.kind == kind)
        with self.engine().connect() as conn:
            for row in conn.execute(query):
                yield dict(row._mapping)

    def count(self, kind: str | None = None) -> int:
        self._ensure()
        query = sa.select(sa.func.count()).select_from(EVENTS)
        if kind:
            query = query.where(EVENTS.c.kind == kind)
        with self.engine().connect() as conn:
            return int(conn.execute(query).scalar_one())

    def export(self, out: Path, fmt: str = "jsonl") -> int:
        """Write every event to CSV or JSONL; returns the number of rows written.

        Spooled events are replayed first, so the export holds everything recorded so far.
        """
        if fmt not in ("csv", "jsonl"):
            raise ValueError(f"unknown export format {fmt!r}; use csv or jsonl")
        if self.spool.has_pending():
            self.drain()
        n = 0
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8", newline="") as handle:
            if fmt == "csv":
                writer = csv.DictWriter(handle, fieldnames=COLUMNS)
                writer.writeheader()
                for row in self.rows():
                    writer.writerow(row)
                    n += 1
            else:
                for row in self.rows():
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                    n += 1
        return n


def elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)
