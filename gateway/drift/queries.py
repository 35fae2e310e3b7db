"""Query embeddings for index health's query drift: a sample of what the embeddings endpoint
answered for the models of the collections under `indexes:` (`indexes.query_sample_rate`).

On the request path: `offer` (once an embeddings answer is priced) is a set lookup and, for a
watched alias, one `random()`; a drawn answer's bytes are kept by reference in a bounded
deque. Everything else happens in the writer: every second, in a worker thread, it reads the
vector out of each answer (floats or base64) and stores it as float32; each alias keeps its
latest `KEEP` rows. When the queue is full, new samples are dropped and counted.

Only answers to a single input are queries: an application embeds a user's query alone and
its documents in batches. The gateway's own calls (an index check's probe and golden
queries, the example collection's documents) are never offered: `skip` names their key id.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine, delete, func, select

from gateway.core.background import every, stop_task
from gateway.store.tables import drift_queries

log = logging.getLogger("gateway.drift")

QUEUE_LIMIT = 1_000
WRITE_INTERVAL_S = 1.0
KEEP = 2_000  # rows per alias; the query drift check reads the latest 500


def single_input(body: dict[str, Any]) -> bool:
    """Whether an embeddings body asks for one input: a text, one token list, or a list of
    one of them."""
    given = body.get("input")
    if isinstance(given, str):
        return True
    if not isinstance(given, list) or not given:
        return False
    return len(given) == 1 or isinstance(given[0], int)


def vector_of(answer: bytes) -> bytes | None:
    """The first embedding of an OpenAI-shaped answer as float32 bytes (little-endian), or
    None when the answer holds none."""
    try:
        data = orjson.loads(answer)["data"]
        embedding = data[0]["embedding"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return None
    if isinstance(embedding, str):  # encoding_format: base64 (float32, little-endian)
        try:
            raw = base64.b64decode(embedding, validate=True)
        except ValueError:
            return None
        return raw if raw and len(raw) % 4 == 0 else None
    if not isinstance(embedding, list) or not embedding:
        return None
    import numpy as np  # in the writer's thread: the gateway starts without it

    try:
        vector = np.asarray(embedding, dtype="<f4")
    except (TypeError, ValueError):
        return None
    return vector.tobytes() if vector.ndim == 1 else None


class QueryStore:
    """The sampled query embeddings. Every method runs in a worker thread, never on the
    event loop."""

    def __init__(self, engine: Engine, keep: int = KEEP) -> None:
        self.engine = engine
        self.keep = keep

    def add(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        aliases = {row["alias"] for row in rows}
        c = drift_queries.c
        with self.engine.begin() as connection:
            connection.execute(drift_queries.insert(), rows)
            for alias in aliases:
                oldest_kept = (
                    select(c.id)
                    .where(c.alias == alias)
                    .order_by(c.id.desc())
                    .offset(self.keep - 1)
                    .limit(1)
                    .scalar_subquery()
                )
                connection.execute(
                    delete(drift_queries).where(c.alias == alias, c.id < oldest_kept)
                )

    def recent(self, alias: str, limit: int) -> list[list[float]]:
        """The alias's latest query embeddings (newest last)."""
        c = drift_queries.c
        query = select(c.embedding).where(c.alias == alias).order_by(c.id.desc()).limit(limit)
        with self.engine.connect() as connection:
            found = connection.execute(query).scalars().all()
        import numpy as np

        return [np.frombuffer(raw, dtype="<f4").tolist() for raw in reversed(found)]

    def count(self, alias: str) -> int:
        c = drift_queries.c
        with self.engine.connect() as connection:
            return int(
                connection.execute(select(func.count()).where(c.alias == alias)).scalar_one()
            )


class QuerySampler:
    def __init__(
        self,
        aliases: Iterable[str],
        rate: float,
        store: QueryStore | None,
        skip: Iterable[str] = (),
        *,
        queue_limit: int = QUEUE_LIMIT,
        interval: float = WRITE_INTERVAL_S,
    ) -> None:
        self.aliases = frozenset(aliases) if rate > 0 else frozenset()
        self.rate = rate
        self.store = store
        self.skip = frozenset(skip)
        # False when nothing is watched: the pipeline then skips `offer` altogether.
        self.on = bool(self.aliases) and store is not None
        self.queue_limit = queue_limit
        self.interval = interval
        self._queue: deque[tuple[str, datetime, bytes]] = deque()
        self._random = random.random
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.written = 0

    # --- the request path -----------------------------------------------------------------

    def offer(
        self, alias: str | None, key_id: str | None, body: dict[str, Any], answer: bytes
    ) -> None:
        """An embeddings call's answer: kept when drawn."""
        if alias not in self.aliases or key_id in self.skip or self._random() >= self.rate:
            return
        if not single_input(body):
            return
        if len(self._queue) >= self.queue_limit:
            self.dropped += 1
            return
        assert alias is not None
        self._queue.append((alias, datetime.now(UTC), answer))

    # --- off it ---------------------------------------------------------------------------

    def start(self) -> None:
        if self.on:
            self._task = asyncio.create_task(self._run(), name="query-sampler")

    async def _run(self) -> None:
        await every(self.interval, self.flush, log, "drift: writing query samples failed")

    async def flush(self) -> None:
        """Writes what is queued now."""
        taken = [self._queue.popleft() for _ in range(len(self._queue))]
        if taken:
            await asyncio.to_thread(self._write, taken)

    def _write(self, taken: list[tuple[str, datetime, bytes]]) -> None:
        rows = [
            {"alias": alias, "created_at": at, "embedding": vector}
            for alias, at, answer in taken
            if (vector := vector_of(answer)) is not None
        ]
        assert self.store is not None
        try:
            self.store.add(rows)
        except Exception as exc:  # a sample lost in an outage is a sample; calls go on
            self.dropped += len(rows)
            log.warning("drift: %d query samples not stored: %s", len(rows), exc)
            return
        self.written += len(rows)

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None
        if self.on:
            await self.flush()
