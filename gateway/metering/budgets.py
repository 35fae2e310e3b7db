"""USD budgets per key and team: reserve the estimated cost before a call, settle after it.

Money is counted in integer nano-USD so that 25 reservations of $0.01 fit a $0.25 budget
exactly. A reservation is a hold with an expiry: if a replica dies between reserve and settle,
its hold is released after `hold_ttl_s` instead of shrinking the budget for good.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from redis.asyncio import Redis

from gateway.core.durations import UNIT_S, parse_duration
from gateway.core.errors import GatewayError
from gateway.metering.limits import Clock, RedisGuard

NANO = 1_000_000_000
# Longer than any call should take (streams included); only unsettled holds ever reach it.
HOLD_TTL_S = 900.0
# A finished period's counters stay a day for inspection, then Redis drops them.
KEEP_AFTER_END_S = 86_400


def period_bounds(
    duration: str | None, now: datetime
) -> tuple[str, datetime | None, datetime | None]:
    parsed = parse_duration(duration)
    if parsed is None:
        return "total", None, None
    count, unit = parsed
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if unit == "mo":
        months = (now.year - 1970) * 12 + now.month - 1
        first = months - months % count
        start, end = _month_start(first), _month_start(first + count)
    else:
        size = count * UNIT_S[unit]
        start = datetime.fromtimestamp(now.timestamp() // size * size, UTC)
        end = start + timedelta(seconds=size)
    return f"{duration}@{_iso(start)}", start, end


def _month_start(months_since_epoch: int) -> datetime:
    year, month = divmod(months_since_epoch, 12)
    return datetime(1970 + year, month + 1, 1, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Budget:
    scope: str
    max_usd: float
    duration: str | None = None


@dataclass(frozen=True, slots=True)
class Period:
    """One budget's counter for one period: where a hold was made and must be settled."""

    scope: str
    duration: str | None
    id: str
    end: datetime | None


@dataclass(slots=True)
class BudgetHold:
    periods: tuple[Period, ...]
    amount_nano: int
    id: str
    settled: bool = False


# Amounts in messages: to the nano-dollar budgets are counted in, at most this many digits.
SIGNIFICANT_DIGITS = 6


def format_usd(usd: float) -> str:
    """ "$0.000012", not "$0.0000": enough decimals for SIGNIFICANT_DIGITS digits (at least
    cents, at most nano-dollars), trailing zeros past the cents dropped."""
    nano = round(usd * NANO)
    if nano == 0:
        return "$0"
    value = nano / NANO
    decimals = min(9, max(2, SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(value)))))
    whole, _, fraction = f"{value:.{decimals}f}".partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"


class BudgetExceeded(GatewayError):
    """No room in a budget: which one, its figures in nano-USD, and what to do. A retry cannot
    help before the period resets, so the OpenAI SDK is told not to try (x-should-retry)."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"

    def __init__(
        self,
        budget: Budget,
        period: Period,
        spent_nano: int,
        reserved_nano: int,
        amount_nano: int,
        *,
        needs: str | None = None,
        advice: str = "",
    ) -> None:
        self.budget, self.period = budget, period
        self.spent_nano, self.reserved_nano = spent_nano, reserved_nano
        self.amount_nano = amount_nano
        limit = to_nano(budget.max_usd)
        # What another call could still reserve (as the ledger checks it, exactly).
        self.room_nano = max(0, limit - spent_nano - reserved_nano)
        text = f"budget exhausted for {budget.scope}: {_usd(spent_nano)} of {_usd(limit)} spent"
        if reserved_nano:
            text += f", {_usd(reserved_nano)} held by calls in flight"
        needs = needs or f"needs up to {_usd(amount_nano)}"
        text += f"; this call {needs} and {_usd(self.room_nano)} is left."
        if advice:
            text += f" {advice}"
        if period.end is None:
            text += " It is a total budget that never resets: ask the gateway's admin to raise it."
        else:
            text += (
                f" The {budget.duration} budget resets at {_iso(period.end)}: retry then, or "
                f"ask the gateway's admin to raise it."
            )
        super().__init__(text, headers={"x-should-retry": "false"})

    def explained(self, amount_nano: int, needs: str, advice: str = "") -> BudgetExceeded:
        """The same refusal, saying what the call needs in the caller's terms (tokens)."""
        return BudgetExceeded(
            self.budget,
            self.period,
            self.spent_nano,
            self.reserved_nano,
            amount_nano,
            needs=needs,
            advice=advice,
        )


