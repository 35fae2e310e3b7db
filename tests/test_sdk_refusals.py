"""Budgets and rate limits as the official OpenAI SDK meets them, with its default retries.

A small budget caps a call's max_tokens rather than refusing it (and says so in a header); a
429 that no retry can fix says `x-should-retry: false`, so the SDK sends it once; a rate
limit says when room frees up (`retry-after-ms`), and the SDK waits exactly that.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY, REDIS_URL, GatewayFactory, fake_model, sdk
from tests.fakes.upstream import FakeUpstream

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
USER: Any = [{"role": "user", "content": "hello"}]
INPUT, OUTPUT = 1e-6, 1e-5  # $1 and $10 per million tokens


def make_key(base: str, **fields: Any) -> tuple[str, str]:
    response = httpx.post(f"{base}/v1/keys", json=fields, headers=ADMIN)
    assert response.status_code == 200, response.text
    created = response.json()
    return created["key"], created["id"]


def priced(upstream: FakeUpstream, alias: str, model: str) -> dict[str, Any]:
    entry = fake_model(upstream, alias, model)
    entry["model_info"] = {"input_cost_per_token": INPUT, "output_cost_per_token": OUTPUT}
    return entry


def statuses(data_dir: Path, key_id: str, expected: int) -> list[int]:
    """The request log's statuses for a key's calls: what reached the gateway."""
    database = data_dir / "gateway.db"
    found: list[int] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with (
            contextlib.closing(sqlite3.connect(database)) as connection,
            contextlib.suppress(sqlite3.OperationalError),
        ):
            query = "SELECT status FROM request_log WHERE key_id = ? ORDER BY created_at"
            found = [row[0] for row in connection.execute(query, (key_id,))]
        if len(found) >= expected:
            break
        time.sleep(0.05)
    time.sleep(0.2)  # and nothing more arrives
    with contextlib.closing(sqlite3.connect(database)) as connection:
        query = "SELECT status FROM request_log WHERE key_id = ? ORDER BY created_at"
        return [row[0] for row in connection.execute(query, (key_id,))]


class RecordingOpenAI(openai.OpenAI):
    """The real SDK, retries and all, except that it notes each wait it computes (from the
    response headers, by its own rules) instead of sleeping it."""

    waits: list[tuple[float, str | None]]

    def _calculate_retry_timeout(
        self, remaining_retries: int, options: Any, response_headers: Any = None
    ) -> float:  # type: ignore[override]
        wait = super()._calculate_retry_timeout(remaining_retries, options, response_headers)
        shown = response_headers.get("retry-after-ms") if response_headers is not None else None
        self.waits.append((wait, shown))
        return 0.0


def recording(base: str, key: str) -> RecordingOpenAI:
    client = RecordingOpenAI(base_url=f"{base}/v1", api_key=key, timeout=30)  # default retries
    client.waits = []
    return client


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_a_small_budget_caps_a_call_without_max_tokens(
    gateway: GatewayFactory,
    upstream: FakeUpstream,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    store: str,
) -> None:
    # $0.01 cannot cover 4,096 completion tokens at $10 a million ($0.041): the call is sent
    # with a max_tokens that fits, and the fake upstream writes exactly that many.
    model = f"gpt-4o-mini,fill,id=cap-{store}"
    shared: dict[str, Any] = {}
    if store == "redis":
        shared = {"redis_url": REDIS_URL, "redis_prefix": request.getfixturevalue("redis_prefix")}
    base = gateway({"model_list": [priced(upstream, "priced", model)]}, **shared)
    key, key_id = make_key(base, max_budget=0.01, budget_duration="1d")
    client = sdk(base, key=key, max_retries=2)

    raw = client.chat.completions.with_raw_response.create(model="priced", messages=USER)
    capped = int(raw.headers["x-gateway-max-tokens-capped"])
    assert raw.headers["x-gateway-max-tokens-original"] == "4096"
    answer = raw.parse()
    assert answer.usage is not None
    assert answer.usage.completion_tokens == capped  # what the upstream was allowed
    assert answer.choices[0].finish_reason == "length"
    assert 900 < capped < 1000
    spent = float(raw.headers["x-gateway-cost-usd"])
    assert spent <= 0.01

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="priced", messages=USER)
    error = caught.value
    assert error.code == "insufficient_quota"
    assert error.response.headers["x-should-retry"] == "false"
    assert "retry-after" not in error.response.headers
    message = error.message
    assert f"budget exhausted for key:{key_id}: $0.00" in message
    assert "$0.0000 " not in message
    assert "of $0.01 spent" in message
    assert "this call needs at least $0.000" in message
    assert "The 1d budget resets at " in message
    assert "ask the gateway's admin to raise it" in message
    # The SDK's two default retries were not spent on it: one request reached the gateway.
    assert statuses(tmp_path / ".gateway", key_id, 2) == [200, 429]
    assert upstream.calls(model) == 1


def test_the_cap_goes_into_the_field_the_upstream_takes(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    # OpenAI's reasoning models refuse max_tokens (the `reasoning` directive does too): a call
    # that set neither field is capped in max_completion_tokens for them, in max_tokens for
    # the others; a caller's own field is the one lowered.
    plain, reasoning = "gpt-4o-mini,fill,id=cap-field", "o3-mini,reasoning,fill,id=cap-field"
    config = {"model_list": [priced(upstream, "plain", plain), priced(upstream, "o3", reasoning)]}
    base = gateway(config)
    cases: list[tuple[str, dict[str, int]]] = [
        ("plain", {}),
        ("plain", {"max_tokens": 5000}),
        ("plain", {"max_completion_tokens": 5000}),
        ("plain", {"max_tokens": 5000, "max_completion_tokens": 6000}),
        ("o3", {}),
        ("o3", {"max_completion_tokens": 5000}),
    ]
    for alias, limit in cases:
        client = sdk(base, key=make_key(base, max_budget=0.01)[0])  # a fresh $0.01 each
        raw = client.chat.completions.with_raw_response.create(model=alias, messages=USER, **limit)
        capped = int(raw.headers["x-gateway-max-tokens-capped"])
        original = max(limit.values(), default=4096)
        assert raw.headers["x-gateway-max-tokens-original"] == str(original)
        usage = raw.parse().usage
        assert usage is not None
        assert usage.completion_tokens == capped < 1000, (alias, limit)


def test_a_capped_stream_says_so_in_its_headers(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    model = "gpt-4o-mini,fill,chunks=2,id=cap-stream"
    base = gateway({"model_list": [priced(upstream, "priced", model)]})
    client = sdk(base, key=make_key(base, max_budget=0.005)[0])
    with client.chat.completions.with_streaming_response.create(
        model="priced", messages=USER, stream=True, stream_options={"include_usage": True}
    ) as response:
        capped = int(response.headers["x-gateway-max-tokens-capped"])
        chunks = list(response.parse())
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == capped < 500


def test_capping_can_be_turned_off(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    model = "gpt-4o-mini,fill,id=cap-off"
    config = {
        "model_list": [priced(upstream, "priced", model)],
        "gateway": {"cap_max_tokens_to_budget": False},
    }
    base = gateway(config)
    client = sdk(base, key=make_key(base, max_budget=0.01)[0])
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="priced", messages=USER)
    message = caught.value.message
    assert "$0 of $0.01 spent; this call needs up to $0.04" in message
    assert "4096 completion tokens) and $0.01 is left. Set max_tokens to 99" in message
    assert upstream.calls(model) == 0
    answer = client.chat.completions.create(model="priced", messages=USER, max_tokens=900)
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 900


def test_an_rpm_refusal_tells_the_sdk_exactly_how_long_to_wait(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    base = gateway()
    key, key_id = make_key(base, rpm_limit=1)
    client = recording(base, key)
    client.chat.completions.create(model="local/echo", messages=USER)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="local/echo", messages=USER)
    headers = caught.value.response.headers
    assert headers["x-should-retry"] == "true"
    assert 0 < int(headers["retry-after"]) <= 61
    assert 0 < int(headers["retry-after-ms"]) <= 61_000
    assert int(headers["retry-after"]) == -(-int(headers["retry-after-ms"]) // 1000)
    # The SDK retried twice, each time after the wait the gateway asked for, to the ms.
    assert len(client.waits) == 2
    for wait, shown in client.waits:
        assert shown is not None
        assert wait == int(shown) / 1000
    assert statuses(tmp_path / ".gateway", key_id, 4) == [200, 429, 429, 429]


def test_a_request_too_large_for_the_tpm_limit_is_sent_once(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    base = gateway()
    key, key_id = make_key(base, tpm_limit=1000)
    client = recording(base, key)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="local/echo", messages=USER, max_tokens=5000)
    headers = caught.value.response.headers
    assert headers["x-should-retry"] == "false"
    assert "retry-after" not in headers
    assert "lower max_tokens" in caught.value.message
    assert client.waits == []
    assert statuses(tmp_path / ".gateway", key_id, 1) == [429]


def test_an_upstream_429_passes_on_when_to_retry(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    said, silent = "status=429,retry_after=0.05,id=sdk-429", "status=429,id=sdk-429"
    config = {
        "model_list": [fake_model(upstream, "said", said), fake_model(upstream, "silent", silent)],
        "router_settings": {"num_retries": 0},
    }
    base = gateway(config)
    client = recording(base, MASTER_KEY)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="said", messages=USER)
    headers = caught.value.response.headers
    assert (headers["x-should-retry"], headers["retry-after-ms"]) == ("true", "50")
    assert headers["retry-after"] == "1"
    assert [wait for wait, _ in client.waits] == [0.05, 0.05]
    # The upstream did not say: the SDK keeps its own rule (retry a 429, with backoff).
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="silent", messages=USER)
    assert "x-should-retry" not in caught.value.response.headers
    assert "retry-after" not in caught.value.response.headers
    assert upstream.calls(silent) == 3
