"""Budgets, in memory and in a real Redis (two clients standing for two replicas)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.core.errors import MeterUnavailable
from gateway.metering.budgets import (
    HOLD_TTL_S,
    KEEP_AFTER_END_S,
    Budget,
    BudgetExceeded,
    BudgetLedger,
    MemoryBudgetLedger,
    RedisBudgetLedger,
    parse_duration,
    period_bounds,
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, text: str) -> None:
        self.now = at(text).timestamp()


@pytest.fixture
def clock() -> Clock:
    # Far ahead: Redis expires a period's keys by the wall clock, a day after it ends.
    return Clock(at("2096-11-27T12:00:00"))


@pytest.fixture(params=["memory", "redis"])
def replicas(request: pytest.FixtureRequest, clock: Clock) -> list[BudgetLedger]:
    """Two ledgers that must agree: one shared object in memory, two clients on Redis."""
    if request.param == "memory":
        one = MemoryBudgetLedger(clock=clock)
        return [one, one]
    clients: tuple[Redis, Redis] = request.getfixturevalue("redis_pair")
    redis_prefix: str = request.getfixturevalue("redis_prefix")
    return [RedisBudgetLedger(client, redis_prefix, clock=clock) for client in clients]


@pytest.fixture
def ledger(replicas: list[BudgetLedger]) -> BudgetLedger:
    return replicas[0]


@pytest.mark.parametrize(
    ("duration", "now", "period_id", "start", "end"),
    [
        ("30s", "2026-11-27T12:00:45", "30s@2026-11-27T12:00:30Z", "12:00:30", "12:01:00"),
        ("5m", "2026-11-27T12:07:00", "5m@2026-11-27T12:05:00Z", "12:05:00", "12:10:00"),
        ("1h", "2026-11-27T12:59:59", "1h@2026-11-27T12:00:00Z", "12:00:00", "13:00:00"),
        ("1d", "2026-11-27T23:59:59", "1d@2026-11-27T00:00:00Z", "00:00:00", "2026-11-28"),
        ("1mo", "2026-12-31T23:00:00", "1mo@2026-12-01T00:00:00Z", "2026-12-01", "2027-01-01"),
        ("3mo", "2026-11-27T12:00:00", "3mo@2026-10-01T00:00:00Z", "2026-10-01", "2027-01-01"),
    ],
)
def test_period_bounds(duration: str, now: str, period_id: str, start: str, end: str) -> None:
    def moment(text: str) -> datetime:
        return at(text if "-" in text else f"{now[:10]}T{text}")

    assert period_bounds(duration, at(now)) == (period_id, moment(start), moment(end))


def test_period_bounds_for_many_days_align_to_the_epoch() -> None:
    period_id, start, end = period_bounds("30d", at("2026-11-27T12:00:00"))
    assert start is not None
    assert end is not None
    assert start.timestamp() % (30 * 86_400) == 0
    assert start <= at("2026-11-27T12:00:00") < end == start + timedelta(days=30)
    assert period_id == f"30d@{start:%Y-%m-%dT%H:%M:%SZ}"


def test_total_budget_and_naive_times() -> None:
    assert period_bounds(None, at("2026-11-27T12:00:00")) == ("total", None, None)
    naive = datetime(2026, 11, 27, 12)
    assert period_bounds("1d", naive) == period_bounds("1d", at("2026-11-27T12:00:00"))


@pytest.mark.parametrize("bad", ["x", "1w", "0d", "1.5h", "", " 1d", "-1d", "1 d", "1D"])
def test_bad_durations_are_refused_clearly(bad: str) -> None:
    expected = f"budget_duration must look like 30s, 5m, 1h, 1d or 1mo, not {bad!r}"
    with pytest.raises(ValueError, match=expected.replace(".", r"\.")):
        parse_duration(bad)
    with pytest.raises(ValueError, match="budget_duration must look like"):
        period_bounds(bad, at("2096-11-27T12:00:00"))


def test_parse_duration_accepts_litellm_values() -> None:
    for good in [None, "30s", "5m", "1h", "1d", "30d", "1mo", "12mo"]:
        parse_duration(good)
    with pytest.raises(ValueError, match="longer than 100 years"):
        parse_duration("2000mo")


async def test_reserve_holds_money_until_settled(ledger: BudgetLedger) -> None:
    budget = Budget("key:k", max_usd=1.0, duration="1d")
    first = await ledger.reserve([budget], 0.3)
    await ledger.reserve([budget], 0.7)
    assert await ledger.spent(budget) == 0.0
    with pytest.raises(BudgetExceeded):
        await ledger.reserve([budget], 0.01)
    await ledger.settle(first, 0.1)
    assert await ledger.spent(budget) == pytest.approx(0.1)
    await ledger.reserve([budget], 0.2)
    with pytest.raises(BudgetExceeded):
        await ledger.reserve([budget], 0.000001)


async def test_exceeded_names_the_budget_spend_and_reset(ledger: BudgetLedger) -> None:
    budget = Budget("key:abc", max_usd=0.01, duration="1d")
    await ledger.settle(await ledger.reserve([budget], 0.01), 0.01)
    with pytest.raises(BudgetExceeded) as caught:
        await ledger.reserve([budget], 0.001)
    error = caught.value
    assert error.message == (
        "budget exhausted for key:abc: $0.01 of $0.01 spent; this call needs up to $0.001 and "
        "$0 is left. The 1d budget resets at 2096-11-28T00:00:00Z: retry then, or ask the "
        "gateway's admin to raise it."
    )
    # No retry can fix it before the reset: the OpenAI SDK is told not to try.
    assert error.headers == {"x-should-retry": "false"}
    assert (error.status, error.type, error.code) == (
        429,
        "insufficient_quota",
        "insufficient_quota",
    )
    assert error.body()["error"]["type"] == "insufficient_quota"


async def test_exceeded_counts_calls_in_flight(ledger: BudgetLedger) -> None:
    budget = Budget("team:t", max_usd=1.0)
    await ledger.reserve([budget], 0.6)
    with pytest.raises(BudgetExceeded) as caught:
        await ledger.reserve([budget], 0.5)
    assert caught.value.message == (
        "budget exhausted for team:t: $0 of $1.00 spent, $0.60 held by calls in flight; this "
        "call needs up to $0.50 and $0.40 is left. It is a total budget that never resets: "
        "ask the gateway's admin to raise it."
    )
    assert caught.value.room_nano == 400_000_000


async def test_exceeded_shows_small_amounts_to_the_nano_dollar(ledger: BudgetLedger) -> None:
    budget = Budget("key:tiny", max_usd=0.00002)
    await ledger.settle(await ledger.reserve([budget], 0.00002), 0.0000123456)
    with pytest.raises(BudgetExceeded) as caught:
        await ledger.reserve([budget], 0.00001)
    assert caught.value.message.startswith(
        "budget exhausted for key:tiny: $0.000012346 of $0.00002 spent; this call needs up "
        "to $0.00001 and $0.000007654 is left."
    )


async def test_a_refusal_reserves_nothing_anywhere(ledger: BudgetLedger) -> None:
    key, team = Budget("key:k", 1.0, "1d"), Budget("team:t", 0.5, "1d")
    await ledger.reserve([key, team], 0.4)
    with pytest.raises(BudgetExceeded, match="team:t"):
        await ledger.reserve([key, team], 0.2)
    # Had the refused call held $0.20 of the key's budget, this would not fit.
    await ledger.reserve([key], 0.6)


async def test_reservations_are_exact_under_concurrency(replicas: list[BudgetLedger]) -> None:
    budget = Budget("team:t", max_usd=0.25, duration="1d")

    async def attempt(index: int) -> bool:
        try:
            await replicas[index % 2].reserve([budget], 0.01)
        except BudgetExceeded:
            return False
        return True

    results = await asyncio.gather(*(attempt(i) for i in range(100)))
    assert sum(results) == 25


async def test_settling_twice_counts_once(ledger: BudgetLedger) -> None:
    budget = Budget("key:k", max_usd=1.0)
    hold = await ledger.reserve([budget], 0.5)
    await ledger.settle(hold, 0.25)
    await ledger.settle(hold, 0.25)
    assert await ledger.spent(budget) == pytest.approx(0.25)
    await ledger.reserve([budget], 0.75)


async def test_empty_budgets_give_a_no_op_hold(ledger: BudgetLedger) -> None:
    hold = await ledger.reserve([], 100.0)
    await ledger.settle(hold, 100.0)


async def test_a_new_day_starts_from_zero(ledger: BudgetLedger, clock: Clock) -> None:
    budget = Budget("key:k", max_usd=0.01, duration="1d")
    await ledger.settle(await ledger.reserve([budget], 0.01), 0.01)
    late = await ledger.reserve([Budget("key:k", max_usd=1.0, duration="1d")], 0.0)
    clock.set("2096-11-28T00:00:00")
    assert await ledger.spent(budget) == 0.0
    hold = await ledger.reserve([budget], 0.01)
    # A call that started yesterday is booked to yesterday.
    await ledger.settle(late, 0.5)
    assert await ledger.spent(budget) == 0.0
    await ledger.settle(hold, 0.01)
    assert await ledger.spent(budget) == pytest.approx(0.01)


async def test_a_new_month_starts_from_zero(ledger: BudgetLedger, clock: Clock) -> None:
    budget = Budget("key:k", max_usd=0.01, duration="1mo")
    clock.set("2096-11-01T00:00:00")
    await ledger.settle(await ledger.reserve([budget], 0.01), 0.01)
    clock.set("2096-11-30T23:59:59")
    with pytest.raises(BudgetExceeded, match="resets at 2096-12-01T00:00:00Z"):
        await ledger.reserve([budget], 0.01)
    clock.set("2096-12-01T00:00:00")
    await ledger.reserve([budget], 0.01)


async def test_a_total_budget_never_resets(ledger: BudgetLedger, clock: Clock) -> None:
    budget = Budget("key:k", max_usd=0.01)
    await ledger.settle(await ledger.reserve([budget], 0.01), 0.01)
    clock.set("2106-11-27T12:00:00")
    assert await ledger.spent(budget) == pytest.approx(0.01)
    with pytest.raises(BudgetExceeded, match="never resets"):
        await ledger.reserve([budget], 0.01)


async def test_seed_only_fills_a_fresh_period(ledger: BudgetLedger, clock: Clock) -> None:
    budget = Budget("key:k", max_usd=1.0, duration="1d")
    await ledger.seed(budget, 0.4)
    await ledger.seed(budget, 0.9)
    assert await ledger.spent(budget) == pytest.approx(0.4)
    clock.set("2096-11-28T00:00:00")
    assert await ledger.spent(budget) == 0.0

    settled = Budget("key:other", max_usd=1.0, duration="1d")
    await ledger.settle(await ledger.reserve([settled], 0.1), 0.1)
    await ledger.seed(settled, 0.5)
    assert await ledger.spent(settled) == pytest.approx(0.1)


async def test_an_unsettled_hold_is_released_after_its_ttl(
    ledger: BudgetLedger, clock: Clock
) -> None:
    budget = Budget("key:k", max_usd=1.0, duration="1d")
    lost = await ledger.reserve([budget], 1.0)
    with pytest.raises(BudgetExceeded):
        await ledger.reserve([budget], 0.5)
    clock.now += HOLD_TTL_S + 1
    await ledger.reserve([budget], 0.5)
    # Its spend still counts when it settles late, and its hold is not released twice.
    await ledger.settle(lost, 0.3)
    await ledger.reserve([budget], 0.2)
    with pytest.raises(BudgetExceeded):
        await ledger.reserve([budget], 0.01)


async def test_redis_keys_expire_a_day_after_their_period(
    redis_pair: tuple[Redis, Redis], redis_prefix: str, clock: Clock
) -> None:
    redis = redis_pair[0]
    ledger = RedisBudgetLedger(redis, redis_prefix, clock=clock)
    daily, total = Budget("key:k", 1.0, "1d"), Budget("key:k", 1.0)
    await ledger.settle(await ledger.reserve([daily, total], 0.1), 0.1)
    daily_key = f"{redis_prefix}budget:key:k:1d@2096-11-27T00:00:00Z"
    assert await redis.hget(daily_key, "spent") == b"100000000"
    expected = at("2096-11-28T00:00:00").timestamp() + KEEP_AFTER_END_S
    assert await redis.expiretime(daily_key) == expected
    assert await redis.ttl(f"{redis_prefix}budget:key:k:total") == -1


@pytest.fixture
async def dead_redis() -> AsyncIterator[Redis]:
    # No client retries: the default policy would spend seconds on every refused connect.
    client = Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    yield client
    await client.aclose()


async def test_unreachable_redis_fails_closed_by_default(dead_redis: Redis) -> None:
    ledger = RedisBudgetLedger(dead_redis, "test:")
    with pytest.raises(MeterUnavailable, match=r"store \(Redis\) is unreachable"):
        await ledger.reserve([Budget("key:k", 1.0)], 0.1)
    with pytest.raises(MeterUnavailable):
        await ledger.spent(Budget("key:k", 1.0))


async def test_unreachable_redis_fails_open_when_asked(dead_redis: Redis) -> None:
    ledger = RedisBudgetLedger(dead_redis, "test:", fail_open=True)
    budget = Budget("key:k", 0.01)
    for _ in range(3):
        hold = await ledger.reserve([budget], 1.0)
        await ledger.settle(hold, 1.0)
    await ledger.seed(budget, 0.5)
    assert await ledger.spent(budget) == 0.0
