"""The request log: rows queued on the request path, written in batches off it.

Recording a row is an append to a deque. A background task writes batches in a worker
thread; when the database is unreachable the batch goes to a spool file under the data dir
(fsynced) and is replayed, idempotently by request id, once the database answers again.
Shutdown drains the queue, so a SIGTERM loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Column, ColumnDefault, Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from gateway.background import stop_task
from gateway.store.tables import price_versions, request_log

log = logging.getLogger("gateway.request_log")

DATETIME_COLUMNS = ("created_at", "finished_at")


@functools.cache
def postgres_batch_insert() -> str:
    """One statement that inserts a whole batch, passed as a single JSON array of row objects.

    Why: the Core executemany it replaces (psycopg's pipeline: one INSERT and one Python dump
    per value, per row) held the GIL for ~25-60 ms of CPU per 1,000 rows, time taken from the
    event loop. Here Python only runs `orjson.dumps(rows)` (C, ~1.5 ms per 1,000 rows) and
    PostgreSQL turns each object into a `request_log` record, parsing each field with its
    column's own type (timestamptz from ISO 8601 with offset, float8 from the shortest
    round-trip repr, int8 exactly, varchar(n) still rejecting overlong values), so what is
    stored is what the old path stored. Measured against COPY into a temp table (~1.5-2x the
    CPU), unnest() of per-column arrays and a multi-row VALUES (no cheaper than executemany),
    it was the cheapest, and it stays one plain statement.

    Keys missing from a row (or null) read as NULL, except that columns with a Python-side
    default in tables.py (`default=0`, `default=False`) get it through coalesce, as the Core
    insert filled them in. ON CONFLICT (id) DO NOTHING keeps replays idempotent, also for an
    id repeated within one batch (the first wins, as with executemany).
    """

    names = ", ".join(column.name for column in request_log.columns)
    picks = ", ".join(_with_default(column, f"r.{column.name}") for column in request_log.columns)
    return (
        f"INSERT INTO {request_log.name} ({names}) SELECT {picks} "
        f"FROM json_populate_recordset(NULL::{request_log.name}, %s::json) AS r "
        "ON CONFLICT (id) DO NOTHING"
    )


@functools.cache
def sqlite_batch_insert() -> str:
    """The same for SQLite: one statement over the batch as a JSON array (`json_each`).

    SQLAlchemy's executemany held the GIL for ~22 ms of CPU per 1,000 rows (a bind processor
    per value); under load the event loop waited for it, and the one-client p99 just after a
    burst showed it. Here SQLite reads the rows in C with the GIL released. Timestamps are
    stored as SQLAlchemy stores them in SQLite (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC): orjson's
    ISO 8601 with offset goes through strftime, which normalizes it to UTC, and keeps its
    microseconds. Booleans arrive as JSON true/false, which SQLite reads as 1/0 as before.
    """

    def value(column: Column[Any]) -> str:
        field = f"json_extract(value, '$.{column.name}')"
        if column.name in DATETIME_COLUMNS:
            return (
                f"strftime('%Y-%m-%d %H:%M:%S', {field}) || CASE WHEN substr({field}, 20, 1) "
                f"= '.' THEN substr({field}, 20, 7) ELSE '.000000' END"
            )
        return _with_default(column, field)

    names = ", ".join(column.name for column in request_log.columns)
    values = ", ".join(value(column) for column in request_log.columns)
    return (
        f"INSERT INTO {request_log.name} ({names}) SELECT {values} FROM json_each(?) "
        "WHERE true ON CONFLICT (id) DO NOTHING"  # WHERE: SQLite's parser needs it here
    )


def _with_default(column: Column[Any], field: str) -> str:
    """`field`, or the column's Python-side default (as the Core insert filled it in)."""
    default = column.default
    if not isinstance(default, ColumnDefault) or not default.is_scalar:
        return field
    literal = default.arg
    if not isinstance(literal, bool | int | float):  # all the table has; str() is its SQL
        raise TypeError(f"no SQL literal for the default of request_log.{column.name}")
    return f"coalesce({field}, {str(literal).lower()})"  # false/true: both databases know them


