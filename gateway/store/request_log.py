"""The request log: rows queued on the request path, written in batches off it.

Recording a row is an append to a deque. A background task writes batches in a worker
thread; when the database is unreachable the batch goes to a spool file under the data dir
(fsynced) and is replayed, idempotently by request id, once the database answers again.
Shutdown drains the queue, so a SIGTERM loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from gateway.store.tables import price_versions, request_log

log = logging.getLogger("gateway.request_log")

DATETIME_COLUMNS = ("created_at", "finished_at")


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
        async with self._lock:
            while self._queue:
                batch = [
                    self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))
                ]
                await asyncio.to_thread(self._write_or_spool, batch)
            if self._has_spool():
                await asyncio.to_thread(self._replay)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        dialect = self.engine.dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(request_log).on_conflict_do_nothing(index_elements=["id"])
        with self.engine.begin() as connection:
            connection.execute(statement, rows)

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

    def _has_spool(self) -> bool:
        return any(self.spool_dir.glob("*.jsonl"))

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
