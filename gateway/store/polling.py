"""Keeping an in-memory copy of database rows fresh, off the request path.

Each replica re-reads rows changed since its last look, twice a second. Rows are re-read with
an overlap so a commit whose timestamp was taken just before the previous poll is never
missed; applying a row twice is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from gateway.core.background import stop_task

log = logging.getLogger("gateway.polling")

POLL_SECONDS = 0.5
OVERLAP = timedelta(seconds=5)


class Poller:
    """Calls `refresh(since)` in a worker thread every POLL_SECONDS; survives outages."""

    def __init__(self, name: str, refresh: Callable[[datetime], None]) -> None:
        self.name = name
        self._refresh = refresh
        self._watermark = datetime(1970, 1, 1, tzinfo=UTC)
        self._task: asyncio.Task[None] | None = None

    def refresh(self) -> None:
        started = datetime.now(UTC)
        self._refresh(self._watermark - OVERLAP)
        self._watermark = started

    async def start(self) -> None:
        await asyncio.to_thread(self.refresh)
        self._task = asyncio.create_task(self._poll(), name=f"{self.name}-poll")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                await asyncio.to_thread(self.refresh)
            except SQLAlchemyError as exc:
                log.warning("%s refresh failed (%s); serving what is cached", self.name, exc)

    async def aclose(self) -> None:
        await stop_task(self._task)
        self._task = None