def _usd(nano: int) -> str:
    return format_usd(nano / NANO)


class BudgetLedger(Protocol):
    async def reserve(self, budgets: Sequence[Budget], amount_usd: float) -> BudgetHold: ...

    async def settle(self, hold: BudgetHold, actual_usd: float) -> None: ...

    async def spent(self, budget: Budget) -> float: ...

    async def seed(self, budget: Budget, spent_usd: float) -> None: ...

    async def aclose(self) -> None: ...


def to_nano(usd: float) -> int:
    return max(0, round(usd * NANO))


@functools.lru_cache(maxsize=1024)
def _bounds_at(duration: str | None, second: int) -> tuple[str, datetime | None]:
    # Periods are whole seconds at least, so one computation serves a whole second of calls.
    period_id, _, end = period_bounds(duration, datetime.fromtimestamp(second, UTC))
    return period_id, end


def current_periods(budgets: Sequence[Budget], now: float) -> list[tuple[Budget, Period]]:
    """Each budget's current period; one entry per counter, keeping the strictest maximum."""
    second = int(now)
    found: dict[tuple[str, str], tuple[Budget, Period]] = {}
    for budget in budgets:
        period_id, end = _bounds_at(budget.duration, second)
        seen = found.get((budget.scope, period_id))
        if seen is None or budget.max_usd < seen[0].max_usd:
            period = Period(budget.scope, budget.duration, period_id, end)
            found[budget.scope, period_id] = (budget, period)
    return list(found.values())


def _exceeded(
    budget: Budget, period: Period, spent: int, reserved: int, amount: int
) -> BudgetExceeded:
    return BudgetExceeded(budget, period, spent, reserved, amount)


@dataclass(slots=True)
class PreparedReserve:
    """A reservation's keys and arguments, so another script can run it in the same trip."""

    entries: list[tuple[Budget, Period]]
    hold: BudgetHold
    keys: list[str]
    args: list[str | int | float]

    def refusal(self, index: int, spent: int, reserved: int) -> BudgetExceeded:
        budget, period = self.entries[index - 1]
        return _exceeded(budget, period, spent, reserved, self.hold.amount_nano)


def _no_hold() -> BudgetHold:
    return BudgetHold((), 0, "", settled=True)


@dataclass(slots=True)
class _Account:
    period: str
    # None until spend is recorded, so that seed() only fills a fresh period (like HSETNX).
    spent: int | None = None
    reserved: int = 0
    # Insertion order is expiry order (one TTL for all), so stale holds sit at the front.
    holds: dict[str, tuple[int, float]] = field(default_factory=dict)

    def release_stale(self, now: float) -> None:
        while self.holds:
            hold_id, (amount, until) = next(iter(self.holds.items()))
            if until > now:
                return
            del self.holds[hold_id]
            self.reserved -= amount