class RequestLogWriter:
    def __init__(
        self,
        engine: Engine,
        spool_dir: Path,
        *,
        batch_size: int = 1000,
        interval: float = 0.25,
    ) -> None:
        self.engine = engine
        self.spool_dir = spool_dir
        self.batch_size = batch_size
        self.interval = interval
        self._queue: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.written = 0
        self.spooled = 0
        # Whether the spool may hold rows (it may, from an earlier run, until checked): a
        # flag rather than a directory listing on the event loop at every flush.
        self._maybe_spooled = True

    def record(self, row: dict[str, Any]) -> None:
        self._queue.append(row)
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    def start(self) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.create_task(self._run(), name="request-log-writer")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # never let the writer die: rows would pile up unseen
                log.exception("request log flush failed")

    async def flush(self) -> None:
        """Writes the rows queued when it started. Rows that arrive meanwhile wait for the next
        tick: chasing them turned a steady trickle into back-to-back one-row transactions
        (~100 commits/s at one client, each with a pool ping and a GIL handoff)."""
        async with self._lock:
            pending = len(self._queue)
            while pending > 0:
                size = min(self.batch_size, pending)
                batch = [self._queue.popleft() for _ in range(size)]
                pending -= size
                await asyncio.to_thread(self._write_or_spool, batch)
            if self._maybe_spooled:
                await asyncio.to_thread(self._replay)

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None
        while self._queue:  # calls finishing during shutdown still get their rows
            await self.flush()

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        # The rows already had to be orjson-serialisable (that is how they are spooled).
        # orjson writes datetimes as ISO 8601 with their offset, and NaN/inf as null, as the
        # spool does; no request-log field is ever NaN. exec_driver_sql (not the raw driver's
        # cursor) so that failures stay SQLAlchemyErrors and get spooled.
        document = orjson.dumps(rows).decode()
        if self.engine.dialect.name == "postgresql":
            with self.engine.begin() as connection:
                connection.exec_driver_sql(postgres_batch_insert(), (document,))
            return
        with self.engine.begin() as connection:
            connection.exec_driver_sql(sqlite_batch_insert(), (document,))

    def _write_or_spool(self, rows: list[dict[str, Any]]) -> None:
        try:
            self._insert(rows)
            self.written += len(rows)
        except SQLAlchemyError as exc:
            log.warning(
                "database unavailable (%s); spooling %d rows", type(exc).__name__, len(rows)
            )
            self._spool(rows)

    def _spool(self, rows: list[dict[str, Any]]) -> None:
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.jsonl"
        tmp = self.spool_dir / (name + ".tmp")
        with open(tmp, "wb") as handle:
            for row in rows:
                handle.write(orjson.dumps(row) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.rename(self.spool_dir / name)  # atomic: replay never sees half a file
        self.spooled += len(rows)
        self._maybe_spooled = True

    def _replay(self) -> None:
        for path in sorted(self.spool_dir.glob("*.jsonl")):
            rows = [_revive(orjson.loads(line)) for line in path.read_bytes().splitlines() if line]
            try:
                self._insert(rows)
            except SQLAlchemyError:
                return  # still down; try again on the next flush
            path.unlink()
            self.written += len(rows)
            log.info("replayed %d spooled rows from %s", len(rows), path.name)
        self._maybe_spooled = False


def _revive(row: dict[str, Any]) -> dict[str, Any]:
    for column in DATETIME_COLUMNS:
        value = row.get(column)
        if isinstance(value, str):
            row[column] = datetime.fromisoformat(value)
    return row


def record_price_version(engine: Engine, version: str, entries: dict[str, Any]) -> None:
    """Stores the prices a version names, once; request rows only reference the version."""
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    statement = insert(price_versions).on_conflict_do_nothing(index_elements=["id"])
    with engine.begin() as connection:
        connection.execute(
            statement, [{"id": version, "prices": entries, "created_at": datetime.now(UTC)}]
        )
