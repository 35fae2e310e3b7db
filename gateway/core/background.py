"""Background tasks the gateway runs beside requests (writers, pollers, exporters)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


async def stop_task(task: asyncio.Task[None] | None) -> None:
    """Cancels a background task and waits until it has finished."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def every(
    seconds: float, work: Callable[[], Awaitable[None]], log: logging.Logger, failed: str
) -> None:
    """Runs `work` every `seconds` until cancelled. A failure is logged (`failed`, with its
    traceback) and the next round tries again: a writer that died would let what it writes
    pile up unseen."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await work()
        except Exception:
            log.exception(failed)
