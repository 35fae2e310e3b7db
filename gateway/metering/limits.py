"""Requests- and tokens-per-minute limits over several scopes at once, in memory or in Redis.

Windows are fixed minutes aligned to the clock. An acquire checks every scope and counts in
all of them or in none, so a request refused by its team's limit costs its key nothing; in
Redis that check-and-count is one Lua script, which keeps replicas exact (no per-replica
counters, no read-then-write race).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.errors import GatewayError, RateLimited, UpstreamUnavailable
from gateway.metering.resp import ConnectionLost

log = logging.getLogger("gateway.metering")

WINDOW_S = 60
# A window's counters outlive it a little, so late settles still find them.
KEY_TTL_S = 2 * WINDOW_S

Clock = Callable[[], float]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Limit:
    scope: str
    rpm: int | None = None
    tpm: int | None = None


@dataclass(slots=True)
class RateState:
    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None

    def headers(self) -> dict[str, str]:
        # Built on every admitted call, so plain ifs rather than a comprehension over pairs.
        out: dict[str, str] = {}
        if self.limit_requests is not None:
            out["x-ratelimit-limit-requests"] = str(self.limit_requests)
        if self.remaining_requests is not None:
            out["x-ratelimit-remaining-requests"] = str(self.remaining_requests)
        if self.reset_requests_s is not None:
            out["x-ratelimit-reset-requests"] = _format_reset(self.reset_requests_s)
        if self.limit_tokens is not None:
            out["x-ratelimit-limit-tokens"] = str(self.limit_tokens)
        if self.remaining_tokens is not None:
            out["x-ratelimit-remaining-tokens"] = str(self.remaining_tokens)
        if self.reset_tokens_s is not None:
            out["x-ratelimit-reset-tokens"] = _format_reset(self.reset_tokens_s)
        return out


def _format_reset(seconds: float) -> str:
    """OpenAI's style: "0.5s", "12.3s", "6m0s"."""
    seconds = max(0.0, round(seconds, 3))
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest}s"


@dataclass(slots=True)
class Reservation:
    scopes: tuple[str, ...]
    window: int
    tokens: int
    settled: bool = False


class RateLimiter(Protocol):
    async def acquire(
        self, limits: Sequence[Limit], tokens: int
    ) -> tuple[Reservation, RateState]: ...

    async def settle(self, reservation: Reservation, actual_tokens: int) -> None: ...

    async def aclose(self) -> None: ...


