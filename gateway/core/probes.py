"""Whether a dependency answers, for readiness: bounded, cached, one check at a time.

At most one check runs at a time and its answer is reused for CACHE_S, so polling /readyz
hard cannot pile up connections or threads on a struggling dependency. A check that has not
answered within `timeout` makes the dependency "not answering" at once; the check itself
ends by its client's own timeouts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

CACHE_S = 1.0

Check = Callable[[], Coroutine[Any, Any, None]]


class Refused(Exception):
    """Raised by a check whose dependency answers but will not serve the gateway (wrong
    credentials, missing permissions): reported in its own words, not as "unreachable"."""


def first_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


class Probe:
    def __init__(
        self, check: Check, timeout: float, describe: Callable[[BaseException], str] = first_line
    ) -> None:
        self.check = check  # raises when the dependency does not answer as it should
        self.timeout = timeout
        self.describe = describe
        self._check: asyncio.Task[None] | None = None
        self._started = 0.0
        self._answer: tuple[float, str | None] | None = None  # (when, problem)

    async def problem(self) -> str | None:
        """None when the dependency answers; else what is wrong, in words."""
        now = time.monotonic()
        if self._answer is not None and now - self._answer[0] < CACHE_S:
            return self._answer[1]
        if self._check is None or self._check.done():
            self._started = now
            self._check = asyncio.create_task(self.check())
        remaining = self._started + self.timeout - now
        try:
            await asyncio.wait_for(asyncio.shield(self._check), max(0.0, remaining))
        except TimeoutError:
            problem: str | None = f"did not answer within {self.timeout:g} s"
        except Refused as exc:
            problem = str(exc)
        except Exception as exc:  # whatever the client raised: unreachable, refused, ...
            problem = f"unreachable ({self.describe(exc)})"
        else:
            problem = None
        self._answer = (time.monotonic(), problem)
        return problem

    async def aclose(self) -> None:
        if self._check is not None and not self._check.done():
            # A thread ends by its client's timeouts; only stop waiting for it here.
            self._check.cancel()
