"""Budgets and rate limits in Redis with one round trip to admit a call and fewer to settle.

Admission runs the budget check and the rate-limit check in one Lua script: both counted or
neither, atomically across replicas, so a call refused by its budget costs its key no request
and nothing needs undoing. Settles change nothing anyone waits for (holds keep the budget
safe until they land), so they leave the request path: they queue, and one script call
applies every settle queued while the previous one was in flight. At one client that is one
round trip after the response; under load, one per batch.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from gateway.metering.budgets import (
    BUDGETS_LUA,
    Budget,
    BudgetHold,
    PreparedReserve,
    RedisBudgetLedger,
)
from gateway.metering.limits import (
    LIMITS_LUA,
    Limit,
    PreparedAcquire,
    RateState,
    RedisGuard,
    RedisRateLimiter,
    Reservation,
)

log = logging.getLogger("gateway.metering")

# Settles per script call: keeps one call's arguments (and Redis's time in it) small.
MAX_BATCH = 256

# ARGV: budget count, scope count, the budgets' check arguments, then the limits'. KEYS: the
# budgets' keys, then the limits'. Returns {1, r1, t1, ...} after reserving and counting, or
# {0, 1, i, spent, reserved} (budget i refused) or {0, 2, i, r, t} (scope i refused).
_ADMIT = (
    BUDGETS_LUA
    + LIMITS_LUA
    + """
local budgets, scopes = tonumber(ARGV[1]), tonumber(ARGV[2])
local limit_keys, limit_args = 1 + 2 * budgets, 7 + 2 * budgets
local refused = budgets_check(1, budgets, 3)
if refused then return {0, 1, refused[2], refused[3], refused[4]} end
refused = limits_check(limit_keys, scopes, limit_args)
if refused then return {0, 2, refused[2], refused[3], refused[4]} end
budgets_commit(1, budgets, 3)
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


@dataclass(slots=True)
class Admitted:
    hold: BudgetHold | None
    reservation: Reservation | None
    state: RateState | None


class RedisMeterStore:
    """The combined admission and the settle queue over a ledger's and a limiter's keys."""

    def __init__(
        self,
        redis: Redis,
        ledger: RedisBudgetLedger,
        limiter: RedisRateLimiter,
        *,
        fail_open: bool = False,
    ) -> None:
        self.ledger = ledger
        self.limiter = limiter
        self._guard = RedisGuard("budget and rate limit store", fail_open)
        self._admit = redis.register_script(_ADMIT)
        self._settle_many = redis.register_script(_SETTLE_MANY)
        self._queue: list[tuple[list[str], list[str | int]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def admit(
        self, budgets: Sequence[Budget], cost_usd: float, limits: Sequence[Limit], tokens: int
    ) -> Admitted:
        reserve = self.ledger.prepare_reserve(budgets, cost_usd)
        acquire = self.limiter.prepare_acquire(limits, tokens)
        if reserve is None or acquire is None:
            # One store has nothing to do: its own script is the one round trip.
            hold = await self.ledger.reserve(budgets, cost_usd) if reserve else None
            if acquire is None:
                return Admitted(hold, None, None)
            reservation, state = await self.limiter.acquire(limits, tokens)
            return Admitted(None, reservation, state)
        return await self._admit_both(reserve, acquire)

    async def _admit_both(self, reserve: PreparedReserve, acquire: PreparedAcquire) -> Admitted:
        budget_count = len(reserve.entries)
        args = [budget_count, len(acquire.limits), *reserve.args, *acquire.args]
        keys = reserve.keys + acquire.keys
        reply = await self._guard.run(lambda: self._admit(keys=keys, args=args))
        if reply is None:
            return Admitted(None, None, None)
        values = [int(value) for value in reply]
        if values[0] == 0:
            _, store, index, first, second = values
            if store == 1:
                raise reserve.refusal(index, first, second)
            raise acquire.refusal(index, first, second)
        return Admitted(reserve.hold, acquire.reservation(), acquire.state(values[1:]))

    def settle(
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
                send = functools.partial(self._settle_many, keys=keys, args=args)
                await self._guard.run(send, refuse=False)
        finally:
            self._flushing = None

    async def drain(self) -> None:
        """Waits until every queued settle has been sent (at shutdown, and in tests)."""
        while self._flushing is not None:
            await asyncio.shield(self._flushing)