def effective(limits: Sequence[Limit]) -> list[Limit]:
    """Drops unlimited entries and merges repeats of a scope into its strictest limit.

    A scope counted twice in one acquire would be checked against its old count twice and
    then incremented twice, so repeats must become one entry.
    """
    merged: dict[str, Limit] = {}
    for limit in limits:
        if limit.rpm is None and limit.tpm is None:
            continue
        seen = merged.get(limit.scope)
        if seen is not None:
            limit = Limit(limit.scope, _min(seen.rpm, limit.rpm), _min(seen.tpm, limit.tpm))
        merged[limit.scope] = limit
    return list(merged.values())


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def window_at(now: float) -> tuple[int, float]:
    """The window id and the seconds left in it."""
    window = int(now // WINDOW_S)
    return window, (window + 1) * WINDOW_S - now


def rate_state(
    limits: Sequence[Limit], counts: Sequence[tuple[int, int]], reset: float
) -> RateState:
    """Reports, per dimension, the limit with the least room left after this request."""
    state = RateState()
    for limit, (requests, tokens) in zip(limits, counts, strict=True):
        if limit.rpm is not None:
            left = max(0, limit.rpm - requests)
            if state.remaining_requests is None or left < state.remaining_requests:
                state.limit_requests, state.remaining_requests = limit.rpm, left
                state.reset_requests_s = reset
        if limit.tpm is not None:
            left = max(0, limit.tpm - tokens)
            if state.remaining_tokens is None or left < state.remaining_tokens:
                state.limit_tokens, state.remaining_tokens = limit.tpm, left
                state.reset_tokens_s = reset
    return state


def _refusal(limit: Limit, requests: int, tokens: int, wanted: int, reset: float) -> RateLimited:
    """The error for the first limit without room: which scope, which limit, when to retry."""
    if limit.rpm is not None and requests + 1 > limit.rpm:
        state = RateState(limit.rpm, 0, reset)
        message = f"{limit.rpm} requests per minute"
    else:
        assert limit.tpm is not None
        state = RateState(limit_tokens=limit.tpm, reset_tokens_s=reset)
        state.remaining_tokens = max(0, limit.tpm - tokens)
        if wanted > limit.tpm:
            # Waiting will never help, so say so and give no retry-after.
            return RateLimited(
                f"request too large for {limit.scope}: it may use {wanted} tokens but the "
                f"limit is {limit.tpm} tokens per minute; lower max_tokens or the input",
                headers=state.headers(),
            )
        message = f"{limit.tpm} tokens per minute ({tokens} used, {wanted} requested)"
    return RateLimited(
        f"rate limit reached for {limit.scope}: {message}; retry in {reset:.1f} s",
        retry_after=reset,
        headers=state.headers(),
    )


@dataclass(slots=True)
class _Counter:
    window: int
    requests: int = 0
    tokens: int = 0


class MemoryRateLimiter:
    """One process's counters; asyncio runs each acquire without a yield, hence atomically."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        # Only the current window per scope is kept, so memory is bounded by the scope count.
        self._counters: dict[str, _Counter] = {}

    async def acquire(self, limits: Sequence[Limit], tokens: int) -> tuple[Reservation, RateState]:
        window, reset = window_at(self._clock())
        limits = effective(limits)
        if not limits:
            return Reservation((), window, 0), RateState()
        counters = [self._counter(limit.scope, window) for limit in limits]
        for limit, counter in zip(limits, counters, strict=True):
            if _lacks_room(limit, counter.requests, counter.tokens, tokens):
                raise _refusal(limit, counter.requests, counter.tokens, tokens, reset)
        for counter in counters:
            counter.requests += 1
            counter.tokens += tokens
        counts = [(counter.requests, counter.tokens) for counter in counters]
        scopes = tuple(limit.scope for limit in limits)
        return Reservation(scopes, window, tokens), rate_state(limits, counts, reset)

    async def settle(self, reservation: Reservation, actual_tokens: int) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        for scope in reservation.scopes:
            counter = self._counters.get(scope)
            if counter is not None and counter.window == reservation.window:
                counter.tokens += actual_tokens - reservation.tokens

    async def aclose(self) -> None:
        self._counters.clear()

    def _counter(self, scope: str, window: int) -> _Counter:
        counter = self._counters.get(scope)
        if counter is None or counter.window != window:
            counter = self._counters[scope] = _Counter(window)
        return counter


def _lacks_room(limit: Limit, requests: int, tokens: int, wanted: int) -> bool:
    return (limit.rpm is not None and requests + 1 > limit.rpm) or (
        limit.tpm is not None and tokens + wanted > limit.tpm
    )


# Lua functions shared by the scripts here and the combined admission in redis_meter.py.
# Keys from index k: one hash per scope. Arguments from index a: tokens, ttl, then rpm and
# tpm per scope (-1 = unlimited). A check returns {0, i, r, t} for the first scope i
# without room and counts nothing; a commit counts and returns {r1, t1, r2, t2, ...}.
# A settle applies a token correction (argument a), a give-back returns requests and tokens
# (arguments a, a + 1); both leave expired hashes alone: they belong to finished windows,
# which nobody reads any more.
LIMITS_LUA = """
local function limits_check(k, n, a)
  local tokens = tonumber(ARGV[a])
  for i = 1, n do
    local rpm, tpm = tonumber(ARGV[a + 2 * i]), tonumber(ARGV[a + 1 + 2 * i])
    local held = redis.call('HMGET', KEYS[k + i - 1], 'r', 't')
    local r, t = tonumber(held[1]) or 0, tonumber(held[2]) or 0
    if (rpm >= 0 and r + 1 > rpm) or (tpm >= 0 and t + tokens > tpm) then
      return {0, i, r, t}
    end
  end
  return nil
end

local function limits_commit(k, n, a, out)
  for i = 1, n do
    local key = KEYS[k + i - 1]
    out[#out + 1] = redis.call('HINCRBY', key, 'r', 1)
    out[#out + 1] = redis.call('HINCRBY', key, 't', ARGV[a])
    redis.call('EXPIRE', key, ARGV[a + 1])
  end
  return out
end

local function limits_settle(k, n, a)
  for i = 1, n do
    local key = KEYS[k + i - 1]
    if redis.call('EXISTS', key) == 1 then
      redis.call('HINCRBY', key, 't', ARGV[a])
    end
  end
end

local function limits_give_back(k, n, a)
  for i = 1, n do
    local key = KEYS[k + i - 1]
    if redis.call('EXISTS', key) == 1 then
      redis.call('HINCRBY', key, 'r', 0 - tonumber(ARGV[a]))
      redis.call('HINCRBY', key, 't', 0 - tonumber(ARGV[a + 1]))
    end
  end
end
"""

# Returns {1, r1, t1, ...} after counting, or a check's refusal.
_ACQUIRE = (
    LIMITS_LUA
    + """
local refused = limits_check(1, #KEYS, 1)
if refused then return refused end
return limits_commit(1, #KEYS, 1, {1})
"""
)

_SETTLE = (
    LIMITS_LUA
    + """
limits_settle(1, #KEYS, 1)
return 0
"""
)


@dataclass(slots=True)
class PreparedAcquire:
    """An acquire's keys and arguments, so another script can run it in the same trip."""

    limits: list[Limit]
    window: int
    reset: float
    tokens: int
    keys: list[str]
    args: list[int]

    def reservation(self) -> Reservation:
        return Reservation(tuple(limit.scope for limit in self.limits), self.window, self.tokens)

    def refusal(self, index: int, requests: int, used: int) -> RateLimited:
        return _refusal(self.limits[index - 1], requests, used, self.tokens, self.reset)

    def state(self, values: Sequence[int]) -> RateState:
        counts = list(zip(values[0::2], values[1::2], strict=True))
        return rate_state(self.limits, counts, self.reset)


class RedisRateLimiter:
    """Counters shared by every replica; the caller owns (and closes) the Redis client."""

    def __init__(
        self, redis: Redis, prefix: str, clock: Clock = time.time, *, fail_open: bool = False
    ) -> None:
        self._prefix = prefix
        self._clock = clock
        self._guard = RedisGuard("rate limit store", fail_open)
        self._acquire = redis.register_script(_ACQUIRE)
        self._settle = redis.register_script(_SETTLE)

    def prepare_acquire(self, limits: Sequence[Limit], tokens: int) -> PreparedAcquire | None:
        window, reset = window_at(self._clock())
        limits = effective(limits)
        if not limits:
            return None
        args: list[int] = [tokens, KEY_TTL_S]
        for limit in limits:
            args += [-1 if limit.rpm is None else limit.rpm, -1 if limit.tpm is None else limit.tpm]
        keys = [self._key(limit.scope, window) for limit in limits]
        return PreparedAcquire(limits, window, reset, tokens, keys, args)

    async def acquire(self, limits: Sequence[Limit], tokens: int) -> tuple[Reservation, RateState]:
        prepared = self.prepare_acquire(limits, tokens)
        if prepared is None:
            return Reservation((), 0, 0), RateState()
        reply = await self._guard.run(lambda: self._acquire(keys=prepared.keys, args=prepared.args))
        if reply is None:
            return Reservation((), prepared.window, 0), RateState()
        values = [int(value) for value in reply]
        if values[0] == 0:
            raise prepared.refusal(*values[1:])
        return prepared.reservation(), prepared.state(values[1:])

    def settle_call(
        self, reservation: Reservation, actual_tokens: int
    ) -> tuple[list[str], int] | None:
        """The keys and token correction of a settle, or None when there is nothing to do."""
        if reservation.settled:
            return None
        reservation.settled = True
        delta = actual_tokens - reservation.tokens
        if delta == 0 or not reservation.scopes:
            return None
        return self.keys(reservation), delta

    def keys(self, reservation: Reservation) -> list[str]:
        return [self._key(scope, reservation.window) for scope in reservation.scopes]

    async def settle(self, reservation: Reservation, actual_tokens: int) -> None:
        call = self.settle_call(reservation, actual_tokens)
        if call is not None:
            keys, delta = call
            await self._guard.run(lambda: self._settle(keys=keys, args=[delta]), refuse=False)

    async def aclose(self) -> None:
        pass

    def _key(self, scope: str, window: int) -> str:
        return f"{self._prefix}rl:{scope}:{window}"


class RedisGuard:
    """Runs Redis commands under the fail-open or fail-closed policy (shared with budgets).

    After Redis proves unreachable, calls skip it for PROBE_EVERY_S: otherwise every request
    would wait out the client's connect timeout and retries while Redis is down.
    """

    PROBE_EVERY_S = 1.0
    WARN_EVERY_S = 10.0
    # Errors that mean "Redis is not there right now", as opposed to a bug in our use of it.
    UNREACHABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError)

    def __init__(self, store: str, fail_open: bool) -> None:
        self.store = store
        self.fail_open = fail_open
        # Monotonic, not the injected clock: these pace probes and logs, they meter nothing.
        self._down_until = float("-inf")
        self._down_error: Exception | None = None
        self._warned_at = float("-inf")

    async def run(self, command: Callable[[], Awaitable[T]], *, refuse: bool = True) -> T | None:
        """The command's result, or None when the caller should carry on without Redis.

        refuse=False is for settling after the answer was served: a failure is logged, since
        refusing the call at that point would help nobody.
        """
        if self._down_error is not None and time.monotonic() < self._down_until:
            self._without_redis(self._down_error, refuse)
            return None
        try:
            return await command()
        except (RedisError, OSError) as exc:
            # A dropped connection fails only the calls in flight on it; pausing calls for a
            # probe interval is for a Redis that cannot be reached at all.
            if isinstance(exc, self.UNREACHABLE) and not isinstance(exc, ConnectionLost):
                self._down_until = time.monotonic() + self.PROBE_EVERY_S
                self._down_error = exc
            self._without_redis(exc, refuse)
            return None

    def _without_redis(self, exc: Exception, refuse: bool) -> None:
        unreachable = isinstance(exc, self.UNREACHABLE)
        if refuse and not unreachable:
            raise GatewayError(f"{self.store} (Redis) failed: {exc}") from exc
        if refuse and not self.fail_open:
            raise UpstreamUnavailable(
                f"{self.store} (Redis) is unreachable; refusing calls until it is back "
                f"(set GATEWAY_REDIS_FAIL_OPEN=true to let them through): {exc}"
            ) from exc
        now = time.monotonic()
        if now - self._warned_at >= self.WARN_EVERY_S:
            self._warned_at = now
            state = "is unreachable" if unreachable else "failed"
            what = "letting calls through" if refuse else "a settle was lost"
            log.warning("%s (Redis) %s, %s: %s", self.store, state, what, exc)
