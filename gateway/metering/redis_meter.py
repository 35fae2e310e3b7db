"""Budgets and rate limits in Redis with one round trip to admit a call and fewer to settle.

Admission runs the budget check and the rate-limit check in one Lua script: both counted or
neither, atomically across replicas, so a call refused by its budget costs its key no request
and nothing needs undoing. Settles change nothing anyone waits for (holds keep the budget
safe until they land), so they leave the request path: they queue, and one script call
applies every settle queued while the previous one was in flight. At one client that is one
round trip after the response; under load, one per batch. Both go through the lean
pipelined client in resp.py.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from typing import Any

from gateway.metering.budgets import BUDGETS_LUA, Budget, BudgetHold, RedisBudgetLedger
from gateway.metering.limits import (
    LIMITS_LUA,
    Limit,
    RedisGuard,
    RedisRateLimiter,
    Reservation,
)
from gateway.metering.resp import LuaScript, ScriptClient
from gateway.metering.stores import Admitted

log = logging.getLogger("gateway.metering")

# Settles per script call: keeps one call's arguments (and Redis's time in it) small.
MAX_BATCH = 256

# ARGV: budget count, scope count, where the limits' arguments start, the budgets' check
# arguments, then the limits'. KEYS: the budgets' keys, then the limits'. Returns
# {1, r1, t1, ...} after reserving and counting, or {0, 1, i, spent, reserved} (budget i
# refused) or {0, 2, i, r, t} (scope i refused). Either count may be zero.
_ADMIT = (
    BUDGETS_LUA
    + LIMITS_LUA
    + """
local budgets, scopes, limit_args = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local limit_keys = 1 + 2 * budgets
local refused = budgets_check(1, budgets, 4)
if refused then return {0, 1, refused[2], refused[3], refused[4]} end
refused = limits_check(limit_keys, scopes, limit_args)
if refused then return {0, 2, refused[2], refused[3], refused[4]} end
budgets_commit(1, budgets, 4)
return limits_commit(limit_keys, scopes, limit_args, {1})
"""
)

# ARGV: records, each "b", budget count, the settle's arguments (3 + count), or "l", scope
# count, token correction. KEYS: each record's keys in the same order.
_SETTLE_MANY = (
    BUDGETS_LUA
    + LIMITS_LUA
    + """
local k, a = 1, 1
while a <= #ARGV do
  local n = tonumber(ARGV[a + 1])
  if ARGV[a] == 'b' then
    budgets_settle(k, n, a + 2)
    k, a = k + 2 * n, a + 5 + n
  else
    limits_settle(k, n, a + 2)
    k, a = k + n, a + 3
  end
end
return 0
"""
)


class RedisMeterStore:
    """The combined admission and the settle queue over a ledger's and a limiter's keys."""

    def __init__(
        self,
        client: ScriptClient,
        ledger: RedisBudgetLedger,
        limiter: RedisRateLimiter,
        *,
        fail_open: bool = False,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.limiter = limiter
        self._guard = RedisGuard("budget and rate limit store", fail_open)
        self._admit = LuaScript.of(_ADMIT)
        self._settle_many = LuaScript.of(_SETTLE_MANY)
        self._queue: list[tuple[list[str], list[str | int]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def admit(
        self, budgets: Sequence[Budget], cost_usd: float, limits: Sequence[Limit], tokens: int
    ) -> Admitted:
        reserve = self.ledger.prepare_reserve(budgets, cost_usd) if budgets else None
        acquire = self.limiter.prepare_acquire(limits, tokens) if limits else None
        if reserve is None and acquire is None:
            return Admitted(None, None, None)
        keys: list[str] = []
        args: list[Any] = [0, 0, 4]
        if reserve is not None:
            keys += reserve.keys
            args += reserve.args
            args[0], args[2] = len(reserve.entries), 4 + len(reserve.args)
        if acquire is not None:
            keys += acquire.keys
            args += acquire.args
            args[1] = len(acquire.limits)
        reply = await self._guard.run(lambda: self.client.run(self._admit, keys, args))
        if reply is None:
            return Admitted(None, None, None)
        if reply[0] == 0:
            _, store, index, first, second = reply
            if store == 1 and reserve is not None:
                raise reserve.refusal(index, first, second)
            assert acquire is not None
            raise acquire.refusal(index, first, second)
        return Admitted(
            reserve.hold if reserve is not None else None,
            acquire.reservation() if acquire is not None else None,
            acquire.state(reply[1:]) if acquire is not None else None,
        )

    async def settle(
        self,
        hold: BudgetHold | None,
        cost_usd: float,
        reservations: Sequence[Reservation],
        tokens: int,
    ) -> None:
        """Queues the settles; they reach Redis with the next flush."""
        keys: list[str] = []
        args: list[str | int] = []
        if hold is not None:
            call = self.ledger.settle_call(hold, cost_usd)
            if call is not None:
                keys += call[0]
                args += ["b", len(hold.periods), *call[1]]
        for reservation in reservations:
            correction = self.limiter.settle_call(reservation, tokens)
            if correction is not None:
                keys += correction[0]
                args += ["l", len(reservation.scopes), correction[1]]
        if not args:
            return
        self._queue.append((keys, args))
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                keys = [key for record in batch for key in record[0]]
                args = [arg for record in batch for arg in record[1]]
                send = functools.partial(self.client.run, self._settle_many, keys, args)
                await self._guard.run(send, refuse=False)
        finally:
            self._flushing = None

    async def drain(self) -> None:
        """Waits until every queued settle has been sent (at shutdown, and in tests)."""
        while self._flushing is not None:
            await asyncio.shield(self._flushing)

    async def aclose(self) -> None:
        await self.drain()
        await self.client.aclose()
