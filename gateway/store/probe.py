"""Whether the database answers, for readiness: `SELECT 1` off the event loop, through the
bounded, cached probe of gateway/core/probes.py (the thread itself ends by the engine's own
timeouts)."""

from __future__ import annotations

import asyncio

from sqlalchemy import Engine, text

from gateway.core.probes import Probe
from gateway.store.errors import cause


class DatabaseProbe(Probe):
    def __init__(self, engine: Engine, timeout: float = 2.0) -> None:
        super().__init__(self._select_one, timeout, describe=cause)
        self.engine = engine

    async def _select_one(self) -> None:
        await asyncio.to_thread(self._select_one_now)

    def _select_one_now(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
