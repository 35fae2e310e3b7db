"""Leases: calls admitted from room reserved in Redis ahead of time (real Redis, two stores
standing for two replicas). Nothing is ever admitted past a limit, the room lent comes back,
and spend is booked exactly."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.api.app import create_app
from gateway.core.errors import RateLimited
from gateway.core.settings import Settings
from gateway.metering.budgets import Budget, BudgetExceeded, RedisBudgetLedger
from gateway.metering.limits import WINDOW_S, Limit, RedisRateLimiter
from gateway.metering.redis_meter import RedisMeterStore
from gateway.metering.stores import Admitted
from gateway.transport.resp import LuaScript, ScriptClient
from tests.conftest import REDIS_URL
from tests.test_redis_meter import FixedClock


class CountingClient(ScriptClient):
    """Counts script calls by script (a NOSCRIPT retry is not a second call)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.calls: dict[bytes, int] = {}

    async def run(self, script: LuaScript, keys: list[str], args: list[Any]) -> Any:
        self.calls[script.sha] = self.calls.get(script.sha, 0) + 1
        return await super().run(script, keys, args)


def script_calls(store: RedisMeterStore) -> int:
    """Admission round trips: calls of the lease script."""
    assert isinstance(store.client, CountingClient)
    return store.client.calls.get(store._lease.sha, 0)


ROOT = Path(__file__).resolve().parent.parent
Stores = tuple[RedisMeterStore, RedisMeterStore, FixedClock]


@pytest.fixture
async def replicas(redis_pair: tuple[Redis, Redis], redis_prefix: str) -> AsyncIterator[Stores]:
    clock = FixedClock()
    stores = [
        RedisMeterStore(
            CountingClient(REDIS_URL),
            RedisBudgetLedger(client, redis_prefix, clock=clock),
            RedisRateLimiter(client, redis_prefix, clock=clock),
            lease_calls=256,
            lease_s=60.0,  # the tests end leases themselves (drain, clock, exhaustion)
            clock=clock,
        )
        for client in redis_pair
    ]
    yield stores[0], stores[1], clock
    for store in stores:
        await store.aclose()


async def counts(store: RedisMeterStore, limit: Limit) -> tuple[int, int]:
    """The (requests, tokens) Redis holds for a scope's window: the current second's and the
    earlier ones' (see LIMITS_LUA)."""
    prepared = store.limiter.prepare_acquire([limit], 0)
    assert prepared is not None
    redis = store.ledger._redis
    r, t, cr, ct = (int(v or 0) for v in await redis.hmget(prepared.keys[0], "r", "t", "cr", "ct"))
    return r + cr, t + ct


async def settle(store: RedisMeterStore, admitted: Admitted, cost: float, tokens: int) -> None:
    reservations = [admitted.reservation] if admitted.reservation is not None else []
    await store.settle(admitted.hold, cost, reservations, tokens)


async def test_most_calls_are_admitted_without_a_round_trip(replicas: Stores) -> None:
    store, _, _ = replicas
    limit = Limit("key:busy", rpm=100_000, tpm=100_000_000)
    remaining = []
    for _ in range(200):
        admitted = await store.admit([], 0.0, [limit], 50)
        assert admitted.state is not None
        remaining.append(admitted.state.remaining_requests)
        await settle(store, admitted, 0.0, 30)
    # Leases of 4, 8, 16, ... calls: a handful of grants, not 200 round trips.
    assert script_calls(store) <= 8
    # The headers still count down one request per call, as a per-call check would.
    assert remaining == list(range(100_000 - 1, 100_000 - 201, -1))
    await store.drain()
    # What the leases lent and did not use came back: Redis holds exactly what was used.
    assert await counts(store, limit) == (200, 200 * 30)


async def test_two_replicas_never_admit_past_a_limit_and_use_all_of_it(replicas: Stores) -> None:
    a, b, _ = replicas
    limit = Limit("key:shared", rpm=300)
    admitted = {"a": 0, "b": 0}
    refused = {"a": 0, "b": 0}
    # Both replicas keep calling until each is refused: room lent to one is used by it.
    while refused["a"] < 3 or refused["b"] < 3:
        for name, store in (("a", a), ("b", b)):
            try:
                one = await store.admit([], 0.0, [limit], 1)
            except RateLimited:
                refused[name] += 1
            else:
                admitted[name] += 1
                await settle(store, one, 0.0, 1)
    assert admitted["a"] + admitted["b"] == 300
    assert min(admitted.values()) > 0
    await a.drain()
    await b.drain()
    assert (await counts(a, limit))[0] == 300


async def test_concurrent_calls_share_one_grant(replicas: Stores) -> None:
    store, _, _ = replicas
    limit = Limit("key:burst", rpm=1_000_000)
    await store.admit([], 0.0, [Limit("key:warm", rpm=10)], 1)  # loads the script
    before = script_calls(store)
    results = await asyncio.gather(*(store.admit([], 0.0, [limit], 1) for _ in range(4)))
    assert len(results) == 4
    assert script_calls(store) - before == 1  # the first lease covers four calls


