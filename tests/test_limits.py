"""Rate limits, in memory and in a real Redis (two clients standing for two replicas).

The window slides over whole seconds: a call counts from its second until that second is 61 s
old, so no 60-second span ever admits more than a limit, wherever it starts."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.core.errors import MeterUnavailable, RateLimited
from gateway.metering.limits import (
    KEY_TTL_S,
    WINDOW_S,
    Limit,
    MemoryRateLimiter,
    RateLimiter,
    RateState,
    RedisRateLimiter,
    Reservation,
)

START = 1_800_000_000.0  # a minute boundary: START % 60 == 0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(START + 12.5)


@pytest.fixture(params=["memory", "redis"])
def replicas(request: pytest.FixtureRequest, clock: Clock) -> list[RateLimiter]:
    """Two limiters that must agree: one shared object in memory, two clients on Redis."""
    if request.param == "memory":
        one = MemoryRateLimiter(clock=clock)
        return [one, one]
    clients: tuple[Redis, Redis] = request.getfixturevalue("redis_pair")
    redis_prefix: str = request.getfixturevalue("redis_prefix")
    return [RedisRateLimiter(client, redis_prefix, clock=clock) for client in clients]


@pytest.fixture
def limiter(replicas: list[RateLimiter]) -> RateLimiter:
    return replicas[0]


async def test_no_limits_returns_an_empty_state(limiter: RateLimiter) -> None:
    reservation, state = await limiter.acquire([], tokens=100)
    assert state == RateState(None, None, None, None, None, None)
    assert state.headers() == {}
    await limiter.settle(reservation, 500)


async def test_rpm_refuses_the_request_over_the_limit(limiter: RateLimiter) -> None:
    key = Limit("key:abc", rpm=2)
    _, first = await limiter.acquire([key], tokens=0)
    _, second = await limiter.acquire([key], tokens=0)
    assert (first.remaining_requests, second.remaining_requests) == (1, 0)
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire([key], tokens=0)
    error = caught.value
    assert error.status == 429
    # Both calls were counted in second 12, which leaves the window at 73 s.
    assert error.message == (
        "rate limit reached for key:abc: 2 requests per minute; retry in 60.5 s"
    )
    assert error.retry_after == pytest.approx(60.5)
    assert error.headers["retry-after"] == "61"  # rounded up: coming back at 60 s is too early
    # The OpenAI SDK prefers the milliseconds, and retries a 429 saying x-should-retry: true.
    assert error.headers["retry-after-ms"] == "60500"
    assert error.headers["x-should-retry"] == "true"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.headers["x-ratelimit-reset-requests"] == "1m0.5s"


async def test_a_refusal_counts_nothing_in_any_scope(limiter: RateLimiter) -> None:
    key, team = Limit("key:a", rpm=10, tpm=1000), Limit("team:t", rpm=1)
    await limiter.acquire([key, team], tokens=100)
    with pytest.raises(RateLimited, match="team:t: 1 request per minute"):
        await limiter.acquire([key, team], tokens=100)
    # Had the refused request counted for the key, this would report 7 and 800.
    _, state = await limiter.acquire([key], tokens=100)
    assert (state.remaining_requests, state.remaining_tokens) == (8, 800)


async def test_rpm_is_exact_under_concurrency_across_replicas(
    replicas: list[RateLimiter],
) -> None:
    limit = Limit("deployment:d1", rpm=50)

    async def attempt(index: int) -> bool:
        try:
            await replicas[index % 2].acquire([limit], tokens=1)
        except RateLimited:
            return False
        return True

    results = await asyncio.gather(*(attempt(i) for i in range(200)))
    assert sum(results) == 50


async def test_tpm_reserves_tokens_and_settle_corrects_them(limiter: RateLimiter) -> None:
    key = Limit("key:t", tpm=100)
    first, state = await limiter.acquire([key], tokens=60)
    assert (state.limit_tokens, state.remaining_tokens) == (100, 40)
    with pytest.raises(RateLimited, match=r"100 tokens per minute \(60 used, 60 requested\)"):
        await limiter.acquire([key], tokens=60)
    await limiter.settle(first, actual_tokens=10)
    second, state = await limiter.acquire([key], tokens=60)
    assert state.remaining_tokens == 30
    # Over-use is recorded, never refused, and blocks what follows.
    await limiter.settle(second, actual_tokens=200)
    with pytest.raises(RateLimited):
        await limiter.acquire([key], tokens=1)


async def test_settling_twice_corrects_once(limiter: RateLimiter) -> None:
    key = Limit("key:t", tpm=100)
    reservation, _ = await limiter.acquire([key], tokens=50)
    await limiter.settle(reservation, actual_tokens=0)
    await limiter.settle(reservation, actual_tokens=0)
    _, state = await limiter.acquire([key], tokens=0)
    assert state.remaining_tokens == 100


async def test_a_request_larger_than_tpm_is_told_waiting_will_not_help(
    limiter: RateLimiter,
) -> None:
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire([Limit("key:big", tpm=1000)], tokens=5000)
    assert "request too large for key:big" in caught.value.message
    assert caught.value.retry_after is None
    # So the OpenAI SDK does not spend its retries on it.
    assert caught.value.headers["x-should-retry"] == "false"
    assert "retry-after" not in caught.value.headers


async def test_a_limit_of_zero_requests_is_told_waiting_will_not_help(
    limiter: RateLimiter,
) -> None:
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire([Limit("key:none", rpm=0)], tokens=0)
    assert caught.value.retry_after is None
    assert caught.value.headers["x-should-retry"] == "false"


async def test_room_frees_when_the_oldest_second_leaves_the_window(
    limiter: RateLimiter, clock: Clock
) -> None:
    key = Limit("key:w", rpm=2, tpm=100)
    early, _ = await limiter.acquire([key], tokens=60)  # second 12, counted until 73 s
    clock.now = START + 30.25
    _, state = await limiter.acquire([key], tokens=30)  # second 30, counted until 91 s
    assert (state.remaining_requests, state.remaining_tokens) == (0, 10)
    assert state.reset_requests_s == state.reset_tokens_s == pytest.approx(73 - 30.25)
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire([key], tokens=1)
    assert caught.value.retry_after == pytest.approx(73 - 30.25)
    clock.now = START + 72.999
    with pytest.raises(RateLimited, match="requests per minute"):
        await limiter.acquire([key], tokens=1)
    clock.now = START + 73
    _, state = await limiter.acquire([key], tokens=10)
    assert (state.remaining_requests, state.remaining_tokens) == (0, 60)
    assert state.reset_requests_s == pytest.approx(91 - 73)  # now second 30 is the oldest
    # A late settle belongs to a second that has left the window and changes nothing.
    await limiter.settle(early, actual_tokens=1000)
    clock.now = START + 91
    _, state = await limiter.acquire([key], tokens=90)
    assert (state.remaining_requests, state.remaining_tokens) == (0, 0)


async def test_state_reports_the_most_restrictive_limit(limiter: RateLimiter) -> None:
    limits = [
        Limit("key:k", rpm=10, tpm=50),
        Limit("team:t", rpm=3, tpm=1000),
        Limit("deployment:d", rpm=None, tpm=None),
    ]
    _, state = await limiter.acquire(limits, tokens=20)
    assert state == RateState(3, 2, 60.5, 50, 30, 60.5)


async def test_repeated_scopes_count_once_against_the_strictest(limiter: RateLimiter) -> None:
    limits = [Limit("key:k", rpm=5), Limit("key:k", rpm=2, tpm=10)]
    _, state = await limiter.acquire(limits, tokens=4)
    assert (state.limit_requests, state.remaining_requests) == (2, 1)
    assert (state.limit_tokens, state.remaining_tokens) == (10, 6)


def test_headers_follow_openai() -> None:
    state = RateState(60, 59, 0.5, 150_000, 149_000, 360.0)
    assert state.headers() == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "0.5s",
        "x-ratelimit-limit-tokens": "150000",
        "x-ratelimit-remaining-tokens": "149000",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert RateState(limit_requests=5, reset_requests_s=12.3456).headers() == {
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-reset-requests": "12.346s",
    }
    assert RateState(reset_requests_s=60.5).headers() == {"x-ratelimit-reset-requests": "1m0.5s"}
    assert RateState(reset_requests_s=119.9999).headers() == {"x-ratelimit-reset-requests": "2m0s"}
    assert RateState(reset_tokens_s=1.0).headers() == {"x-ratelimit-reset-tokens": "1s"}


@pytest.fixture
async def dead_redis() -> AsyncIterator[Redis]:
    # No client retries: the default policy would spend seconds on every refused connect.
    client = Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    yield client
    await client.aclose()


async def test_unreachable_redis_fails_closed_by_default(dead_redis: Redis) -> None:
    limiter = RedisRateLimiter(dead_redis, "test:")
    for _ in range(2):
        with pytest.raises(MeterUnavailable, match=r"rate limit store \(Redis\) is unreachable"):
            await limiter.acquire([Limit("key:k", rpm=1)], tokens=1)


async def test_unreachable_redis_fails_open_when_asked(
    dead_redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RedisRateLimiter(dead_redis, "test:", fail_open=True)
    for _ in range(3):
        reservation, state = await limiter.acquire([Limit("key:k", rpm=1)], tokens=1)
        assert state == RateState()
        await limiter.settle(reservation, actual_tokens=5)
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1


async def test_a_broken_redis_is_probed_not_hammered() -> None:
    """A server that hangs up on every connection: after one failure, calls skip Redis."""
    connections = 0

    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
    limiter = RedisRateLimiter(client, "test:", fail_open=True)
    try:
        for _ in range(5):
            await limiter.acquire([Limit("key:k", rpm=1)], tokens=1)
        assert connections == 1
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


async def test_a_burst_either_side_of_a_minute_boundary_is_refused(
    replicas: list[RateLimiter], clock: Clock
) -> None:
    """N calls at 59.9 s and N more at 60.1 s: a fixed-minute counter lets all 2N through."""
    limit = Limit("key:edge", rpm=10)
    clock.now = START + 59.9
    for i in range(10):
        await replicas[i % 2].acquire([limit], tokens=0)
    clock.now = START + 60.1
    for i in range(10):
        with pytest.raises(RateLimited):
            await replicas[i % 2].acquire([limit], tokens=0)
    # Room comes back only when the 59.9 s calls' second has left the window.
    clock.now = START + 119.999
    with pytest.raises(RateLimited) as caught:
        await replicas[0].acquire([limit], tokens=0)
    assert caught.value.retry_after == pytest.approx(0.001, abs=1e-6)
    clock.now = START + 120
    for i in range(10):
        await replicas[i % 2].acquire([limit], tokens=0)


async def test_no_60_second_span_ever_admits_more_than_the_limits(
    replicas: list[RateLimiter], clock: Clock
) -> None:
    """Bursts at random moments, with settles early and late, across two replicas: in every
    60-second span starting at an admission, requests and (settled) tokens fit the limits."""
    rpm, tpm = 25, 2_000
    limits = [Limit("key:span", rpm=rpm, tpm=tpm), Limit("team:span", rpm=40)]
    rng = random.Random(12)
    admitted: list[tuple[float, int]] = []
    unsettled: list[tuple[Reservation, int]] = []
    refused = 0
    clock.now = START + 3.7
    for step in range(600):
        clock.now += rng.choice((0.0, 0.05, 0.4, 0.95, 1.0, 2.5))
        for _ in range(rng.randrange(4)):
            estimate = rng.randrange(20, 200)
            try:
                reservation, _ = await replicas[step % 2].acquire(limits, tokens=estimate)
            except RateLimited:
                refused += 1
                continue
            actual = rng.randrange(estimate + 1)
            admitted.append((clock.now, actual))
            unsettled.append((reservation, actual))
        while unsettled and (len(unsettled) > 5 or rng.random() < 0.5):
            reservation, actual = unsettled.pop(rng.randrange(len(unsettled)))
            await replicas[step % 2].settle(reservation, actual)
    assert refused > 100  # the limits were reached again and again
    assert len(admitted) >= rpm * int((clock.now - START) / 61) // 2  # and room came back
    for start, _ in admitted:
        span = [tokens for moment, tokens in admitted if start <= moment <= start + WINDOW_S]
        assert len(span) <= rpm
        assert sum(span) <= tpm


async def test_settle_corrects_the_second_the_call_was_counted_in(
    limiter: RateLimiter, clock: Clock
) -> None:
    key = Limit("key:settle", tpm=1000)
    clock.now = START + 10.5
    first, _ = await limiter.acquire([key], tokens=600)
    clock.now = START + 30.5
    second, _ = await limiter.acquire([key], tokens=300)
    await limiter.settle(first, actual_tokens=100)  # second 10 now holds 100
    clock.now = START + 70.5
    _, state = await limiter.acquire([key], tokens=0)
    assert state.remaining_tokens == 1000 - 100 - 300
    clock.now = START + 71  # second 10 has left: its 100, not its 600, stops counting
    _, state = await limiter.acquire([key], tokens=0)
    assert state.remaining_tokens == 1000 - 300
    await limiter.settle(second, actual_tokens=50)
    _, state = await limiter.acquire([key], tokens=0)
    assert state.remaining_tokens == 1000 - 50


async def test_retry_after_is_when_enough_seconds_have_left(
    limiter: RateLimiter, clock: Clock
) -> None:
    key = Limit("key:retry", tpm=100)
    for moment, tokens in ((10.5, 40), (20.5, 40), (30.5, 20)):
        clock.now = START + moment
        await limiter.acquire([key], tokens=tokens)
    clock.now = START + 40
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire([key], tokens=50)
    # Second 10 leaving (at 71 s) frees 40 tokens, not enough; second 20 (at 81 s) is.
    assert caught.value.retry_after == pytest.approx(41)
    assert caught.value.headers["x-ratelimit-reset-tokens"] == "41s"
    assert caught.value.headers["x-ratelimit-remaining-tokens"] == "0"
    clock.now = START + 80.9
    with pytest.raises(RateLimited):
        await limiter.acquire([key], tokens=50)
    clock.now = START + 81
    _, state = await limiter.acquire([key], tokens=50)
    assert state.remaining_tokens == 100 - 20 - 50
    assert state.reset_tokens_s == pytest.approx(91 - 81)


async def test_memory_keeps_at_most_one_window_of_seconds(clock: Clock) -> None:
    limiter = MemoryRateLimiter(clock=clock)
    for _ in range(400):
        clock.now += 0.5
        await limiter.acquire([Limit("key:m", rpm=1_000_000)], tokens=1)
    assert len(limiter._windows["key:m"].seconds) == WINDOW_S + 1


async def test_redis_keeps_two_bounded_keys_per_scope(
    redis_pair: tuple[Redis, Redis], redis_prefix: str, clock: Clock
) -> None:
    limiter = RedisRateLimiter(redis_pair[0], redis_prefix, clock=clock)
    limit = Limit("key:r", rpm=1_000_000, tpm=1_000_000_000)
    for _ in range(400):
        clock.now += 0.5
        reservation, state = await limiter.acquire([limit], tokens=3)
        await limiter.settle(reservation, actual_tokens=1)
    assert (state.remaining_requests, state.remaining_tokens) == (
        1_000_000 - 122,
        1_000_000_000 - 121 - 3,
    )
    # The current second's counts and the earlier ones' totals; a field for each of those.
    current, earlier = (f"{redis_prefix}rate:key:r", f"{redis_prefix}rate-s:key:r")
    keys = {key.decode() async for key in redis_pair[0].scan_iter(match=f"{redis_prefix}*")}
    assert keys == {current, earlier}
    assert await redis_pair[0].hlen(current) <= 6
    assert await redis_pair[0].hlen(earlier) <= 2 * WINDOW_S
    for key in keys:
        assert 0 < await redis_pair[0].ttl(key) <= KEY_TTL_S


async def test_a_replica_minutes_ahead_does_not_break_the_window(
    redis_pair: tuple[Redis, Redis], redis_prefix: str
) -> None:
    behind, ahead = Clock(START), Clock(START + 600)
    a = RedisRateLimiter(redis_pair[0], redis_prefix, clock=behind)
    b = RedisRateLimiter(redis_pair[1], redis_prefix, clock=ahead)
    limit = Limit("key:skew", rpm=10, tpm=1000)
    await a.acquire([limit], tokens=100)
    await b.acquire([limit], tokens=200)  # counted in a second ten minutes ahead
    behind.now += 200  # a's own call has left; b's is still ahead of the window
    _, state = await a.acquire([limit], tokens=1)
    assert (state.remaining_requests, state.remaining_tokens) == (8, 1000 - 200 - 1)
