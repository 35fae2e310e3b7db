"""Budgets and limits admitted in one Redis round trip and settled in batches (real Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.core.errors import MeterUnavailable
from gateway.metering.budgets import Budget, RedisBudgetLedger
from gateway.metering.limits import Limit, RedisGuard, RedisRateLimiter
from gateway.metering.redis_meter import RedisMeterStore
from gateway.transport.resp import ConnectionLost, ScriptClient
from tests.conftest import REDIS_URL, free_port


class FixedClock:
    def __init__(self) -> None:
        # Far ahead: Redis expires a period's keys by the wall clock, a day after it ends.
        self.now = 4_000_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def parts(
    redis_pair: tuple[Redis, Redis], redis_prefix: str
) -> AsyncIterator[tuple[RedisMeterStore, RedisBudgetLedger, RedisRateLimiter]]:
    client = redis_pair[0]
    clock = FixedClock()
    ledger = RedisBudgetLedger(client, redis_prefix, clock=clock)
    limiter = RedisRateLimiter(client, redis_prefix, clock=clock)
    store = RedisMeterStore(CountingClient(REDIS_URL), ledger, limiter)
    yield store, ledger, limiter
    await store.aclose()


class CountingClient(ScriptClient):
    """Counts the commands sent: each is one round trip, pipelined or not."""

    commands = 0

    async def _command(self, *args: Any) -> Any:
        self.commands += 1
        return await super()._command(*args)


def script_calls(store: RedisMeterStore) -> int:
    assert isinstance(store.client, CountingClient)
    return store.client.commands


BUDGET = Budget("key:k", max_usd=1.0, duration="1d")
LIMIT = Limit("key:k", rpm=5, tpm=1000)


async def test_admission_is_one_round_trip_for_budgets_and_limits(parts: Any) -> None:
    store, _ledger, _limiter = parts
    await store.admit([BUDGET], 0.1, [LIMIT], 100)  # loads the script
    before = script_calls(store)
    admitted = await store.admit([BUDGET], 0.1, [LIMIT, Limit("team:t", rpm=50)], 100)
    assert script_calls(store) - before == 1
    assert admitted.hold is not None
    assert admitted.reservation is not None
    assert admitted.state is not None
    assert admitted.state.remaining_requests == 3  # the key's 5 rpm, two used
    assert admitted.state.remaining_tokens == 800


async def test_budgets_alone_limits_alone_or_neither(parts: Any) -> None:
    store, _ledger, _limiter = parts
    only_budget = await store.admit([BUDGET], 0.1, [], 100)
    assert only_budget.hold is not None
    assert only_budget.reservation is None
    only_limit = await store.admit([], 0.0, [LIMIT], 100)
    assert only_limit.hold is None
    assert only_limit.state is not None
    assert only_limit.state.remaining_requests == 4
    nothing = await store.admit([], 0.0, [], 100)
    assert nothing.hold is None
    assert nothing.reservation is None


async def test_settles_are_batched_and_all_land(parts: Any) -> None:
    store, ledger, limiter = parts
    budget = Budget("key:many", max_usd=100.0)
    limit = Limit("key:many", tpm=1_000_000)
    admitted = [await store.admit([budget], 0.5, [limit], 1000) for _ in range(40)]
    warm = await store.admit([], 0.0, [limit], 5)
    assert warm.reservation is not None
    await store.settle(None, 0.0, [warm.reservation], 0)
    await store.drain()  # Redis now knows the settle script: no EVAL fallback below
    before = script_calls(store)
    for one in admitted:
        assert one.reservation is not None
        await store.settle(one.hold, 0.25, [one.reservation], 10)
    await store.drain()
    # All forty were queued before the flush ran: one script call carries them.
    assert script_calls(store) - before == 1
    assert await ledger.spent(budget) == pytest.approx(10.0)
    # Every hold was released: the rest of the budget can be reserved in one go.
    await ledger.reserve([budget], 90.0)
    state = (await limiter.acquire([limit], 1))[1]
    assert state.remaining_tokens == 1_000_000 - 40 * 10 - 1


async def test_settling_twice_or_with_nothing_to_do_sends_nothing(parts: Any) -> None:
    store, ledger, _limiter = parts
    one = await store.admit([BUDGET], 0.1, [LIMIT], 100)
    assert one.reservation is not None
    await store.settle(one.hold, 0.1, [one.reservation], 100)
    await store.drain()
    before = script_calls(store)
    await store.settle(one.hold, 0.1, [one.reservation], 100)
    await store.settle(None, 0.0, [], 0)
    await store.drain()
    assert script_calls(store) == before
    assert await ledger.spent(BUDGET) == pytest.approx(0.1)


async def test_drain_waits_for_a_flush_in_flight(parts: Any) -> None:
    store, ledger, _ = parts
    holds = [await store.admit([BUDGET], 0.01, [], 0) for _ in range(3)]
    for one in holds:
        await store.settle(one.hold, 0.01, [], 0)
    await asyncio.sleep(0)  # the flush has started
    await store.drain()
    assert await ledger.spent(BUDGET) == pytest.approx(0.03)


async def test_a_dropped_connection_fails_its_calls_without_pausing_the_next() -> None:
    guard = RedisGuard("budget store", fail_open=False)
    attempts = 0

    async def dropped() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionLost("connection to Redis lost: reset")

    async def refused() -> None:
        nonlocal attempts
        attempts += 1
        raise RedisConnectionError("cannot connect to Redis at 127.0.0.1:1")

    for _ in range(2):
        with pytest.raises(MeterUnavailable) as refused_call:
            await guard.run(dropped)
        assert "connection to Redis lost" in str(refused_call.value.detail)
    assert attempts == 2  # each call tried Redis
    for _ in range(2):
        with pytest.raises(MeterUnavailable) as refused_call:
            await guard.run(refused)
        assert "cannot connect" in str(refused_call.value.detail)
        assert "127.0.0.1" not in refused_call.value.message  # the address is for the log
    assert attempts == 3  # an unreachable Redis is probed once a second, not on every call


async def test_start_connects_before_the_first_call(
    parts: Any, redis_pair: tuple[Redis, Redis]
) -> None:
    # Opened inside a burst of calls, the handshake would wait behind them (and could time
    # out, refusing metered calls for a second): the store connects at startup instead.
    store, _ledger, _limiter = parts
    before = len(await redis_pair[1].client_list())
    await store.start()
    assert len(await redis_pair[1].client_list()) == before + 1
    await store.admit([BUDGET], 0.1, [LIMIT], 100)
    assert len(await redis_pair[1].client_list()) == before + 1


async def test_start_against_an_unreachable_redis_logs_and_carries_on(
    redis_pair: tuple[Redis, Redis], redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    dead = ScriptClient(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.5)
    ledger = RedisBudgetLedger(redis_pair[0], redis_prefix)
    store = RedisMeterStore(dead, ledger, RedisRateLimiter(redis_pair[0], redis_prefix))
    await store.start()
    assert "not reachable at startup: cannot connect to Redis at 127.0.0.1" in caplog.text
    with pytest.raises(MeterUnavailable):  # calls are refused, as when Redis goes away
        await store.admit([BUDGET], 0.1, [], 100)
    await store.aclose()
