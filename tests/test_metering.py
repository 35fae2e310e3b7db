"""Budgets, rate limits and cost reports, end to end through the OpenAI SDK."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.core.config import GatewayConfig
from gateway.metering.budgets import MemoryBudgetLedger
from gateway.metering.limits import MemoryRateLimiter
from gateway.metering.meter import Meter
from gateway.metering.prices import PriceTable
from gateway.metering.stores import LocalMeterStore
from gateway.providers import build_deployments
from tests.conftest import MASTER_KEY, GatewayFactory, fake_model, sdk
from tests.fakes.upstream import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
USER = [{"role": "user", "content": "one two three"}]


def make_key(base: str, **fields: Any) -> str:
    response = httpx.post(f"{base}/v1/keys", json=fields, headers=ADMIN)
    assert response.status_code == 200, response.text
    key: str = response.json()["key"]
    return key


def priced(upstream: FakeUpstream) -> dict[str, Any]:
    entry = fake_model(upstream, "priced", "gpt-4o-mini")
    # $1 per 1k tokens both ways: easy arithmetic for budgets.
    entry["model_info"] = {"input_cost_per_token": 0.001, "output_cost_per_token": 0.001}
    return {"model_list": [entry], "gateway": {"default_max_tokens": 10}}


def test_rpm_limit_and_openai_headers(gateway: GatewayFactory) -> None:
    base = gateway()
    client = sdk(base, key=make_key(base, rpm_limit=3, tpm_limit=100_000))
    remaining = []
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(model="local/echo", messages=USER)
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        assert raw.headers["x-ratelimit-limit-tokens"] == "100000"
        assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
        remaining.append(int(raw.headers["x-ratelimit-remaining-requests"]))
    assert remaining == [2, 1, 0]
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="local/echo", messages=USER)
    assert "3 requests per minute" in caught.value.message
    assert int(caught.value.response.headers["retry-after"]) >= 1


def test_team_limit_applies_to_all_its_keys(gateway: GatewayFactory) -> None:
    base = gateway()
    response = httpx.post(f"{base}/v1/teams", json={"id": "t-rpm", "rpm_limit": 2}, headers=ADMIN)
    assert response.status_code == 200
    first, second = make_key(base, team="t-rpm"), make_key(base, team="t-rpm")
    sdk(base, key=first).chat.completions.create(model="local/echo", messages=USER)
    sdk(base, key=second).chat.completions.create(model="local/echo", messages=USER)
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(base, key=first).chat.completions.create(model="local/echo", messages=USER)
    assert "team:t-rpm" in caught.value.message


def test_budget_is_reserved_then_settled(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    base = gateway(priced(upstream))
    created = httpx.post(
        f"{base}/v1/keys", json={"max_budget": 0.2, "budget_duration": "1d"}, headers=ADMIN
    ).json()
    client = sdk(base, key=created["key"])
    spent = 0.0
    calls = 0
    error: openai.RateLimitError | None = None
    while calls < 100:
        try:
            raw = client.chat.completions.with_raw_response.create(
                model="priced", messages=USER, max_tokens=10
            )
        except openai.RateLimitError as refused:
            error = refused
            break
        spent += float(raw.headers["x-gateway-cost-usd"])
        calls += 1
    assert error is not None
    assert error.code == "insufficient_quota"
    assert error.type == "insufficient_quota"
    assert f"key:{created['id']}" in error.message
    assert "resets at" in error.message
    assert 0 < calls < 100
    assert spent <= 0.2
    shown = httpx.get(f"{base}/v1/keys/{created['id']}", headers=ADMIN).json()
    assert shown["spend"] == pytest.approx(spent)


def test_costs_api_and_cli(gateway: GatewayFactory, upstream: FakeUpstream, tmp_path: Path) -> None:
    base = gateway(priced(upstream))
    alpha, beta = make_key(base, name="alpha"), make_key(base, name="beta")
    for key, times in ((alpha, 2), (beta, 1)):
        for _ in range(times):
            sdk(base, key=key).chat.completions.create(model="priced", messages=USER)
    report = httpx.get(f"{base}/v1/costs", params={"group_by": "key"}, headers=ADMIN).json()
    by_key = {row["key"]: row for row in report["data"]}
    assert sorted(row["requests"] for row in by_key.values()) == [1, 2]
    assert report["total_cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in by_key.values()))
    by_model = httpx.get(f"{base}/v1/costs", params={"group_by": "model"}, headers=ADMIN).json()
    assert by_model["data"][0]["model"] == "priced"
    assert by_model["data"][0]["requests"] == 3
    by_day = httpx.get(
        f"{base}/v1/costs", params={"group_by": "day", "from": "2020-01-01"}, headers=ADMIN
    ).json()
    assert by_day["data"][0]["requests"] == 3
    bad = httpx.get(f"{base}/v1/costs", params={"group_by": "colour"}, headers=ADMIN)
    assert bad.status_code == 400
    bad = httpx.get(f"{base}/v1/costs", params={"from": "yesterday"}, headers=ADMIN)
    assert bad.status_code == 400
    assert "ISO 8601" in bad.json()["error"]["message"]

    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATA_DIR"] = str(tmp_path / ".gateway")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "costs", "report", "--group-by", "model", "--csv"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    (row,) = list(csv.DictReader(io.StringIO(result.stdout)))
    assert row["model"] == "priced"
    assert row["requests"] == "3"
    assert float(row["cost_usd"]) == pytest.approx(by_model["data"][0]["cost_usd"])


@pytest.mark.parametrize(("fail_open", "status"), [(False, 503), (True, 200)])
def test_unreachable_redis_follows_the_setting(
    gateway: GatewayFactory, fail_open: bool, status: int
) -> None:
    from tests.conftest import free_port

    base = gateway(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_fail_open=fail_open)
    key = make_key(base, rpm_limit=10, max_budget=5.0)
    response = httpx.post(
        f"{base}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "local/echo", "messages": USER},
        timeout=30,
    )
    assert response.status_code == status, response.text
    if status == 503:
        assert "Redis" in response.json()["error"]["message"]


def test_budget_reservations_use_the_dearest_rate() -> None:
    # A reasoning token may cost more than a plain output token: the worst case reserved
    # against a budget must not be below what the call can be charged.
    info = {
        "input_cost_per_token": 1e-6,
        "output_cost_per_token": 1e-6,
        "output_cost_per_reasoning_token": 4e-6,
    }
    entry = {"model_name": "r", "litellm_params": {"model": "openai/x"}, "model_info": info}
    deployments = build_deployments(GatewayConfig.model_validate({"model_list": [entry]}))
    store = LocalMeterStore(MemoryBudgetLedger(), MemoryRateLimiter())
    meter = Meter(store, PriceTable.for_deployments(deployments), {"r": deployments}, 100)
    assert meter.worst_cost(["r"], 10, 10) == pytest.approx(10 * 1e-6 + 10 * 4e-6)