async def test_budget_spend_is_booked_exactly_and_unused_holds_come_back(replicas: Stores) -> None:
    a, b, _ = replicas
    budget = Budget("key:money", max_usd=10.0, duration="1d")
    spent = 0.0
    for i in range(60):
        store = (a, b)[i % 2]
        one = await store.admit([budget], 0.05, [], 0)  # reserves the worst case, $0.05
        await settle(store, one, 0.01, 0)  # the call really cost $0.01
        spent += 0.01
    # Before the leases end, each replica reports what Redis knows plus its own unbooked spend.
    assert await a.spent(budget) + await b.spent(budget) >= spent - 1e-9
    await a.drain()
    await b.drain()
    assert await a.ledger.spent(budget) == pytest.approx(spent)
    assert await a.spent(budget) == pytest.approx(spent)
    # Every hold was released: all that is left can be reserved in one go.
    await a.ledger.reserve([budget], 10.0 - spent)


async def test_a_budget_is_never_exceeded_by_two_replicas(replicas: Stores) -> None:
    a, b, _ = replicas
    budget = Budget("key:tight", max_usd=1.0)
    spent = 0.0
    refusals = 0
    while refusals < 4:
        for store in (a, b):
            try:
                one = await store.admit([budget], 0.02, [], 0)
            except BudgetExceeded:
                refusals += 1
                continue
            await settle(store, one, 0.02, 0)  # the worst case, every time
            spent += 0.02
    assert spent <= 1.0 + 1e-9
    assert spent == pytest.approx(1.0)  # and all of it was usable
    await a.drain()
    await b.drain()
    assert await a.ledger.spent(budget) == pytest.approx(1.0)


async def test_a_refusal_waits_for_this_replicas_own_lease_to_be_booked(
    replicas: Stores,
) -> None:
    # The first call's lease ends when the second does not fit it; until its record lands,
    # Redis counts its whole $0.60 as held. The refusal waits for it: it then states the
    # spend as spent (not "held by calls in flight"), and a call that fits what the lease
    # gave back is admitted rather than refused.
    store, _, _ = replicas
    budget = Budget("key:booked", max_usd=1.0)
    await settle(store, await store.admit([budget], 0.6, [], 0), 0.5, 0)
    with pytest.raises(BudgetExceeded) as caught:
        await store.admit([budget], 0.6, [], 0)
    assert caught.value.message.startswith(
        "budget exhausted for key:booked: $0.50 of $1.00 spent; this call needs up to $0.60 "
        "and $0.50 is left."
    )
    await store.admit([budget], 0.45, [], 0)


async def test_a_lease_ends_with_its_second_and_when_the_limits_change(replicas: Stores) -> None:
    store, _, clock = replicas
    limit = Limit("key:windows", rpm=1000)
    clock.now = int(clock.now) + 0.25
    await settle(store, await store.admit([], 0.0, [limit], 1), 0.0, 1)
    calls = script_calls(store)
    await settle(store, await store.admit([], 0.0, [limit], 1), 0.0, 1)
    assert script_calls(store) == calls  # from the lease
    # The next second: the lease's room was counted in the last one, which leaves the window
    # a second before calls admitted now must, so the lease cannot admit them.
    clock.now += 1
    fresh = await store.admit([], 0.0, [limit], 1)
    assert script_calls(store) == calls + 1
    assert fresh.state is not None
    # Until the old lease's two unused calls are back, they still count: never fewer.
    assert fresh.state.remaining_requests is not None
    assert fresh.state.remaining_requests <= 1000 - 3
    assert fresh.state.reset_requests_s == pytest.approx(59.75)  # the first second leaves
    stricter = await store.admit([], 0.0, [Limit("key:windows", rpm=500)], 1)
    assert script_calls(store) == calls + 2  # new limits, new lease
    assert stricter.state is not None
    assert stricter.state.limit_requests == 500
    await settle(store, fresh, 0.0, 1)
    await settle(store, stricter, 0.0, 1)
    await store.drain()
    assert await counts(store, limit) == (4, 4)  # exactly the calls admitted


async def test_a_lease_ends_after_its_time_and_books_its_spend(
    redis_pair: tuple[Redis, Redis], redis_prefix: str
) -> None:
    clock = FixedClock()
    store = RedisMeterStore(
        CountingClient(REDIS_URL),
        RedisBudgetLedger(redis_pair[0], redis_prefix, clock=clock),
        RedisRateLimiter(redis_pair[0], redis_prefix, clock=clock),
        lease_calls=256,
        lease_s=0.05,
        clock=clock,
    )
    budget = Budget("key:timed", max_usd=100.0)
    try:
        for _ in range(3):
            await settle(store, await store.admit([budget], 0.5, [], 0), 0.25, 0)
        assert await store.ledger.spent(budget) == 0.0  # still on the lease
        deadline = asyncio.get_running_loop().time() + 5
        while await store.ledger.spent(budget) != pytest.approx(0.75):
            assert asyncio.get_running_loop().time() < deadline, "the lease was never booked"
            await asyncio.sleep(0.02)
    finally:
        await store.aclose()


