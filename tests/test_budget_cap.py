"""A call whose worst case does not fit what its budget has left gets a lower max_tokens instead
of a refusal (gateway.cap_max_tokens_to_budget), over every meter store: in process, Redis call
by call, and Redis with leases. Only a call that cannot have even MIN_CAPPED_TOKENS is refused,
and concurrent capped calls still never hold more than the budget."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.core.config import GatewayConfig
from gateway.identity.auth import Caller
from gateway.identity.keys import KeyRecord, TeamRecord
from gateway.metering.budgets import (
    NANO,
    Budget,
    BudgetExceeded,
    MemoryBudgetLedger,
    RedisBudgetLedger,
    format_usd,
)
from gateway.metering.limits import MemoryRateLimiter, RedisRateLimiter
from gateway.metering.meter import MIN_CAPPED_TOKENS, Meter, TokenCap
from gateway.metering.prices import PriceTable
from gateway.metering.redis_meter import RedisMeterStore
from gateway.metering.stores import LocalMeterStore, MeterStore
from gateway.providers import build_deployments
from gateway.transport.resp import ScriptClient
from tests.conftest import REDIS_URL

# $1 per million prompt tokens, $10 per million completion tokens (gpt-4o's order).
INPUT, OUTPUT = 1e-6, 1e-5
BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
SIZE = 60  # the body's bytes, as the pipeline measures them: 46 prompt tokens reserved
PROMPT = SIZE // 2 + 16


def caller(key_budget: float | None, team_budget: float | None = None) -> Caller:
    team = TeamRecord("t", max_budget=team_budget) if team_budget is not None else None
    key = KeyRecord("k", "hash", "gw-", team="t" if team else None, max_budget=key_budget)
    return Caller("k", False, key, team)


def meter(store: MeterStore, *, cap: bool = True, default_max_tokens: int = 4096) -> Meter:
    entry = {
        "model_name": "m",
        "litellm_params": {"model": "openai/x"},
        "model_info": {"input_cost_per_token": INPUT, "output_cost_per_token": OUTPUT},
    }
    deployments = build_deployments(GatewayConfig.model_validate({"model_list": [entry]}))
    prices = PriceTable.for_deployments(deployments)
    return Meter(
        store, prices, {"m": deployments}, default_max_tokens, cap_max_tokens_to_budget=cap
    )


def cost(completion_tokens: int, prompt: int = PROMPT) -> float:
    return prompt * INPUT + completion_tokens * OUTPUT


@pytest.fixture(params=["memory", "redis", "redis-leased"])
async def store(
    request: pytest.FixtureRequest, redis_pair: tuple[Redis, Redis], redis_prefix: str
) -> AsyncIterator[MeterStore]:
    one: MeterStore
    if request.param == "memory":
        one = LocalMeterStore(MemoryBudgetLedger(), MemoryRateLimiter())
    else:
        client = redis_pair[0]
        one = RedisMeterStore(
            ScriptClient(REDIS_URL),
            RedisBudgetLedger(client, redis_prefix),
            RedisRateLimiter(client, redis_prefix),
            lease_calls=1 if request.param == "redis" else 256,
        )
    yield one
    await one.aclose()


async def test_a_call_that_fits_is_not_capped(store: MeterStore) -> None:
    admission = await meter(store).admit(caller(1.0), ["m"], BODY, SIZE)
    assert admission.cap is None
    assert "x-gateway-max-tokens-capped" not in admission.headers()
    assert admission.hold is not None
    assert admission.hold.amount_nano == round(cost(4096) * NANO)


async def test_a_call_without_max_tokens_is_capped_to_what_is_left(store: MeterStore) -> None:
    # $0.01 covers the prompt and 995 completion tokens, not the default 4,096 ($0.041).
    admission = await meter(store).admit(caller(0.01), ["m"], BODY, SIZE)
    fit = int((0.01 - PROMPT * INPUT) / OUTPUT)
    assert admission.cap == TokenCap(tokens=fit, original=4096)
    assert admission.tokens == PROMPT + fit
    assert admission.hold is not None
    assert admission.hold.amount_nano <= 0.01 * NANO
    headers = admission.headers()
    assert headers["x-gateway-max-tokens-capped"] == str(fit)
    assert headers["x-gateway-max-tokens-original"] == "4096"


async def test_the_callers_own_limit_and_n_are_capped_per_choice(store: MeterStore) -> None:
    body = {**BODY, "max_completion_tokens": 1000, "n": 4}
    admission = await meter(store).admit(caller(0.01), ["m"], body, SIZE)
    fit = int((0.01 - PROMPT * INPUT) / (4 * OUTPUT))
    assert admission.cap == TokenCap(tokens=fit, original=1000)
    assert admission.tokens == PROMPT + 4 * fit


async def test_a_team_budget_caps_as_a_key_budget_does(store: MeterStore) -> None:
    # The key's budget refuses first and is capped to; the team's, smaller, then caps further.
    admission = await meter(store).admit(caller(0.02, team_budget=0.005), ["m"], BODY, SIZE)
    fit = int((0.005 - PROMPT * INPUT) / OUTPUT)
    assert admission.cap == TokenCap(tokens=fit, original=4096)


async def test_a_call_is_refused_when_not_even_the_floor_fits(store: MeterStore) -> None:
    budget = cost(MIN_CAPPED_TOKENS) - 1e-9  # one nano-dollar short of prompt + 16 tokens
    with pytest.raises(BudgetExceeded) as caught:
        await meter(store).admit(caller(budget), ["m"], BODY, SIZE)
    error = caught.value
    assert error.headers["x-should-retry"] == "false"
    assert error.message == (
        f"budget exhausted for key:k: $0 of {format_usd(budget)} spent; this call needs at "
        f"least {format_usd(cost(MIN_CAPPED_TOKENS))} (its prompt, estimated at up to "
        f"{PROMPT} tokens, and {MIN_CAPPED_TOKENS} completion tokens) and "
        f"{format_usd(budget)} is left. Set max_tokens to {MIN_CAPPED_TOKENS - 1} or less to "
        f"fit. It is a total budget that never resets: ask the gateway's admin to raise it."
    )


async def test_with_capping_off_the_refusal_says_which_max_tokens_fits(store: MeterStore) -> None:
    with pytest.raises(BudgetExceeded) as caught:
        await meter(store, cap=False).admit(caller(0.01), ["m"], BODY, SIZE)
    fit = int((0.01 - PROMPT * INPUT) / OUTPUT)
    assert caught.value.message == (
        f"budget exhausted for key:k: $0 of $0.01 spent; this call needs up to "
        f"{format_usd(cost(4096))} (its prompt, estimated at up to {PROMPT} tokens, and 4096 "
        f"completion tokens) and $0.01 is left. Set max_tokens to {fit} or less to fit. It is "
        f"a total budget that never resets: ask the gateway's admin to raise it."
    )


async def test_embeddings_are_never_capped(store: MeterStore) -> None:
    body = {"model": "m", "input": "x" * 30_000}  # 15,016 tokens: $0.015
    with pytest.raises(BudgetExceeded, match=r"its input, estimated at up to 15016 tokens\)"):
        await meter(store).admit(caller(0.01), ["m"], body, 30_000, completion=False)


async def test_concurrent_capped_calls_never_hold_more_than_the_budget(
    store: MeterStore,
) -> None:
    # 200 calls at once, none with max_tokens, against $0.05: each is admitted whole, capped
    # to what was left when it arrived, or refused; settled at its worst case, the spend
    # reaches the budget and never passes it.
    metered = meter(store)
    who = caller(0.05)

    async def one() -> Any:
        try:
            admission = await metered.admit(who, ["m"], BODY, SIZE)
        except BudgetExceeded:
            return None
        await asyncio.sleep(0.01)
        assert admission.hold is not None
        await metered.settle(admission, None, admission.hold.amount_nano / NANO)
        return admission

    admitted = [a for a in await asyncio.gather(*(one() for _ in range(200))) if a is not None]
    if isinstance(store, RedisMeterStore):
        await store.drain()
    spent = await store.spent(Budget("key:k", 0.05))
    assert all(a.cap is None or a.cap.tokens >= MIN_CAPPED_TOKENS for a in admitted)
    assert any(a.cap is not None for a in admitted)
    assert spent <= 0.05 + 1e-12
    # What is left cannot hold even the smallest call: the budget was used up, not wasted.
    assert 0.05 - spent < cost(MIN_CAPPED_TOKENS)


@pytest.mark.parametrize(
    ("usd", "shown"),
    [
        (0.0, "$0"),
        (0.01, "$0.01"),
        (1.0, "$1.00"),
        (12.5, "$12.50"),
        (1234.5678, "$1234.57"),
        (0.000012, "$0.000012"),
        (0.0000123456, "$0.000012346"),  # to the nano-dollar, as budgets are counted
        (0.00995, "$0.00995"),
        (0.041006, "$0.041006"),
        (0.0099996, "$0.0099996"),
        (0.000205999, "$0.000205999"),  # never rounded to look like $0.000206
        (1e-9, "$0.000000001"),
    ],
)
def test_amounts_show_six_significant_digits(usd: float, shown: str) -> None:
    assert format_usd(usd) == shown