class MemoryBudgetLedger:
    """One process's ledger; asyncio runs each reserve without a yield, hence atomically."""

    def __init__(self, clock: Clock = time.time, *, hold_ttl_s: float = HOLD_TTL_S) -> None:
        self._clock = clock
        self._hold_ttl_s = hold_ttl_s
        # Only each budget's current period is kept: past ones are never read again.
        self._accounts: dict[tuple[str, str | None], _Account] = {}

    async def reserve(self, budgets: Sequence[Budget], amount_usd: float) -> BudgetHold:
        now = self._clock()
        entries = current_periods(budgets, now)
        if not entries:
            return _no_hold()
        amount = to_nano(amount_usd)
        accounts = [self._account(period, now) for _, period in entries]
        for (budget, period), account in zip(entries, accounts, strict=True):
            spent = account.spent or 0
            if spent + account.reserved + amount > to_nano(budget.max_usd):
                raise _exceeded(budget, period, spent, account.reserved, amount)
        hold = BudgetHold(tuple(period for _, period in entries), amount, os.urandom(8).hex())
        until = now + self._hold_ttl_s
        for account in accounts:
            account.reserved += amount
            account.holds[hold.id] = (amount, until)
        return hold

    async def settle(self, hold: BudgetHold, actual_usd: float) -> None:
        if hold.settled:
            return
        hold.settled = True
        for period in hold.periods:
            account = self._accounts.get((period.scope, period.duration))
            if account is None or account.period != period.id:
                continue
            if account.holds.pop(hold.id, None) is not None:
                account.reserved -= hold.amount_nano
            account.spent = (account.spent or 0) + to_nano(actual_usd)

    async def spent(self, budget: Budget) -> float:
        [(_, period)] = current_periods([budget], self._clock())
        account = self._accounts.get((period.scope, period.duration))
        if account is None or account.period != period.id:
            return 0.0
        return (account.spent or 0) / NANO

    async def seed(self, budget: Budget, spent_usd: float) -> None:
        now = self._clock()
        [(_, period)] = current_periods([budget], now)
        account = self._account(period, now)
        if account.spent is None:
            account.spent = to_nano(spent_usd)

    async def aclose(self) -> None:
        self._accounts.clear()

    def _account(self, period: Period, now: float) -> _Account:
        key = (period.scope, period.duration)
        account = self._accounts.get(key)
        if account is None or account.period != period.id:
            account = self._accounts[key] = _Account(period.id)
        account.release_stale(now)
        return account


# Lua functions shared by the scripts here and the combined admission in redis_meter.py.
# Keys from index k: per budget, its period's hash (spent, reserved) and its holds (a sorted
# set scored by expiry, members "<amount>:<hold id>").
# A check's arguments from index a: amount, now, member, hold expiry, then per budget its
# maximum and the keys' expiry (0 = never). It releases stale holds, then returns
# {0, i, spent, reserved} for the first budget i without room; a commit reserves in all.
# A settle's arguments from index a: actual spend, member, held amount, then per budget the
# expiry. A hold that already expired was released by a check; its spend still counts.
BUDGETS_LUA = """
local function budget_held(account, holds, now)
  local stale = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  if #stale > 0 then
    local freed = 0
    for _, member in ipairs(stale) do
      freed = freed + tonumber(string.match(member, '^%d+'))
    end
    redis.call('HINCRBY', account, 'reserved', 0 - freed)
    redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)
  end
  local held = redis.call('HMGET', account, 'spent', 'reserved')
  return tonumber(held[1]) or 0, tonumber(held[2]) or 0
end

local function budgets_check(k, n, a)
  local amount, now = tonumber(ARGV[a]), ARGV[a + 1]
  for i = 1, n do
    local spent, reserved = budget_held(KEYS[k + 2 * i - 2], KEYS[k + 2 * i - 1], now)
    if spent + reserved + amount > tonumber(ARGV[a + 2 + 2 * i]) then
      return {0, i, spent, reserved}
    end
  end
  return nil
end

local function budget_hold(account, holds, amount, member, until_score, expire_at)
  redis.call('HINCRBY', account, 'reserved', amount)
  redis.call('ZADD', holds, until_score, member)
  if tonumber(expire_at) > 0 then
    redis.call('EXPIREAT', account, expire_at)
    redis.call('EXPIREAT', holds, expire_at)
  end
end

local function budgets_commit(k, n, a)
  for i = 1, n do
    budget_hold(KEYS[k + 2 * i - 2], KEYS[k + 2 * i - 1], ARGV[a], ARGV[a + 2], ARGV[a + 3],
      ARGV[a + 3 + 2 * i])
  end
end

local function budgets_settle(k, n, a)
  for i = 1, n do
    local account, holds = KEYS[k + 2 * i - 2], KEYS[k + 2 * i - 1]
    if redis.call('ZREM', holds, ARGV[a + 1]) == 1 then
      redis.call('HINCRBY', account, 'reserved', 0 - tonumber(ARGV[a + 2]))
    end
    redis.call('HINCRBY', account, 'spent', ARGV[a])
    local expire_at = tonumber(ARGV[a + 2 + i])
    if expire_at > 0 then
      redis.call('EXPIREAT', account, expire_at)
    end
  end
end
"""

