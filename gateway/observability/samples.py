"""A sample of classic-model calls, their inputs and predictions, kept for drift monitoring
(against the training statistics recorded with the registry version).

The request path only draws (`gateway.prediction_sample_rate`) and appends references to a
bounded queue; a background task turns them into JSON and writes them in batches in a
worker thread. Best effort by design: a full queue or a database failure drops samples
(counted), never slows or fails a call.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway.classic.tensors import Output, Tensor, flat_values
from gateway.core.background import stop_task
from gateway.store.tables import prediction_samples

log = logging.getLogger("gateway.samples")

MAX_QUEUED = 10_000  # samples waiting for the writer; beyond this new ones are dropped
MAX_ROWS = 1_000  # rows of one call kept: a huge batch is sampled by its first rows
WRITE_EVERY_S = 1.0
COMPLAIN_EVERY_S = 60.0


class PredictionSamples:
    def __init__(self, engine: Engine, rate: float) -> None:
        self.engine = engine
        self.rate = rate
        self.dropped = 0
        self.written = 0
        self._queue: deque[tuple[Any, ...]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._complained = -math.inf

    def offer(
        self,
        request_id: str,
        alias: str,
        model_version: str | None,
        rows: int,
        inputs: list[Tensor],
        outputs: list[Output],
    ) -> None:
        """Keeps the call with probability `rate` (references only: no copy, no JSON here)."""
        if not self.rate or random.random() >= self.rate:
            return
        if len(self._queue) >= MAX_QUEUED:
            self.dropped += 1
            return
        at = datetime.now(UTC)
        self._queue.append((at, request_id, alias, model_version, rows, inputs, outputs))

    def start(self) -> None:
        if self.rate:
            self._task = asyncio.create_task(self._run(), name="prediction-samples")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(WRITE_EVERY_S)
            await self.flush()

    async def flush(self) -> None:
        batch = [self._queue.popleft() for _ in range(len(self._queue))]
        if batch:
            await asyncio.to_thread(self._write, batch)

    def _write(self, batch: list[tuple[Any, ...]]) -> None:
        rows = [
            {
                "created_at": at,
                "request_id": request_id,
                "alias": alias,
                "model_version": model_version,
                "rows": count,
                "inputs": [_tensor(t.name, t.datatype, t.shape, flat_values(t)) for t in inputs],
                "outputs": [_tensor(o.name, o.datatype, o.shape, o.data) for o in outputs],
            }
            for at, request_id, alias, model_version, count, inputs, outputs in batch
        ]
        try:
            with self.engine.begin() as connection:
                connection.execute(prediction_samples.insert(), rows)
        except SQLAlchemyError as exc:
            self.dropped += len(rows)
            now = time.monotonic()
            if now - self._complained >= COMPLAIN_EVERY_S:
                self._complained = now
                log.warning(
                    "prediction samples not written (%s); dropped so far: %d", exc, self.dropped
                )
            return
        self.written += len(rows)

    async def aclose(self) -> None:
        await stop_task(self._task)
        self._task = None
        await self.flush()


def _tensor(name: str, datatype: str, shape: Any, data: Any) -> dict[str, Any]:
    """JSON of a tensor, cut to its first MAX_ROWS rows."""
    shape = list(shape)
    values = data.tolist() if hasattr(data, "tolist") else list(data)
    if shape and shape[0] > MAX_ROWS:
        per_row = math.prod(shape[1:])
        shape[0] = MAX_ROWS
        values = values[: MAX_ROWS * per_row]
    return {"name": name, "datatype": datatype, "shape": shape, "data": values}
