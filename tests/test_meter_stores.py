"""Both meter stores admit all or nothing: in process and in Redis alike."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway.core.errors import RateLimited
from gateway.metering.budgets import Budget, BudgetExceeded, MemoryBudgetLedger, RedisBudgetLedger
from gateway.metering.limits import Limit, MemoryRateLimiter, RedisRateLimiter
from gateway.metering.redis_meter import RedisMeterStore
from gateway.metering.stores import LocalMeterStore, MeterStore
from gateway.transport.resp import ScriptClient
from tests.conftest import REDIS_URL

BUDGET = Budget("key:k", max_usd=1.0)
LIMIT = Limit("key:k", rpm=3, tpm=1000)


@pytest.fixture(params=["local", "redis"])
async def store(
    request: pytest.FixtureRequest, redis_pair: tuple[Redis, Redis], redis_prefix: str
) -> AsyncIterator[MeterStore]:
    one: MeterStore
    if request.param == "local":
        one = LocalMeterStore(MemoryBudgetLedger(), MemoryRateLimiter())
    else:
        client, prefix = redis_pair[0], redis_prefix
        one = RedisMeterStore(
            ScriptClient(REDIS_URL),
            RedisBudgetLedger(client, prefix),
            RedisRateLimiter(client, prefix),
        )
    yield one
    await one.aclose()


async def test_a_limit_refusal_holds_no_budget(store: MeterStore) -> None:
    with pytest.raises(RateLimited, match="request too large for key:k"):
        await store.admit([BUDGET], 0.6, [LIMIT], 5000)
    admitted = await store.admit([BUDGET], 1.0, [LIMIT], 10)  # the whole budget is still there
    assert admitted.hold is not None
    assert admitted.state is not None
    assert admitted.state.remaining_requests == 2


async def test_a_budget_refusal_counts_no_request(store: MeterStore) -> None:
    with pytest.raises(BudgetExceeded):
        await store.admit([BUDGET], 2.0, [LIMIT], 10)
    for _ in range(3):
        await store.admit([BUDGET], 0.1, [LIMIT], 10)
    with pytest.raises(RateLimited, match="3 requests per minute"):
        await store.admit([BUDGET], 0.1, [LIMIT], 10)


async def test_settling_releases_the_hold_and_counts_the_spend(store: MeterStore) -> None:
    admitted = await store.admit([BUDGET], 0.9, [LIMIT], 500)
    assert admitted.reservation is not None
    await store.settle(admitted.hold, 0.2, [admitted.reservation], 100)
    if isinstance(store, RedisMeterStore):
        await store.drain()
    assert await store.ledger.spent(BUDGET) == pytest.approx(0.2)
    after = await store.admit([BUDGET], 0.8, [LIMIT], 900)  # 0.2 + 0.8 fits; 100 + 900 fits
    assert after.state is not None
    assert after.state.remaining_tokens == 0
