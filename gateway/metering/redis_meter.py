"""Budgets and rate limits in Redis: at most one round trip to admit a call, none to settle it.

Admission runs the budget check and the rate-limit check in one Lua script: both counted or
neither, atomically across replicas, so a call refused by its budget costs its key no request
and nothing needs undoing. The same script lends the replica room for the key's next calls
(a lease, see leases.py), which are then admitted in memory. Settles change nothing anyone
waits for (holds keep the budget safe until they land): a call's settle returns its unused
estimate to its lease, and a finished lease's record joins a queue that one script call
empties while the previous one is in flight. Everything goes through the lean pipelined
client in resp.py.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError

from gateway.metering.budgets import (
    BUDGETS_LUA,
    NANO,
    Budget,
    BudgetExceeded,
    BudgetHold,
    RedisBudgetLedger,
    current_periods,
    to_nano,
)
from gateway.metering.leases import (
    FIRST_CALLS,
    LEASE_S,
    SHARE,
    Lease,
    LeaseHold,
    LeaseReservation,
    Signature,
)
from gateway.metering.limits import (
    LIMITS_LUA,
    Clock,
    Limit,
    RedisGuard,
    RedisRateLimiter,
    Reservation,
    effective,
)
from gateway.metering.stores import Admitted
from gateway.transport.redis_urls import ScriptRunner
from gateway.transport.resp import LuaScript

log = logging.getLogger("gateway.metering")

# Settles per script call: keeps one call's arguments (and Redis's time in it) small.
MAX_BATCH = 256

# ARGV: budget count, scope count, where the limits' arguments start, the calls wanted, the
# budgets' check arguments (from 5), then the limits'. KEYS: the budgets' keys, then the
# limits'. Admits one call and lends room for up to wanted - 1 more (see leases.py): n calls'
# money held, requests and tokens counted in the current second of every scope's window.
# Returns {1, n, r1, t1, oldest1, ...}, or {0, 1, i, spent, reserved} (budget i refused) or
# {0, 2, i, r, t, frees_at} (scope i refused) having changed nothing.
_LEASE = (
    BUDGETS_LUA
    + LIMITS_LUA
    + """
local budgets, scopes, la, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4])
local lk = 1 + 2 * budgets
local fit = math.huge
local amount, now = tonumber(ARGV[5]), ARGV[6]
for i = 1, budgets do
  local spent, reserved = budget_held(KEYS[2 * i - 1], KEYS[2 * i], now)
  local room = tonumber(ARGV[7 + 2 * i]) - spent - reserved
  local calls = 0
  if amount > 0 then calls = math.floor(room / amount) elseif room >= 0 then calls = math.huge end
  if calls < 1 then return {0, 1, i, spent, reserved} end
  fit = math.min(fit, calls)
end
local tokens = tonumber(ARGV[la])
local seen = {}
for i = 1, scopes do
  local refused = limits_check_one(lk, i, la, seen)
  if refused then return {0, 2, unpack(refused, 2)} end
  local rpm, tpm = tonumber(ARGV[la + 1 + 2 * i]), tonumber(ARGV[la + 2 + 2 * i])
  local w = seen[i]
  local r, t = w[1] + w[5], w[2] + w[6]
  if rpm >= 0 then fit = math.min(fit, rpm - r) end
  if tpm >= 0 and tokens > 0 then fit = math.min(fit, math.floor((tpm - t) / tokens)) end
end
local n = math.max(1, math.min(want, math.floor(fit / SHARE)))
if budgets > 0 then
  local total = string.format('%d', n * amount)
  local member = total .. string.match(ARGV[7], ':.*$')
  for i = 1, budgets do
    budget_hold(KEYS[2 * i - 1], KEYS[2 * i], total, member, ARGV[8], ARGV[8 + 2 * i])
  end
end
if scopes == 0 then return {1, n} end
return limits_commit(lk, scopes, la, n, seen, {1, n})
""".replace("SHARE", str(SHARE))
)

# ARGV: records, each "b", budget count, the settle's arguments (3 + count), or "r", scope
# count, the second counted in, requests and tokens to add (negative: given back). KEYS: each
# record's keys in the same order (two per budget, two per scope).
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
    limits_correct(k, n, a + 2)
    k, a = k + 2 * n, a + 5
  end
end
return 0
"""
)


