"""The request log: rows queued on the request path, written in batches off it.

Recording a row is an append to a deque. A background task writes batches in a worker
thread; when the database is unreachable or does not answer in time the batch goes to a
spool file under the data dir (fsynced) and is replayed, idempotently by request id, once the
database answers again. Shutdown drains the queue in bounded time, so a SIGTERM loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import Column, ColumnDefault, Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, IntegrityError

from gateway.store.errors import cause
from gateway.store.log_rows import storable
from gateway.store.spool import DATETIME_COLUMNS, Spool, encode
from gateway.store.tables import price_versions, request_log

log = logging.getLogger("gateway.request_log")

T = TypeVar("T")
COMPLAINT_INTERVAL_S = 10.0
# SQLSTATE classes meaning "these rows", not "this database": data exception, integrity
# constraint violation, program limit exceeded (a batch too large is split like a bad one).
DATA_SQLSTATE_CLASSES = ("22", "23", "54")


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
    """Queues rows on the request path and stores them off it, losing none.

    Where a row goes, in order: the database; else (unreachable, timed out) the spool on
    disk; else (spool unwritable: disk full, read-only) memory, up to `max_held_rows`, retried
    at every flush. A row the database refuses for what it holds is isolated by bisecting
    its batch and quarantined (spool/quarantine/, one log line each), so it never blocks the
    others. After a database failure new batches go straight to the spool, and a background
    replay probes the database and writes the spool back, oldest first.
    """

    def __init__(
        self,
        engine: Engine,
        spool_dir: Path,
        *,
        batch_size: int = 1000,
        interval: float = 0.25,
        max_held_rows: int = 100_000,
        retry_interval: float = 1.0,
    ) -> None:
        self.engine = engine
        self.spool = Spool(spool_dir)
        self.batch_size = batch_size
        self.interval = interval
        self.max_held_rows = max_held_rows
        self.retry_interval = retry_interval
        self._queue: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._replayer: asyncio.Task[None] | None = None
        self._next_replay = 0.0
        self._lock = asyncio.Lock()
        self._stopping = False
        # Its own threads: a database hanging other callers (key lookups, admin routes) for
        # their timeouts must not also stall the spooling of rows.
        self._executor = ThreadPoolExecutor(2, thread_name_prefix="request-log")
        # Touched from worker threads (a flush and a replay may run at once).
        self._thread_lock = threading.Lock()
        # Rows neither the database nor the disk took, as the spool lines they will become
        # (a retry is then one write, not a re-encoding of up to max_held_rows rows).
        self._held: list[bytes] = []
        self._next_spool_retry = 0.0
        self._complaints: dict[str, float] = {}
        self._last_error = ""
        self.written = 0
        self.spooled = 0
        self.quarantined = 0
        self.dropped = 0
        # Whether the database answered the last write; while not, batches go to the spool
        # and only the replay tries the database, so a hung database stalls no flush.
        self.healthy = True
        # Whether the spool may hold rows (it may, from an earlier run, until checked): a
        # flag rather than a directory listing on the event loop at every flush.
        self._maybe_spooled = True
        self._spool_writes = 0

    @property
    def spool_dir(self) -> Path:
        return self.spool.directory

    @property
    def held(self) -> int:
        return len(self._held)

    def record(self, row: dict[str, Any]) -> None:
        self._queue.append(row)
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    def start(self) -> None:
        self.spool.prepare()
        self._task = asyncio.create_task(self._run(), name="request-log-writer")

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # never let the writer die: rows would pile up unseen
                log.exception("request log flush failed")

    async def flush(self) -> None:
        """Stores the rows queued when it started. Rows that arrive meanwhile wait for the next
        tick: chasing them turned a steady trickle into back-to-back one-row transactions
        (~100 commits/s at one client, each with a pool ping and a GIL handoff)."""
        async with self._lock:
            await self._drain(spool_only=False)
        self._replay_soon()

    async def _drain(self, *, spool_only: bool) -> None:
        pending = len(self._queue)
        while pending > 0:
            size = min(self.batch_size, pending)
            batch = [self._queue.popleft() for _ in range(size)]
            pending -= size
            await self._in_thread(self._persist, batch, spool_only)
        if self._held and time.monotonic() >= self._next_spool_retry:
            await self._in_thread(self._spool_or_hold, [])  # retry what is held

    def _replay_soon(self) -> None:
        """Starts a replay in the background when there may be something to replay (or the
        database is to be probed) and the last failed attempt is old enough."""
        if self._replayer is not None and not self._replayer.done():
            return
        if not (self._maybe_spooled or self._held or not self.healthy):
            return
        if time.monotonic() < self._next_replay:
            return
        self._replayer = asyncio.create_task(self._replay_in_thread(), name="request-log-replay")

    async def _replay_in_thread(self) -> None:
        try:
            done = await self._in_thread(self._replay)
        except Exception:
            log.exception("request log replay failed")
            done = False
        if not done:
            self._next_replay = time.monotonic() + self.retry_interval

    async def close(self) -> None:
        """Stores every queued row, in bounded time: when the database is in doubt (it failed,
        or a replay is still waiting for it) the rest goes straight to the spool."""
        self._stopping = True  # the loop finishes the flush it is in (bounded), then ends
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        replaying = self._replayer is not None and not self._replayer.done()
        async with self._lock:
            while self._queue or self._held:  # calls finishing during shutdown get rows too
                before = (len(self._queue), len(self._held))
                self._next_spool_retry = 0.0
                await self._drain(spool_only=replaying or not self.healthy)
                if self._held and (len(self._queue), len(self._held)) == before:
                    break  # neither the database nor the disk takes them
        if self._replayer is not None:
            await self._replayer  # bounded by the database timeouts
        if self.healthy and self._maybe_spooled:  # the database answers: empty the spool
            await self._in_thread(self._replay)
        if self._held:
            with self._thread_lock:
                lost, self._held = len(self._held), []
                self.dropped += lost
            log.error(
                "request log: %d rows LOST at shutdown: neither the database nor the spool "
                "(%s) took them",
                lost,
                self.spool_dir,
            )
        self._executor.shutdown(wait=False)

    # Everything below runs in worker threads.

    def _persist(self, batch: list[dict[str, Any]], spool_only: bool = False) -> None:
        rows = storable(batch)
        if self.healthy and not spool_only:
            rows = self._write(rows)
            if not rows:
                return
            self.healthy = False
            log.warning("database unavailable (%s); spooling %d rows", self._last_error, len(rows))
        self._spool_or_hold(rows)

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        # orjson writes datetimes as ISO 8601 with their offset, as the spool does.
        # exec_driver_sql (not the raw driver's cursor) so that failures stay SQLAlchemyErrors.
        document = orjson.dumps(rows).decode()
        statement = (
            postgres_batch_insert()
            if self.engine.dialect.name == "postgresql"
            else sqlite_batch_insert()
        )
        with self.engine.begin() as connection:
            connection.exec_driver_sql(statement, (document,))

    def _write(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Writes the rows, quarantining any the database refuses for what they hold (found
        by bisecting); returns the rows not written because the database is unavailable."""
        parts = [rows]
        while parts:
            part = parts.pop()
            try:
                self._insert(part)
            except Exception as exc:
                if not refuses_data(exc):
                    self._last_error = cause(exc)
                    return part + [row for rest in reversed(parts) for row in rest]
                if len(part) == 1:
                    self._quarantine(part, cause(exc))
                else:
                    middle = len(part) // 2
                    parts += [part[middle:], part[:middle]]
                continue
            with self._thread_lock:
                self.written += len(part)
        return []

    def _spool_or_hold(self, rows: list[dict[str, Any]]) -> None:
        """Spools the rows, after any held ones; holds them all when the disk refuses."""
        lines = self._take_held()
        for row in rows:
            try:
                lines.append(encode(row))
            except TypeError as exc:
                self._quarantine([row], cause(exc))
        if not lines:
            return
        try:
            self.spool.write(lines)
        except OSError as exc:
            self._hold(lines, exc)
            return
        with self._thread_lock:
            self.spooled += len(lines)
            self._spool_writes += 1
        self._maybe_spooled = True
        if self._complaints.pop("spool", None) is not None:
            log.warning("request log: the spool is writable again (%s)", self.spool_dir)

    def _take_held(self) -> list[bytes]:
        if not self._held:
            return []
        with self._thread_lock:
            held, self._held = self._held, []
        return held

    def _hold(self, lines: list[bytes], exc: OSError) -> None:
        self._next_spool_retry = time.monotonic() + self.retry_interval
        with self._thread_lock:
            self._held = lines + self._held
            over = len(self._held) - self.max_held_rows
            if over > 0:  # the oldest go first: the newest say most about the present
                del self._held[:over]
                self.dropped += over
                log.error(
                    "request log: DROPPED %d rows (%d in all): the spool cannot be written "
                    "(%s) and %d rows are already held in memory",
                    over,
                    self.dropped,
                    exc,
                    self.max_held_rows,
                )
            held, dropped = len(self._held), self.dropped
        self._complain(
            "spool",
            "request log: cannot write the spool %s (%s); %d rows held in memory (limit %d, "
            "%d dropped), retrying",
            self.spool_dir,
            exc,
            held,
            self.max_held_rows,
            dropped,
        )

    def _complain(self, topic: str, message: str, *args: Any) -> None:
        """Logs loudly, once per interval per topic (a failing disk would flood the log)."""
        now = time.monotonic()
        if now - self._complaints.get(topic, -math.inf) >= COMPLAINT_INTERVAL_S:
            self._complaints[topic] = now
            log.error(message, *args)

    def _quarantine(self, rows: list[dict[str, Any]], reason: str) -> None:
        lines = []
        for row in rows:
            try:
                lines.append(encode(row))
            except TypeError:
                lines.append(orjson.dumps({"unencodable": repr(row)}) + b"\n")
        self._quarantine_lines(lines, [str(row.get("id")) for row in rows], reason)

    def _quarantine_lines(self, lines: list[bytes], ids: list[str], reason: str) -> None:
        try:
            path = self.spool.quarantine(lines)
        except OSError as exc:
            for line in lines:  # the log is the last place left to keep them
                log.error("request log: row refused (%s), unstorable (%s): %r", reason, exc, line)
        else:
            for row_id in ids:
                log.error(
                    "request log: row %s refused (%s); quarantined to %s", row_id, reason, path
                )
        with self._thread_lock:
            self.quarantined += len(lines)

    def _replay(self) -> bool:
        """Writes held rows and spool files to the database, oldest first; False when the
        database is unavailable (the rest waits for the next attempt)."""
        if not self.healthy and not self._probe():
            return False  # nothing taken out of the spool or memory for nothing
        held = self._take_held()
        if held:
            rows, _ = self.spool.parse(held)  # every line is one we encoded
            rest = self._write(storable(rows))
            if rest:
                self._spool_or_hold(rest)
                return self._unavailable()
        writes_before = self._spool_writes
        for path in self.spool.files():
            try:
                rows, bad = self.spool.read(path)
            except OSError as exc:
                self._complain(f"read {path.name}", "request log: cannot read %s (%s)", path, exc)
                continue  # one unreadable file must not hold back the others
            if bad:
                self._quarantine_lines(bad, [path.name] * len(bad), "not a JSON object")
            rest = self._write(storable(rows))
            if rest:
                return self._unavailable()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            log.info("replayed %d spooled rows from %s", len(rows), path.name)
        if self._spool_writes == writes_before:
            self._maybe_spooled = False  # else a flush spooled meanwhile: look again
        if not self.healthy:
            log.warning("request log: the database answers again; writing rows to it")
        self.healthy = True
        return True

    def _probe(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except Exception as exc:
            self._last_error = cause(exc)
            return False
        return True

    def _unavailable(self) -> bool:
        self.healthy = False
        return False


def refuses_data(exc: BaseException) -> bool:
    """Whether the database refused the rows for what they hold (a value out of range, too
    long, NUL, NULL where required, a batch too large) rather than being unavailable."""
    if isinstance(exc, TypeError | ValueError):  # orjson could not encode a value
        return True
    if isinstance(exc, DataError | IntegrityError):
        return True
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None) or ""
    return sqlstate[:2] in DATA_SQLSTATE_CLASSES


def record_price_version(engine: Engine, version: str, entries: dict[str, Any]) -> None:
    """Stores the prices a version names, once; request rows only reference the version."""
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    statement = insert(price_versions).on_conflict_do_nothing(index_elements=["id"])
    with engine.begin() as connection:
        connection.execute(
            statement, [{"id": version, "prices": entries, "created_at": datetime.now(UTC)}]
        )