# Returns {1}, or a check's refusal having reserved nothing.
_RESERVE = (
    BUDGETS_LUA
    + """
local refused = budgets_check(1, #KEYS / 2, 1)
if refused then return refused end
budgets_commit(1, #KEYS / 2, 1)
return {1}
"""
)

_SETTLE = (
    BUDGETS_LUA
    + """
budgets_settle(1, #KEYS / 2, 1)
return 0
"""
)

_SEED = """
redis.call('HSETNX', KEYS[1], 'spent', ARGV[1])
if tonumber(ARGV[2]) > 0 then
  redis.call('EXPIREAT', KEYS[1], ARGV[2])
end
return 0
"""


class RedisBudgetLedger:
    """A ledger shared by every replica; the caller owns (and closes) the Redis client."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        clock: Clock = time.time,
        *,
        fail_open: bool = False,
        hold_ttl_s: float = HOLD_TTL_S,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._clock = clock
        self._hold_ttl_s = hold_ttl_s
        self._guard = RedisGuard("budget store", fail_open)
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)
        self._seed = redis.register_script(_SEED)

    def prepare_reserve(
        self, budgets: Sequence[Budget], amount_usd: float
    ) -> PreparedReserve | None:
        now = self._clock()
        entries = current_periods(budgets, now)
        if not entries:
            return None
        amount = to_nano(amount_usd)
        hold = BudgetHold(tuple(period for _, period in entries), amount, os.urandom(8).hex())
        args: list[str | int | float] = [amount, now, _member(hold), now + self._hold_ttl_s]
        for budget, period in entries:
            args += [to_nano(budget.max_usd), _expire_at(period)]
        return PreparedReserve(entries, hold, self._keys(hold.periods), args)

    async def reserve(self, budgets: Sequence[Budget], amount_usd: float) -> BudgetHold:
        prepared = self.prepare_reserve(budgets, amount_usd)
        if prepared is None:
            return _no_hold()
        reply = await self._guard.run(lambda: self._reserve(keys=prepared.keys, args=prepared.args))
        if reply is None:
            return _no_hold()
        values = [int(value) for value in reply]
        if values[0] == 0:
            raise prepared.refusal(*values[1:])
        return prepared.hold

    def settle_call(
        self, hold: BudgetHold, actual_usd: float
    ) -> tuple[list[str], list[str | int]] | None:
        """The keys and arguments of a settle, or None when there is nothing to do."""
        if hold.settled:
            return None
        hold.settled = True
        return self.settle_nano(hold, to_nano(actual_usd))

    def settle_nano(self, hold: BudgetHold, actual_nano: int) -> tuple[list[str], list[str | int]]:
        """A settle's keys and arguments for budgets_settle, the spend in nano-USD."""
        args: list[str | int] = [actual_nano, _member(hold), hold.amount_nano]
        args += [_expire_at(period) for period in hold.periods]
        return self._keys(hold.periods), args

    async def settle(self, hold: BudgetHold, actual_usd: float) -> None:
        call = self.settle_call(hold, actual_usd)
        if call is not None:
            keys, args = call
            await self._guard.run(lambda: self._settle(keys=keys, args=args), refuse=False)

    async def spent(self, budget: Budget) -> float:
        [(_, period)] = current_periods([budget], self._clock())
        key = self._account_key(period)
        value = await self._guard.run(lambda: self._redis.hget(key, "spent"))
        return 0.0 if value is None else int(value) / NANO

    async def seed(self, budget: Budget, spent_usd: float) -> None:
        [(_, period)] = current_periods([budget], self._clock())
        args = [to_nano(spent_usd), _expire_at(period)]
        keys = [self._account_key(period)]
        await self._guard.run(lambda: self._seed(keys=keys, args=args))

    async def aclose(self) -> None:
        pass

    def _account_key(self, period: Period) -> str:
        return f"{self._prefix}budget:{period.scope}:{period.id}"

    def _keys(self, periods: Sequence[Period]) -> list[str]:
        keys: list[str] = []
        for period in periods:
            account = self._account_key(period)
            keys += [account, f"{account}:holds"]
        return keys


def _member(hold: BudgetHold) -> str:
    return f"{hold.amount_nano}:{hold.id}"


def _expire_at(period: Period) -> int:
    return 0 if period.end is None else int(period.end.timestamp()) + KEEP_AFTER_END_S