class RedisMeterStore:
    """Admission by lease (one script call admits a call and lends room for the next ones)
    and the settle queue, over a ledger's and a limiter's keys. lease_calls=1 admits every
    call in Redis."""

    def __init__(
        self,
        client: ScriptRunner,
        ledger: RedisBudgetLedger,
        limiter: RedisRateLimiter,
        *,
        fail_open: bool = False,
        lease_calls: int = 1,
        lease_s: float = LEASE_S,
        clock: Clock = time.time,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.limiter = limiter
        self.lease_calls = lease_calls
        self.lease_s = lease_s
        self._clock = clock
        self._guard = RedisGuard("budget and rate limit store", fail_open)
        self._lease = LuaScript.of(_LEASE)
        self._settle_many = LuaScript.of(_SETTLE_MANY)
        self._queue: list[tuple[list[str], list[str | int]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._leases: dict[Signature, Lease] = {}
        self._unfinished: set[Lease] = set()
        self._granting: dict[Signature, asyncio.Future[None]] = {}
        self._sizes: dict[Signature, int] = {}

    async def admit(
        self, budgets: Sequence[Budget], cost_usd: float, limits: Sequence[Limit], tokens: int
    ) -> Admitted:
        limits = effective(limits)
        if not budgets and not limits:
            return Admitted(None, None, None)
        signature = (tuple(budgets), tuple(limits))
        cost = to_nano(cost_usd) if budgets else 0
        while True:
            lease = self._leases.get(signature)
            if lease is not None:
                now = self._clock()
                if lease.fits(now, cost, tokens):
                    return self._take(lease, cost, tokens, now)
                self._retire(lease)
            granting = self._granting.get(signature)
            if granting is None:
                break
            # Another call is fetching this key's next lease: one trip may serve both.
            await granting
        done = self._granting[signature] = asyncio.get_running_loop().create_future()
        try:
            try:
                return await self._grant(signature, budgets, cost_usd, limits, tokens)
            except BudgetExceeded:
                if self._flushing is None:
                    raise
            # Redis may still count as held what this replica's finished leases gave back
            # (queued, being sent): once that has landed the refusal may not stand, and if it
            # does, its figures are true.
            while self._flushing is not None:
                await asyncio.shield(self._flushing)
            return await self._grant(signature, budgets, cost_usd, limits, tokens)
        finally:
            del self._granting[signature]
            done.set_result(None)

    async def _grant(
        self,
        signature: Signature,
        budgets: Sequence[Budget],
        cost_usd: float,
        limits: list[Limit],
        tokens: int,
    ) -> Admitted:
        reserve = self.ledger.prepare_reserve(budgets, cost_usd) if budgets else None
        acquire = self.limiter.prepare_acquire(limits, tokens) if limits else None
        wanted = min(self._sizes.get(signature, FIRST_CALLS), self.lease_calls)
        keys: list[str] = []
        args: list[Any] = [0, 0, 5, wanted]
        if reserve is not None:
            keys += reserve.keys
            args += reserve.args
            args[0], args[2] = len(reserve.entries), 5 + len(reserve.args)
        if acquire is not None:
            keys += acquire.keys
            args += acquire.args
            args[1] = len(acquire.limits)
        reply = await self._guard.run(lambda: self.client.run(self._lease, keys, args))
        if reply is None:
            return Admitted(None, None, None)
        if reply[0] == 0:
            _, store, index, first, second, *frees = reply
            if store == 1 and reserve is not None:
                raise reserve.refusal(index, first, second)
            assert acquire is not None
            raise acquire.refusal(index, first, second, *frees)
        calls = reply[1]
        cost = reserve.hold.amount_nano if reserve is not None else 0
        hold = reservation = None
        if reserve is not None:
            hold = BudgetHold(reserve.hold.periods, calls * cost, reserve.hold.id)
        counts: list[tuple[int, int, int]] = []
        if acquire is not None:
            held = acquire.reservation()
            reservation = Reservation(held.scopes, held.second, calls * tokens)
            counts = acquire.counts(reply[2:])
        lease = Lease.granted(signature, calls, cost, tokens, hold, reservation, counts)
        previous = self._leases.get(signature)
        if previous is not None:
            self._retire(previous)
        self._leases[signature] = lease
        self._unfinished.add(lease)
        asyncio.get_running_loop().call_later(self.lease_s, self._retire, lease)
        return self._take(lease, cost, tokens, self._clock())

    def _take(self, lease: Lease, cost: int, tokens: int, now: float) -> Admitted:
        ticket = lease.take(cost, tokens)
        hold = reservation = None
        if lease.hold is not None:
            hold = LeaseHold(lease.hold.periods, cost, lease.hold.id, ticket=ticket)
        if lease.reservation is not None:
            second = lease.reservation.second
            reservation = LeaseReservation(lease.reservation.scopes, second, tokens, ticket=ticket)
        return Admitted(hold, reservation, lease.state(now))

    def _retire(self, lease: Lease) -> None:
        """No more calls from this lease; it is booked once its calls in flight settle."""
        if lease.retired:
            return
        lease.retired = True
        signature = lease.signature
        if self._leases.get(signature) is lease:
            del self._leases[signature]
        if len(self._sizes) > 100_000:  # keys come and go; forget the sizes of old ones
            self._sizes.clear()
        current = self._sizes.get(signature, FIRST_CALLS)
        self._sizes[signature] = lease.next_calls(current, self.lease_calls)
        if lease.inflight == 0:
            self._finish(lease)

    def _finish(self, lease: Lease) -> None:
        """Books the lease's spend and gives back what it did not use, in one queued record."""
        self._unfinished.discard(lease)
        keys: list[str] = []
        args: list[str | int] = []
        if lease.hold is not None:
            hold_keys, hold_args = self.ledger.settle_nano(lease.hold, lease.spent_nano)
            keys += hold_keys
            args += ["b", len(lease.hold.periods), *hold_args]
        reservation = lease.reservation
        if reservation is not None and (lease.calls_left or lease.tokens_left):
            # Back to the second the lease's room was counted in, as Redis keeps it.
            keys += self.limiter.keys(reservation)
            scopes, second = len(reservation.scopes), reservation.second
            args += ["r", scopes, second, -lease.calls_left, -lease.tokens_left]
        if args:
            self._enqueue(keys, args)

    async def settle(
        self,
        hold: BudgetHold | None,
        cost_usd: float,
        reservations: Sequence[Reservation],
        tokens: int,
    ) -> None:
        """Returns the call's unused estimate to its lease; a finished lease's record queues."""
        tickets = [hold.ticket] if isinstance(hold, LeaseHold) and hold.ticket else []
        for reservation in reservations:
            if isinstance(reservation, LeaseReservation) and reservation.ticket is not None:
                tickets.append(reservation.ticket)
        for ticket in tickets:
            if ticket.done:  # a call's hold and reservation share one ticket
                continue
            ticket.done = True
            lease = ticket.lease
            lease.release(ticket, to_nano(cost_usd) if lease.hold is not None else 0, tokens)
            if lease.retired and lease.inflight == 0:
                self._finish(lease)

    async def spent(self, budget: Budget) -> float:
        """Redis's figure plus what this replica's leases have spent but not yet booked."""
        [(_, period)] = current_periods([budget], self._clock())
        local = sum(
            lease.spent_nano
            for lease in self._unfinished
            if lease.hold is not None and period in lease.hold.periods
        )
        return await self.ledger.spent(budget) + local / NANO

    def _enqueue(self, keys: list[str], args: list[str | int]) -> None:
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
        """Ends every lease and waits until every queued record has been sent (at shutdown,
        and in tests). Leases with calls in flight are booked when those calls settle."""
        for lease in list(self._leases.values()):
            self._retire(lease)
        while self._flushing is not None:
            await asyncio.shield(self._flushing)

    async def start(self) -> None:
        """Connects before the first call: opened inside a burst of calls, the connection's
        handshake waits behind them and can time out, and a timeout refuses metered calls
        for a second. A Redis that cannot be reached now is logged, not fatal: calls are then
        refused (or let through, fail-open) until it is back, as they are when it goes away."""
        try:
            await self.client.connect()
        except (RedisError, OSError) as exc:
            log.warning("budget and rate limit store (Redis) is not reachable at startup: %s", exc)

    async def aclose(self) -> None:
        await self.drain()
        await self.client.aclose()
