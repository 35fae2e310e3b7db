"""Requests- and tokens-per-minute limits over several scopes at once, in memory or in Redis.

A sliding window of one-second sub-buckets. A call is counted in the second it was admitted
in, and a check at time t counts every second that overlaps [t - 60 s, t]: the 60 whole
seconds before the current one, and the current one. So a call counts against its limits for
at least 60 and at most 61 seconds after its admission, and every 60-second span, wherever it
starts, admits at most the RPM; and at most the TPM, counting each call's tokens as settled
(its worst-case estimate until then; a call that used more than its estimate is recorded,
and holds later calls back). A burst just before a minute boundary is not followed by a
second one just after it. The price of counting the oldest second whole: a client at a
steady full rate gets at least 60/61 of its limit.

Room frees up when the oldest counted second leaves the window: that is the reset the
x-ratelimit-reset-* headers report, and a refusal's retry-after is when enough seconds will
have left for the refused call to fit.

An acquire checks every scope and counts in all of them or in none, so a request refused by
its team's limit costs its key nothing; in Redis that check-and-count is one Lua script, which
keeps replicas exact (no per-replica counters, no read-then-write race). The second is the
replica's clock second, so clocks d seconds apart can let a count lapse up to d seconds early.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.core.errors import GatewayError, MeterUnavailable, RateLimited
from gateway.core.wording import plural
from gateway.transport.redis_refusal import refusal
from gateway.transport.resp import ConnectionLost

log = logging.getLogger("gateway.metering")

WINDOW_S = 60
# A scope's Redis hash outlives its newest second's 61 s in the window, so late settles still
# find it; it is refreshed once per second the scope is used in.
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
    """OpenAI's style (Go durations, to the millisecond): "0.5s", "12.34s", "1m0.5s", "6m0s"."""
    minutes, rest = divmod(max(0.0, round(seconds, 3)), 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


@dataclass(slots=True)
class Reservation:
    scopes: tuple[str, ...]
    second: int  # the sub-bucket it was counted in
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


def leaves_window(second: int) -> int:
    """When a sub-bucket stops counting: the end of the 60th second after its own."""
    return second + 1 + WINDOW_S


def rate_state(
    limits: Sequence[Limit], counts: Iterable[tuple[int, int, int]], now: float
) -> RateState:
    """Reports, per dimension, the limit with the least room left after this request.

    counts are each scope's (requests, tokens, oldest second counted); the reset is when
    that oldest second leaves the window, the next moment room frees up.
    """
    state = RateState()
    for limit, (requests, tokens, oldest) in zip(limits, counts, strict=True):
        if limit.rpm is not None:
            left = max(0, limit.rpm - requests)
            if state.remaining_requests is None or left < state.remaining_requests:
                state.limit_requests, state.remaining_requests = limit.rpm, left
                state.reset_requests_s = leaves_window(oldest) - now
        if limit.tpm is not None:
            left = max(0, limit.tpm - tokens)
            if state.remaining_tokens is None or left < state.remaining_tokens:
                state.limit_tokens, state.remaining_tokens = limit.tpm, left
                state.reset_tokens_s = leaves_window(oldest) - now
    return state


def _refusal(
    limit: Limit, requests: int, tokens: int, wanted: int, retry: float | None
) -> RateLimited:
    """The error for the first limit without room: which scope, which limit, when to retry
    (retry: when enough of the window's seconds will have left it for this call to fit)."""
    if limit.rpm is not None and requests + 1 > limit.rpm:
        state = RateState(limit.rpm, 0, retry)
        message = f"{plural(limit.rpm, 'request')} per minute"
    else:
        assert limit.tpm is not None
        state = RateState(limit_tokens=limit.tpm, reset_tokens_s=retry)
        state.remaining_tokens = max(0, limit.tpm - tokens)
        if wanted > limit.tpm:
            # Waiting will never help, so say so and give no retry-after.
            return RateLimited(
                f"request too large for {limit.scope}: it may use {wanted} tokens but the "
                f"limit is {limit.tpm} tokens per minute; lower max_tokens or the input",
                retryable=False,
                headers=state.headers(),
            )
        message = f"{limit.tpm} tokens per minute ({tokens} used, {wanted} requested)"
    if retry is None:  # a limit of 0 requests: no amount of waiting helps either
        return RateLimited(f"rate limit reached for {limit.scope}: {message}", retryable=False)
    return RateLimited(
        f"rate limit reached for {limit.scope}: {message}; retry in {retry:.1f} s",
        retry_after=retry,
        headers=state.headers(),
    )


def _lacks_room(limit: Limit, requests: int, tokens: int, wanted: int) -> bool:
    return (limit.rpm is not None and requests + 1 > limit.rpm) or (
        limit.tpm is not None and tokens + wanted > limit.tpm
    )


@dataclass(slots=True)
class _Window:
    """One scope's sliding window: totals over the seconds it keeps, and each second's."""

    requests: int = 0
    tokens: int = 0
    # second -> [requests, tokens], oldest first. Should the clock step back, a second
    # lands out of order and is dropped late: it over-counts a little, never under-counts.
    seconds: dict[int, list[int]] = field(default_factory=dict)

    def expire(self, now: int) -> None:
        seconds, cutoff = self.seconds, now - WINDOW_S
        while seconds:
            first = next(iter(seconds))
            if first >= cutoff:
                return
            requests, tokens = seconds.pop(first)
            self.requests -= requests
            self.tokens -= tokens

    def add(self, now: int, tokens: int) -> None:
        counts = self.seconds.get(now)
        if counts is None:
            self.seconds[now] = [1, tokens]
        else:
            counts[0] += 1
            counts[1] += tokens
        self.requests += 1
        self.tokens += tokens

    def frees_at(self, limit: Limit, wanted: int) -> int | None:
        """The second whose leaving the window makes room for this call (None: none does)."""
        requests, tokens = self.requests, self.tokens
        for second, (r, t) in sorted(self.seconds.items()):
            requests, tokens = requests - r, tokens - t
            if not _lacks_room(limit, requests, tokens, wanted):
                return second
        return None


class MemoryRateLimiter:
    """One process's counters; asyncio runs each acquire without a yield, hence atomically."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        # At most 61 seconds per scope are kept, so memory is bounded by the scope count.
        self._windows: dict[str, _Window] = {}

    async def acquire(self, limits: Sequence[Limit], tokens: int) -> tuple[Reservation, RateState]:
        now = self._clock()
        second = int(now)
        limits = effective(limits)
        if not limits:
            return Reservation((), second, 0), RateState()
        windows = [self._window(limit.scope, second) for limit in limits]
        for limit, window in zip(limits, windows, strict=True):
            if _lacks_room(limit, window.requests, window.tokens, tokens):
                frees = window.frees_at(limit, tokens)
                retry = None if frees is None else leaves_window(frees) - now
                raise _refusal(limit, window.requests, window.tokens, tokens, retry)
        counts = []
        for window in windows:
            window.add(second, tokens)
            counts.append((window.requests, window.tokens, next(iter(window.seconds))))
        scopes = tuple(limit.scope for limit in limits)
        return Reservation(scopes, second, tokens), rate_state(limits, counts, now)

    async def settle(self, reservation: Reservation, actual_tokens: int) -> None:
        """Corrects the second the call was counted in; once it has left the window, the
        call no longer counts and nothing changes."""
        if reservation.settled:
            return
        reservation.settled = True
        delta = actual_tokens - reservation.tokens
        for scope in reservation.scopes:
            window = self._windows.get(scope)
            counts = window.seconds.get(reservation.second) if window is not None else None
            if window is not None and counts is not None:
                counts[1] += delta
                window.tokens += delta

    async def aclose(self) -> None:
        self._windows.clear()

    def _window(self, scope: str, now: int) -> _Window:
        window = self._windows.get(scope)
        if window is None:
            window = self._windows[scope] = _Window()
        else:
            window.expire(now)
        return window


# Lua functions shared by the scripts here and the combined admission in redis_meter.py.
# A scope's window is two hashes (keys from index k, two per scope). The first, read and
# written by every call: 'cs' the current (newest) second, 'cr' and 'ct' its requests and
# tokens, 'r' and 't' the totals of the earlier seconds kept and 'lo' the oldest of them. The
# second, written about once a second: each earlier second s's counts 'r' .. s and 't' .. s.
# A window holds r + cr requests and t + ct tokens. Reading at second now drops the seconds
# before now - SPAN (SPAN = WINDOW_S); the loops below run over at most 3 * SPAN seconds, and
# after a clock jump of minutes the window is rebuilt from the whole second hash.
# A check's arguments from index a: tokens, key TTL, the current second, then rpm and tpm
# per scope (-1 = unlimited). A correction's: the second, the requests and tokens to add.
LIMITS_LUA = """
local function history_rebuild(seconds, cutoff)
  local fields = redis.call('HGETALL', seconds)
  local r, t, lo, gone = 0, 0, nil, {}
  for i = 1, #fields, 2 do
    local kind, s = string.match(fields[i], '^([rt])(%d+)$')
    if s then
      s = tonumber(s)
      if s < cutoff then
        gone[#gone + 1] = fields[i]
      else
        if kind == 'r' then r = r + tonumber(fields[i + 1]) else t = t + tonumber(fields[i + 1]) end
        if lo == nil or s < lo then lo = s end
      end
    end
  end
  for i = 1, #gone, 1000 do
    redis.call('HDEL', seconds, unpack(gone, i, math.min(i + 999, #gone)))
  end
  return r, t, lo
end

-- Drops the earlier seconds before cutoff, and the empty ones up to second last, so that lo
-- is the oldest second still holding room (nil: none left); returns the new r, t, lo.
local function history_advance(key, seconds, r, t, lo, cs, cutoff, last)
  if cutoff - lo > 2 * SPAN then
    r, t, lo = history_rebuild(seconds, cutoff)
  else
    local gone = {}
    local s = lo
    while s < cs do
      local held = redis.call('HMGET', seconds, 'r' .. s, 't' .. s)
      local sr, st = tonumber(held[1]) or 0, tonumber(held[2]) or 0
      if s >= cutoff and (s > last or sr ~= 0 or st ~= 0) then break end
      if held[1] or held[2] then
        r, t = r - sr, t - st
        gone[#gone + 1] = 'r' .. s
        gone[#gone + 1] = 't' .. s
      end
      s = s + 1
    end
    if #gone > 0 then redis.call('HDEL', seconds, unpack(gone)) end
    lo = s
    if s >= cs then lo = nil end
  end
  if lo == nil then
    redis.call('HSET', key, 'r', 0, 't', 0)
    redis.call('HDEL', key, 'lo')
    return 0, 0, nil
  end
  redis.call('HSET', key, 'r', r, 't', t, 'lo', lo)
  return r, t, lo
end

-- Returns r, t, lo, cs, cr, ct as described above, once the seconds that left are dropped.
local function window_read(key, seconds, now)
  local held = redis.call('HMGET', key, 'r', 't', 'lo', 'cs', 'cr', 'ct')
  local cs = tonumber(held[4])
  if cs == nil then return 0, 0, nil, nil, 0, 0 end
  local r, t, lo = tonumber(held[1]) or 0, tonumber(held[2]) or 0, tonumber(held[3])
  local cr, ct = tonumber(held[5]) or 0, tonumber(held[6]) or 0
  local cutoff = now - SPAN
  if cs < cutoff then
    redis.call('DEL', key, seconds)
    return 0, 0, nil, nil, 0, 0
  end
  if lo ~= nil and lo < cutoff then
    r, t, lo = history_advance(key, seconds, r, t, lo, cs, cutoff, now)
  end
  return r, t, lo, cs, cr, ct
end

-- Counts dr requests and dt tokens in second now, over what window_read returned; returns
-- the window's requests and tokens and its oldest second.
local function window_add(key, seconds, now, dr, dt, r, t, lo, cs, cr, ct, ttl)
  if cs == now then
    cr = redis.call('HINCRBY', key, 'cr', dr)
    ct = redis.call('HINCRBY', key, 'ct', dt)
  elseif cs == nil then
    redis.call('HSET', key, 'cs', now, 'cr', dr, 'ct', dt)
    redis.call('EXPIRE', key, ttl)
    cs, cr, ct = now, dr, dt
  elseif now > cs then
    -- A new second: the current one joins the earlier ones.
    if cr ~= 0 or ct ~= 0 then
      redis.call('HINCRBY', seconds, 'r' .. cs, cr)
      redis.call('HINCRBY', seconds, 't' .. cs, ct)
      redis.call('EXPIRE', seconds, ttl)
      r, t, lo = r + cr, t + ct, lo or cs
    end
    if lo == nil then
      redis.call('HSET', key, 'r', r, 't', t, 'cs', now, 'cr', dr, 'ct', dt)
    else
      redis.call('HSET', key, 'r', r, 't', t, 'lo', lo, 'cs', now, 'cr', dr, 'ct', dt)
    end
    redis.call('EXPIRE', key, ttl)
    cs, cr, ct = now, dr, dt
  else
    -- A replica a little behind (or a call prepared just before the second turned).
    redis.call('HINCRBY', seconds, 'r' .. now, dr)
    redis.call('HINCRBY', seconds, 't' .. now, dt)
    redis.call('EXPIRE', seconds, ttl)
    r = redis.call('HINCRBY', key, 'r', dr)
    t = redis.call('HINCRBY', key, 't', dt)
    if lo == nil or now < lo then
      lo = now
      redis.call('HSET', key, 'lo', lo)
    end
  end
  return r + cr, t + ct, lo or cs
end

-- The second whose leaving the window makes room for a refused call; -1 when none does.
local function window_frees_at(seconds, r, t, lo, cs, cr, ct, rpm, tpm, tokens)
  if cs == nil or rpm == 0 or (tpm >= 0 and tokens > tpm) then return -1 end
  r, t = r + cr, t + ct
  if lo ~= nil then
    for s = lo, math.min(cs - 1, lo + 3 * SPAN) do
      local held = redis.call('HMGET', seconds, 'r' .. s, 't' .. s)
      r, t = r - (tonumber(held[1]) or 0), t - (tonumber(held[2]) or 0)
      if (rpm < 0 or r + 1 <= rpm) and (tpm < 0 or t + tokens <= tpm) then return s end
    end
  end
  return cs
end

-- Reads scope i's window and checks it has room for one more call; returns nil, keeping
-- what window_add needs in seen[i], or the refusal {0, i, requests, tokens, frees_at}.
local function limits_check_one(k, i, a, seen)
  local key, seconds = KEYS[k + 2 * i - 2], KEYS[k + 2 * i - 1]
  local tokens = tonumber(ARGV[a])
  local rpm, tpm = tonumber(ARGV[a + 1 + 2 * i]), tonumber(ARGV[a + 2 + 2 * i])
  local r, t, lo, cs, cr, ct = window_read(key, seconds, tonumber(ARGV[a + 2]))
  if (rpm >= 0 and r + cr + 1 > rpm) or (tpm >= 0 and t + ct + tokens > tpm) then
    return {0, i, r + cr, t + ct, window_frees_at(seconds, r, t, lo, cs, cr, ct, rpm, tpm, tokens)}
  end
  seen[i] = {r, t, lo, cs, cr, ct}
  return nil
end

local function limits_check(k, n, a)
  local seen = {}
  for i = 1, n do
    local refused = limits_check_one(k, i, a, seen)
    if refused then return refused, seen end
  end
  return nil, seen
end

-- Counts calls requests (and as many times the tokens) in every scope; appends each
-- scope's requests, tokens and oldest second to out.
local function limits_commit(k, n, a, calls, seen, out)
  local ttl, now = ARGV[a + 1], tonumber(ARGV[a + 2])
  local dt = calls * tonumber(ARGV[a])
  for i = 1, n do
    local w = seen[i]
    local r, t, oldest = window_add(KEYS[k + 2 * i - 2], KEYS[k + 2 * i - 1], now, calls, dt,
      w[1], w[2], w[3], w[4], w[5], w[6], ttl)
    out[#out + 1] = r
    out[#out + 1] = t
    out[#out + 1] = oldest
  end
  return out
end

-- A settle (tokens) or a lease's give-back (requests and tokens) changes the second it was
-- counted in, if still kept: once gone it no longer counts, so there is nothing to correct.
local function limits_correct(k, n, a)
  local s, dr, dt = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  for i = 1, n do
    local key, seconds = KEYS[k + 2 * i - 2], KEYS[k + 2 * i - 1]
    if redis.call('HGET', key, 'cs') == s then
      if dr ~= '0' then redis.call('HINCRBY', key, 'cr', dr) end
      if dt ~= '0' then redis.call('HINCRBY', key, 'ct', dt) end
    elseif redis.call('HEXISTS', seconds, 'r' .. s) == 1 then
      if dr ~= '0' then
        redis.call('HINCRBY', seconds, 'r' .. s, dr)
        redis.call('HINCRBY', key, 'r', dr)
      end
      if dt ~= '0' then
        redis.call('HINCRBY', seconds, 't' .. s, dt)
        redis.call('HINCRBY', key, 't', dt)
      end
    end
  end
end
""".replace("SPAN", str(WINDOW_S))

# Returns {1, r1, t1, oldest1, ...} after counting, or a check's refusal.
_ACQUIRE = (
    LIMITS_LUA
    + """
local refused, seen = limits_check(1, #KEYS / 2, 1)
if refused then return refused end
return limits_commit(1, #KEYS / 2, 1, 1, seen, {1})
"""
)

_SETTLE = (
    LIMITS_LUA
    + """
limits_correct(1, #KEYS / 2, 1)
return 0
"""
)


@dataclass(slots=True)
class PreparedAcquire:
    """An acquire's keys and arguments, so another script can run it in the same trip."""

    limits: list[Limit]
    now: float
    second: int
    tokens: int
    keys: list[str]
    args: list[int]

    def reservation(self) -> Reservation:
        return Reservation(tuple(limit.scope for limit in self.limits), self.second, self.tokens)

    def refusal(self, index: int, requests: int, used: int, frees: int) -> RateLimited:
        retry = None if frees < 0 else leaves_window(frees) - self.now
        return _refusal(self.limits[index - 1], requests, used, self.tokens, retry)

    def counts(self, values: Sequence[int]) -> list[tuple[int, int, int]]:
        """Each scope's (requests, tokens, oldest second) from a commit's reply."""
        return list(zip(values[0::3], values[1::3], values[2::3], strict=True))

    def state(self, values: Sequence[int]) -> RateState:
        return rate_state(self.limits, self.counts(values), self.now)


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
        now = self._clock()
        second = int(now)
        limits = effective(limits)
        if not limits:
            return None
        args: list[int] = [tokens, KEY_TTL_S, second]
        for limit in limits:
            args += [-1 if limit.rpm is None else limit.rpm, -1 if limit.tpm is None else limit.tpm]
        keys = self._keys([limit.scope for limit in limits])
        return PreparedAcquire(limits, now, second, tokens, keys, args)

    async def acquire(self, limits: Sequence[Limit], tokens: int) -> tuple[Reservation, RateState]:
        prepared = self.prepare_acquire(limits, tokens)
        if prepared is None:
            return Reservation((), 0, 0), RateState()
        reply = await self._guard.run(lambda: self._acquire(keys=prepared.keys, args=prepared.args))
        if reply is None:
            return Reservation((), prepared.second, 0), RateState()
        values = [int(value) for value in reply]
        if values[0] == 0:
            raise prepared.refusal(*values[1:])
        return prepared.reservation(), prepared.state(values[1:])

    def keys(self, reservation: Reservation) -> list[str]:
        return self._keys(reservation.scopes)

    async def settle(self, reservation: Reservation, actual_tokens: int) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        delta = actual_tokens - reservation.tokens
        if delta == 0 or not reservation.scopes:
            return
        keys, args = self.keys(reservation), [reservation.second, 0, delta]
        await self._guard.run(lambda: self._settle(keys=keys, args=args), refuse=False)

    async def aclose(self) -> None:
        pass

    def _keys(self, scopes: Sequence[str]) -> list[str]:
        """Each scope's two hashes (see LIMITS_LUA). Not "rl:", the fixed-minute counters'
        prefix, so that no version reads the other's keys."""
        keys = []
        for scope in scopes:
            keys += [f"{self._prefix}rate:{scope}", f"{self._prefix}rate-s:{scope}"]
        return keys


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
            # probe interval is for a Redis that cannot be reached, or refuses the gateway.
            if self._unusable(exc) and not isinstance(exc, ConnectionLost):
                self._down_until = time.monotonic() + self.PROBE_EVERY_S
                self._down_error = exc
            self._without_redis(exc, refuse)
            return None

    def _unusable(self, exc: Exception) -> bool:
        """Unreachable, or refusing the gateway (credentials, ACL permissions): either way
        Redis cannot be used now, so calls are refused with 503 (or let through under
        fail-open) rather than failed as a bug."""
        return isinstance(exc, self.UNREACHABLE) or refusal(exc) is not None

    def _without_redis(self, exc: Exception, refuse: bool) -> None:
        unusable = self._unusable(exc)
        refused = refuse and (not unusable or not self.fail_open)
        denied = refusal(exc)
        now = time.monotonic()
        if now - self._warned_at >= self.WARN_EVERY_S:
            self._warned_at = now
            state = "failed"
            if denied is not None:
                state = f"cannot be used ({denied})"
            elif unusable:
                state = "is unreachable"
            if refused:
                what = "refusing metered calls"
            else:
                what = "letting calls through" if refuse else "a settle was lost"
            log.warning("%s (Redis) %s, %s: %s", self.store, state, what, exc)
        if refuse and not unusable:
            raise GatewayError(
                "The gateway's budget and rate limit store failed; the error is logged.",
                detail=f"{self.store} (Redis) failed: {exc}",
            ) from exc
        if refused and denied is not None:
            # Waiting will not fix it, the operator must: no retry-after, and SDKs told not
            # to retry.
            raise MeterUnavailable(
                "The gateway's budget and rate limit store cannot be used: "
                f"{denied}. Calls with budgets or limits are refused until the operator "
                "fixes it (or sets GATEWAY_REDIS_FAIL_OPEN=true to let them through).",
                detail=f"{self.store} (Redis) refuses the gateway: {exc}",
                headers={"x-should-retry": "false"},
            ) from exc
        if refused:
            # The Redis address and error are for the operator's log, not for callers.
            raise MeterUnavailable(
                "The gateway's budget and rate limit store (Redis) is unreachable; calls with "
                "budgets or limits are refused until it is back (the operator can set "
                "GATEWAY_REDIS_FAIL_OPEN=true to let them through). Retry shortly.",
                detail=f"{self.store} (Redis) is unreachable: {exc}",
                headers={"retry-after": "1"},
            ) from exc
