"""Rate limits, in memory and in a real Redis (two clients standing for two replicas)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.errors import RateLimited, UpstreamUnavailable
from gateway.metering.limits import (
    WINDOW_S,
    Limit,
    MemoryRateLimiter,
    RateLimiter,
    RateState,
    RedisRateLimiter,
)

START = 1_800_000_000.0  # a window boundary: START % 60 == 0


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
    assert error.message == (
        "rate limit reached for key:abc: 2 requests per minute; retry in 47.5 s"
    )
    assert error.retry_after == pytest.approx(47.5)
    assert error.headers["retry-after"] == "48"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"


async def test_a_refusal_counts_nothing_in_any_scope(limiter: RateLimiter) -> None:
    key, team = Limit("key:a", rpm=10, tpm=1000), Limit("team:t", rpm=1)
    await limiter.acquire([key, team], tokens=100)
    with pytest.raises(RateLimited, match="team:t: 1 requests per minute"):
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


async def test_a_new_window_starts_from_zero(limiter: RateLimiter, clock: Clock) -> None:
    key = Limit("key:w", rpm=1, tpm=100)
    reservation, _ = await limiter.acquire([key], tokens=100)
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire([key], tokens=1)
    clock.now += caught.value.retry_after or 0
    _, state = await limiter.acquire([key], tokens=10)
    assert (state.remaining_requests, state.remaining_tokens) == (0, 90)
    assert state.reset_requests_s == WINDOW_S
    # A late settle belongs to its own (finished) window and leaves this one alone.
    await limiter.settle(reservation, actual_tokens=1000)
    clock.now += 1
    with pytest.raises(RateLimited, match="requests per minute"):
        await limiter.acquire([key], tokens=10)
    _, state = await limiter.acquire([Limit("key:w", tpm=100)], tokens=10)
    assert state.remaining_tokens == 80


async def test_state_reports_the_most_restrictive_limit(limiter: RateLimiter) -> None:
    limits = [
        Limit("key:k", rpm=10, tpm=50),
        Limit("team:t", rpm=3, tpm=1000),
        Limit("deployment:d", rpm=None, tpm=None),
    ]
    _, state = await limiter.acquire(limits, tokens=20)
    assert state == RateState(3, 2, 47.5, 50, 30, 47.5)


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
    assert RateState(limit_requests=5, reset_requests_s=12.34).headers() == {
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-reset-requests": "12.3s",
    }
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
        with pytest.raises(UpstreamUnavailable, match=r"rate limit store \(Redis\) is unreachable"):
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
