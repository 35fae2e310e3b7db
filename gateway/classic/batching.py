"""Adaptive batching: concurrent calls to one model version become one `predict` on all their
rows (MLServer's `max_batch_size` / `max_batch_time`), then each call gets its own rows back.

A call waits at most `max_batch_time` seconds for others to join it; a batch that reaches
`max_batch_size` rows goes at once. Only calls that ask for the same outputs with inputs of
the same names, datatypes and row shapes are joined. A batch that fails is predicted again
call by call, so one call's bad values fail that call alone. Off unless configured.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.classic.tensors import Output, Tensor

Predict = Callable[[list[Tensor], list[str]], Awaitable[list[Output]]]
Key = tuple[Any, ...]


@dataclass
class _Batch:
    calls: list[tuple[list[Tensor], asyncio.Future[list[Output]]]] = field(default_factory=list)
    rows: int = 0
    timer: asyncio.TimerHandle | None = None


def _key(inputs: list[Tensor], outputs: list[str]) -> Key:
    return (tuple(outputs), tuple((t.name, t.datatype, t.shape[1:]) for t in inputs))


def _joined(calls: list[list[Tensor]]) -> list[Tensor]:
    """Each input's rows, call after call: row-major data concatenates (lists or bytes)."""
    merged = []
    for index, first in enumerate(calls[0]):
        parts = [inputs[index] for inputs in calls]
        rows = sum(t.rows for t in parts)
        if isinstance(first.data, bytes):
            data: Any = b"".join(t.data for t in parts)  # type: ignore[misc]
        else:
            data = [value for t in parts for value in t.data]
        merged.append(Tensor(first.name, first.datatype, (rows, *first.shape[1:]), data))
    return merged


def _split(outputs: list[Output], sizes: list[int]) -> list[list[Output]] | None:
    """Each call's rows of each output; None when an output is not one row per input row."""
    total = sum(sizes)
    per_call: list[list[Output]] = [[] for _ in sizes]
    for output in outputs:
        if not output.shape or output.shape[0] != total:
            return None
        width = math.prod(output.shape[1:])
        start = 0
        for position, size in enumerate(sizes):
            end = start + size * width
            shape = [size, *output.shape[1:]]
            per_call[position].append(
                Output(output.name, output.datatype, shape, output.data[start:end])
            )
            start = end
    return per_call


class Batcher:
    def __init__(self, predict: Predict, max_batch_size: int, max_batch_time: float) -> None:
        self.predict = predict
        self.max_batch_size = max_batch_size
        self.max_batch_time = max_batch_time
        self._open: dict[Key, _Batch] = {}

    async def __call__(self, inputs: list[Tensor], outputs: list[str]) -> list[Output]:
        rows = inputs[0].rows
        if rows >= self.max_batch_size or not all(t.shape for t in inputs):
            return await self.predict(inputs, outputs)
        key = _key(inputs, outputs)
        batch = self._open.get(key)
        if batch is not None and batch.rows + rows > self.max_batch_size:
            self._flush(key)
            batch = None
        if batch is None:
            batch = self._open[key] = _Batch()
            loop = asyncio.get_running_loop()
            batch.timer = loop.call_later(self.max_batch_time, self._flush, key)
        future: asyncio.Future[list[Output]] = asyncio.get_running_loop().create_future()
        batch.calls.append((inputs, future))
        batch.rows += rows
        if batch.rows >= self.max_batch_size:
            self._flush(key)
        return await future

    def _flush(self, key: Key) -> None:
        batch = self._open.pop(key, None)
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        task = asyncio.ensure_future(self._run(batch, list(key[0])))
        task.add_done_callback(_retrieve)

    async def _run(self, batch: _Batch, outputs: list[str]) -> None:
        calls = [inputs for inputs, _ in batch.calls]
        futures = [future for _, future in batch.calls]
        if len(calls) > 1:
            try:
                predicted = await self.predict(_joined(calls), outputs)
            except Exception:  # each call is tried alone below
                predicted = None
            shares = _split(predicted, [c[0].rows for c in calls]) if predicted else None
            if shares is not None:
                for future, share in zip(futures, shares, strict=True):
                    if not future.done():
                        future.set_result(share)
                return
        for inputs, future in zip(calls, futures, strict=True):  # alone: its own error
            try:
                result = await self.predict(inputs, outputs)
            except Exception as exc:  # handed to the call's own awaiter
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()
