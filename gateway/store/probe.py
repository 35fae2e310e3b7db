"""Whether the database answers, for readiness: checked off the event loop, bounded, cached.

At most one check runs at a time and its answer is reused for CACHE_S, so polling /readyz
hard cannot pile up connections or threads on a struggling database. A check that has not
answered within `timeout` makes the database "not answering" at once; the check itself ends
by the engine's own timeouts.
"""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import Engine, text

from gateway.store.errors import cause

CACHE_S = 1.0


class DatabaseProbe:
    def __init__(self, engine: Engine, timeout: float = 2.0) -> None:
        self.engine = engine
        self.timeout = timeout
        self._check: asyncio.Task[None] | None = None
        self._started = 0.0
        self._answer: tuple[float, str | None] | None = None  # (when, problem)

    async def problem(self) -> str | None:
        """None when the database answers; else what is wrong, in words."""
        now = time.monotonic()
        if self._answer is not None and now - self._answer[0] < CACHE_S:
            return self._answer[1]
        if self._check is None or self._check.done():
            self._started = now
            self._check = asyncio.create_task(asyncio.to_thread(self._select_one))
        remaining = self._started + self.timeout - now
        try:
            await asyncio.wait_for(asyncio.shield(self._check), max(0.0, remaining))
        except TimeoutError:
            problem: str | None = f"did not answer within {self.timeout:g} s"
        except Exception as exc:  # whatever the driver raised: unreachable, refused, ...
            problem = f"unreachable ({cause(exc)})"
        else:
            problem = None
        self._answer = (time.monotonic(), problem)
        return problem

    def _select_one(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    async def aclose(self) -> None:
        if self._check is not None and not self._check.done():
            # The thread ends by the engine's timeouts; only stop waiting for it here.
            self._check.cancel()