async def test_a_call_in_flight_keeps_its_lease_open_until_it_settles(replicas: Stores) -> None:
    store, _, _ = replicas
    budget = Budget("key:inflight", max_usd=100.0)
    slow = await store.admit([budget], 1.0, [], 0)
    quick = await store.admit([budget], 1.0, [], 0)
    await settle(store, quick, 0.5, 0)
    await store.drain()  # ends the lease, but one of its calls is still running
    assert await store.ledger.spent(budget) == 0.0
    assert await store.spent(budget) == pytest.approx(0.5)
    await settle(store, slow, 2.0, 0)  # costlier than estimated: booked as it was
    await store.drain()
    assert await store.ledger.spent(budget) == pytest.approx(2.5)


async def test_free_calls_under_a_budget_settle(replicas: Stores) -> None:
    store, _, _ = replicas
    budget = Budget("key:free", max_usd=1.0)
    for _ in range(3):
        await settle(store, await store.admit([budget], 0.0, [], 0), 0.0, 0)
    await store.drain()
    assert await store.ledger.spent(budget) == 0.0
    # Zero-amount holds were released (Redis rejects "-0" increments; none were sent).
    await store.ledger.reserve([budget], 1.0)


def test_lease_setting_reaches_the_redis_store(tmp_path: Path, redis_prefix: str) -> None:
    def store(**settings: Any) -> Any:
        app = create_app(
            Settings(
                config=ROOT / "config" / "gateway.yaml",
                data_dir=tmp_path / "data",
                master_key="mk",
                redis_url=REDIS_URL,
                redis_prefix=redis_prefix,
                **settings,
            )
        )
        return app.state.gateway.meter.store

    assert isinstance(store(), RedisMeterStore)
    assert store().lease_calls == 256
    assert store(meter_lease_calls=1).lease_calls == 1


async def test_two_replicas_with_leases_refuse_a_burst_across_a_minute_boundary(
    replicas: Stores,
) -> None:
    a, b, clock = replicas
    limit = Limit("key:edge", rpm=200)
    clock.now = (clock.now // 60) * 60 + 59.9
    admitted = 0
    for i in range(400):
        try:
            await settle((a, b)[i % 2], await (a, b)[i % 2].admit([], 0.0, [limit], 1), 0.0, 1)
        except RateLimited:
            continue
        admitted += 1
    assert admitted == 200
    clock.now += 0.2  # 60.1 s: a new minute, but not a new window
    for i in range(100):
        with pytest.raises(RateLimited) as caught:
            await (a, b)[i % 2].admit([], 0.0, [limit], 1)
    assert caught.value.retry_after == pytest.approx(59.9)  # when second 59 leaves
    clock.now += 59.899
    with pytest.raises(RateLimited):
        await a.admit([], 0.0, [limit], 1)
    clock.now += 0.001  # 120 s
    for i in range(200):
        await settle((a, b)[i % 2], await (a, b)[i % 2].admit([], 0.0, [limit], 1), 0.0, 1)


async def test_leases_on_two_replicas_keep_every_60_second_span_within_rpm_and_tpm(
    replicas: Stores,
) -> None:
    """Random bursts on two replicas admitting from leases, settles early and late: in every
    60-second span starting at an admission, requests and (settled) tokens fit the limits."""
    a, b, clock = replicas
    rpm, tpm = 200, 8_000
    limits = [Limit("key:span", rpm=rpm, tpm=tpm)]
    rng = random.Random(7)
    admitted: list[tuple[float, int]] = []
    refused: dict[str, int] = {"requests": 0, "tokens": 0}
    from_leases = 0
    unsettled: list[tuple[RedisMeterStore, Admitted, int]] = []
    clock.now = (clock.now // 60) * 60 + 0.3
    start = clock.now
    for step in range(800):
        clock.now += rng.choice((0.0, 0.0, 0.0, 0.01, 0.02, 0.3, 0.7, 1.0, 3.0))
        for _ in range(rng.randrange(7)):
            store = rng.choice((a, b))
            # Phases of small and large calls: the RPM binds in one, the TPM in the other.
            estimate = rng.randrange(5, 40) if step // 100 % 2 else rng.randrange(100, 300)
            trips = script_calls(store)
            try:
                one = await store.admit([], 0.0, limits, estimate)
            except RateLimited as exc:
                refused["requests" if "requests per minute" in exc.message else "tokens"] += 1
                continue
            from_leases += script_calls(store) == trips
            actual = rng.randrange(estimate + 1)
            admitted.append((clock.now, actual))
            unsettled.append((store, one, actual))
        while unsettled and (len(unsettled) > 20 or rng.random() < 0.6):
            store, one, actual = unsettled.pop(rng.randrange(len(unsettled)))
            await settle(store, one, 0.0, actual)
        await asyncio.sleep(0)  # lets queued give-backs go out now and then
    assert min(refused.values()) > 10  # both limits were reached again and again
    assert from_leases > 100  # leases lent room, and calls were admitted from it
    assert len(admitted) >= rpm * int((clock.now - start) / 61) // 2  # and room came back
    for moment, _ in admitted:
        span = [tokens for when, tokens in admitted if moment <= when <= moment + WINDOW_S]
        assert len(span) <= rpm
        assert sum(span) <= tpm
