"""Retries, backoff, retry-after, weights, cooldowns and fallbacks, against the real upstream."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import openai
import pytest

from tests.conftest import GatewayFactory, fake_model, sdk
from tests.fakes.upstream import FakeUpstream

USER = [{"role": "user", "content": "hello"}]


def _router(**overrides: Any) -> dict[str, Any]:
    return {"num_retries": 2, "timeout": 5, "max_retry_wait": 1.0, **overrides}


def test_retries_until_success(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    model = "fail_first=2,status=500,id=retry-ok"
    config = {"model_list": [fake_model(upstream, "flaky", model)], "router_settings": _router()}
    reply = sdk(gateway(config)).chat.completions.create(model="flaky", messages=USER)
    assert reply.choices[0].message.content == "echo: hello"
    assert upstream.calls(model) == 3


def test_retry_after_is_respected(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    model = "fail_first=1,status=429,retry_after=0.3,id=ra"
    config = {"model_list": [fake_model(upstream, "ra", model)], "router_settings": _router()}
    client = sdk(gateway(config))
    started = time.monotonic()
    client.chat.completions.create(model="ra", messages=USER)
    assert time.monotonic() - started >= 0.3
    assert upstream.calls(model) == 2


def test_long_retry_after_moves_to_fallback(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    # 30 s is past max_retry_wait: the gateway must not sit it out while holding the client.
    config = {
        "model_list": [
            fake_model(upstream, "primary", "status=429,retry_after=30,id=long-ra"),
            fake_model(upstream, "backup", "id=backup-ra"),
        ],
        "router_settings": _router(fallbacks=[{"primary": ["backup"]}]),
    }
    started = time.monotonic()
    raw = sdk(gateway(config)).chat.completions.with_raw_response.create(
        model="primary", messages=USER
    )
    assert time.monotonic() - started < 5
    assert raw.headers["x-gateway-model"] == "backup#1"
    assert upstream.calls("status=429,retry_after=30,id=long-ra") == 1


def test_fallback_to_another_alias(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    config = {
        "model_list": [
            fake_model(upstream, "primary", "status=500,id=fb-primary"),
            fake_model(upstream, "secondary", "id=fb-secondary"),
        ],
        "router_settings": _router(num_retries=1, fallbacks=[{"primary": ["secondary"]}]),
    }
    raw = sdk(gateway(config)).chat.completions.with_raw_response.create(
        model="primary", messages=USER
    )
    assert raw.parse().choices[0].message.content == "echo: hello"
    assert raw.headers["x-gateway-model"] == "secondary#1"
    assert upstream.calls("status=500,id=fb-primary") == 2


def test_failing_deployment_is_skipped_for_a_healthy_one(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    bad, good = "status=500,id=pair-bad", "id=pair-good"
    config = {
        "model_list": [fake_model(upstream, "pair", bad), fake_model(upstream, "pair", good)],
        "router_settings": _router(allowed_fails=0, cooldown_time=60),
    }
    client = sdk(gateway(config))
    for _ in range(20):
        client.chat.completions.create(model="pair", messages=USER)
    # The bad deployment fails at most once: then it cools down and is not tried again.
    assert upstream.calls(bad) <= 1
    assert upstream.calls(good) == 20


def test_cooldown_sheds_load_then_recovers(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    model = "fail_first=2,status=500,id=cooldown"
    config = {
        "model_list": [fake_model(upstream, "solo", model)],
        "router_settings": _router(num_retries=1, allowed_fails=1, cooldown_time=0.5),
    }
    client = sdk(gateway(config))
    with pytest.raises(openai.InternalServerError) as failed:  # two failures: cooled down
        client.chat.completions.create(model="solo", messages=USER)
    assert failed.value.status_code == 502
    assert upstream.calls(model) == 2
    with pytest.raises(openai.InternalServerError) as shed:
        client.chat.completions.create(model="solo", messages=USER)
    assert shed.value.status_code == 503
    assert "cooling down" in shed.value.message
    assert upstream.calls(model) == 2  # nothing reached the upstream while cooling down
    time.sleep(0.6)
    reply = client.chat.completions.create(model="solo", messages=USER)
    assert reply.choices[0].message.content == "echo: hello"


def test_weights_split_traffic(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    heavy, light = "id=weight-heavy", "id=weight-light"
    config = {
        "model_list": [
            fake_model(upstream, "split", heavy, weight=3),
            fake_model(upstream, "split", light, weight=1),
        ]
    }
    client = sdk(gateway(config))
    seen: Counter[str] = Counter()
    for _ in range(400):
        raw = client.chat.completions.with_raw_response.create(model="split", messages=USER)
        seen[raw.headers["x-gateway-model"]] += 1
    share = seen["split#0"] / 400
    assert 0.65 < share < 0.85, seen
    assert upstream.calls(heavy) == seen["split#0"]
    assert upstream.calls(light) == seen["split#1"]


def test_least_busy_spreads_concurrent_calls(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    first, second = "latency=150,id=busy-a", "latency=150,id=busy-b"
    config = {
        "model_list": [fake_model(upstream, "lb", first), fake_model(upstream, "lb", second)],
        "router_settings": _router(routing_strategy="least-busy"),
    }
    client = sdk(gateway(config))
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(lambda _: client.chat.completions.create(model="lb", messages=USER), range(4))
        )
    assert upstream.calls(first) == 2
    assert upstream.calls(second) == 2


def test_max_retries_stays_on_a_deployment_until_it_cools_down(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    broken, healthy, refused = "status=500,id=mr-broken", "id=mr-healthy", "status=400,id=mr-400"
    config = {
        "model_list": [
            # Weight 0: the healthy one is picked only once the broken one has been tried.
            fake_model(upstream, "mr", broken, max_retries=5),
            fake_model(upstream, "mr", healthy, weight=0),
            fake_model(upstream, "mr-400", refused, max_retries=5),
        ],
        "router_settings": _router(num_retries=1, allowed_fails=1, max_retry_wait=0.05),
    }
    client = sdk(gateway(config))
    raw = client.chat.completions.with_raw_response.create(model="mr", messages=USER)
    assert raw.headers["x-gateway-model"] == "mr#1"
    # Five retries allowed on it, but two failures cool it down: then the router moves on.
    assert (upstream.calls(broken), upstream.calls(healthy)) == (2, 1)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="mr-400", messages=USER)
    assert upstream.calls(refused) == 1  # the caller's own bad request is never retried
