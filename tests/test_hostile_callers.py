"""One caller must not hurt another, overspend its budget, dodge its bill, reach a model it
may not use, or learn the gateway's internals from an error message."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import create_engine, select

from gateway.store.tables import request_log
from tests.conftest import MASTER_KEY, REDIS_URL, GatewayFactory, fake_model, free_port
from tests.fakes.upstream import FakeUpstream

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
USER = [{"role": "user", "content": "hello"}]
# Prices of the priced deployments: $1 per million prompt tokens, $10 per million completion.
INPUT_PRICE, OUTPUT_PRICE = 1e-6, 1e-5


def make_key(base: str, **fields: Any) -> tuple[str, str]:
    """A new key and its id."""
    response = httpx.post(f"{base}/v1/keys", json=fields, headers=ADMIN)
    assert response.status_code == 200, response.text[:300]
    created = response.json()
    return created["key"], created["id"]


def spend(base: str, key_id: str) -> float:
    shown = httpx.get(f"{base}/v1/keys/{key_id}", headers=ADMIN).json()
    value: float = shown["spend"]
    return value


def chat(base: str, key: str, **body: Any) -> httpx.Response:
    body.setdefault("messages", USER)
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=30)


def priced(upstream: FakeUpstream, alias: str, model: str, **info: Any) -> dict[str, Any]:
    entry = fake_model(upstream, alias, model)
    entry["model_info"] = {
        "input_cost_per_token": INPUT_PRICE,
        "output_cost_per_token": OUTPUT_PRICE,
        **info,
    }
    return entry


def log_rows(db: Path, expected: int) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite:///{db}")
    deadline = time.monotonic() + 10
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            query = select(request_log).order_by(request_log.c.created_at)
            found = [dict(r._mapping) for r in connection.execute(query)]
        if len(found) >= expected:
            break
        time.sleep(0.05)
    engine.dispose()
    return found


# 1. A caller's own bad requests never cool a deployment down for everyone.


def test_a_callers_bad_requests_do_not_take_the_model_offline(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    model = "id=shared-400"
    config = {
        "model_list": [
            fake_model(upstream, "shared", model),
            fake_model(upstream, "shared", model),
        ],
        "router_settings": {"allowed_fails": 3, "cooldown_time": 60, "num_retries": 2},
    }
    base = gateway(config)
    (attacker, _), (victim, _) = make_key(base), make_key(base)
    for _ in range(10):
        # A field the gateway passes on unread, so the refusal is the upstream's.
        refused = chat(base, attacker, model="shared", reasoning_effort="extreme")
        assert refused.status_code == 400, refused.text[:300]
        assert refused.json()["error"]["param"] == "reasoning_effort"
        assert "reasoning_effort" in refused.json()["error"]["message"]  # the upstream's words
    assert upstream.calls(model) == 10  # a 400 is the caller's: never retried elsewhere
    answered = chat(base, victim, model="shared")
    assert answered.status_code == 200, answered.text[:300]
    assert answered.json()["choices"][0]["message"]["content"] == "echo: hello"


def test_asking_a_chat_model_for_embeddings_is_the_callers_mistake(
    gateway: GatewayFactory,
) -> None:
    """The built-in models too: embeddings from `local/echo` is a 400 naming the model, and
    however often it is asked, the chat model stays up for everyone else."""
    base = gateway()
    for _ in range(5):
        refused = httpx.post(
            f"{base}/v1/embeddings", json={"model": "local/echo", "input": "x"}, headers=ADMIN
        )
        assert refused.status_code == 400, refused.text[:300]
        assert refused.json()["error"]["param"] == "model"
        assert "'local/echo' does not serve embeddings" in refused.json()["error"]["message"]
    answered = chat(base, MASTER_KEY, model="local/echo")
    assert answered.status_code == 200, answered.text[:300]


def test_upstream_faults_still_cool_a_deployment_down(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    model = "status=500,id=faults-count"
    config = {
        "model_list": [fake_model(upstream, "sick", model)],
        "router_settings": {"allowed_fails": 2, "cooldown_time": 60, "num_retries": 0},
    }
    base = gateway(config)
    for _ in range(3):
        assert chat(base, MASTER_KEY, model="sick").status_code == 502
    cooled = chat(base, MASTER_KEY, model="sick")
    assert cooled.status_code == 503
    assert "cooling down" in cooled.json()["error"]["message"]
    assert upstream.calls(model) == 3


def test_requests_too_large_for_a_deployments_limit_do_not_cool_it_down(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    entry = fake_model(upstream, "metered", "id=deployment-tpm", tpm=2000)
    entry["model_info"] = {"id": SECRET_ID}
    config = {
        "model_list": [entry],
        "router_settings": {"allowed_fails": 3, "cooldown_time": 60, "num_retries": 0},
    }
    base = gateway(config)
    (attacker, _), (victim, _) = make_key(base), make_key(base)
    for _ in range(5):
        refused = chat(base, attacker, model="metered", max_tokens=5000)
        assert refused.status_code == 429, refused.text[:300]
        message = refused.json()["error"]["message"]
        assert "'metered'" in message
        assert SECRET_ID not in message
    answered = chat(base, victim, model="metered", max_tokens=10)
    assert answered.status_code == 200, answered.text[:300]


# 2. Budgets hold against n, max_tokens and non-text parts.


def _hostile_config(upstream: FakeUpstream, model: str) -> dict[str, Any]:
    return {"model_list": [priced(upstream, "hostile", model)]}


async def _stream_call(client: httpx.AsyncClient, base: str, key: str, body: Any) -> Any:
    headers = {"Authorization": f"Bearer {key}"}
    async with client.stream(
        "POST", f"{base}/v1/chat/completions", json=body, headers=headers
    ) as response:
        raw = await response.aread()
    if response.status_code != 200:
        return response.status_code, orjson.loads(raw)["error"]
    marker = b": x-gateway-cost-usd="
    cost = float(raw[raw.index(marker) + len(marker) :].split(b"\n", 1)[0])
    # The max_tokens the call was sent with: lowered to fit what the budget had left.
    capped = response.headers.get("x-gateway-max-tokens-capped")
    return 200, (cost, int(capped) if capped is not None else body["max_tokens"])


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_hostile_concurrent_streams_overshoot_at_most_one_reservation(
    gateway: GatewayFactory, upstream: FakeUpstream, request: pytest.FixtureRequest, store: str
) -> None:
    # Each call asks for 10 choices of 100 tokens and the upstream really produces them all:
    # 1,000 completion tokens, $0.01 a call, against a $0.05 budget; 200 calls at once, over
    # one replica, or over two sharing Redis.
    config = _hostile_config(upstream, f"fill,latency=200,chunks=4,id=hostile-{store}")
    if store == "redis":
        shared = {"redis_url": REDIS_URL, "redis_prefix": request.getfixturevalue("redis_prefix")}
        bases = [gateway(config, **shared), gateway(config, **shared)]
    else:
        bases = [gateway(config)]
    key, key_id = make_key(bases[0], max_budget=0.05)
    for base in bases:  # every replica knows the key before the storm
        deadline = time.monotonic() + 10
        while chat(base, key, model="nothing").status_code == 401:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    body = {"model": "hostile", "messages": USER, "stream": True, "n": 10, "max_tokens": 100}

    async def storm() -> list[Any]:
        limits = httpx.Limits(max_connections=250)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            calls = [_stream_call(client, bases[i % len(bases)], key, body) for i in range(200)]
            return await asyncio.gather(*calls)

    results = asyncio.run(storm())
    answered = [answer for status, answer in results if status == 200]
    costs = [cost for cost, _ in answered]
    refusals = [error for status, error in results if status != 200]
    assert all(error["code"] == "insufficient_quota" for error in refusals), refusals[:3]
    assert costs
    # n x max_tokens was produced (as capped to the budget's room, for the last ones in).
    assert all(cost >= 10 * sent * OUTPUT_PRICE for cost, sent in answered)
    deadline = time.monotonic() + 10  # leases book what their calls spent within a second
    while spend(bases[0], key_id) < sum(costs) - 1e-9 and time.monotonic() < deadline:
        time.sleep(0.1)
    spent = spend(bases[0], key_id)
    assert spent == pytest.approx(sum(costs))
    # One call's reservation: its prompt estimate (JSON bytes / 2 + 16) and 10 x 100 tokens.
    reservation = (len(orjson.dumps(body)) // 2 + 16) * INPUT_PRICE + 1000 * OUTPUT_PRICE
    overshoot = spent - 0.05
    print(
        f"\n{store}: 200 hostile streams, {len(costs)} answered, spent ${spent:.6f} of $0.05, "
        f"overshoot ${max(overshoot, 0):.6f} (one reservation ${reservation:.6f})"
    )
    assert overshoot <= reservation


def test_one_call_with_a_large_n_is_refused_by_a_small_budget(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    model = "fill,id=hostile-n128"
    base = gateway(_hostile_config(upstream, model))
    key, key_id = make_key(base, max_budget=0.01)
    refused = chat(base, key, model="hostile", n=128, max_tokens=100)
    assert refused.status_code == 429, refused.text[:300]
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert upstream.calls(model) == 0
    assert spend(base, key_id) == 0.0


def test_non_text_parts_count_toward_the_reservation(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    base = gateway(_hostile_config(upstream, "id=hostile-images"))
    key, _ = make_key(base, max_budget=0.01)
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    text = {"type": "text", "text": "what is in these?"}
    with_images = [{"role": "user", "content": [text, *[image] * 20]}]
    refused = chat(base, key, model="hostile", messages=with_images, max_tokens=10)
    assert refused.status_code == 429, refused.text[:300]
    assert refused.json()["error"]["code"] == "insufficient_quota"
    text_only = [{"role": "user", "content": [text]}]
    answered = chat(base, key, model="hostile", messages=text_only, max_tokens=10)
    assert answered.status_code == 200, answered.text[:300]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", 0),
        ("n", 129),
        ("n", "3"),
        ("n", 2.5),
        ("n", True),
        ("max_tokens", -1),
        ("max_tokens", "100"),
        ("max_tokens", 1.5),
        ("max_completion_tokens", 0),
        ("max_completion_tokens", False),
    ],
)
def test_bad_n_and_token_limits_are_400_naming_the_field(
    gateway: GatewayFactory, field: str, value: Any
) -> None:
    response = chat(gateway(), MASTER_KEY, model="local/echo", **{field: value})
    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert error["param"] == field
    assert field in error["message"]


@pytest.mark.parametrize("role", [["user"] * 100_000, {"user": 1}, 7, None, "robot"])
def test_a_message_role_that_is_not_a_known_name_is_400_naming_the_role(
    gateway: GatewayFactory, role: Any
) -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": role, "content": "x"}]
    response = chat(gateway(), MASTER_KEY, model="local/echo", messages=messages)
    assert response.status_code == 400, response.text[:300]
    assert response.json()["error"]["param"] == "messages[1].role"


# 3. A client that leaves before the usage chunk is still billed for the prompt sent.


def test_leaving_mid_stream_is_billed_for_the_prompt_and_what_was_produced(
    gateway: GatewayFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    base = gateway({"model_list": [priced(upstream, "slow", "chunks=40,chunk_delay=100")]})
    key, key_id = make_key(base, max_budget=10.0)
    prompt = "word " * 8000  # 8,000 tokens by the upstream's count
    body = {"model": "slow", "messages": [{"role": "user", "content": prompt}], "stream": True}
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, headers=headers) as raw:
        first = next(raw.iter_bytes())
        assert first.startswith(b"data: ")

    (row,) = log_rows(tmp_path / ".gateway" / "gateway.db", 1)
    assert row["error_type"] == "client_disconnected"
    assert row["estimated"]
    assert 6000 <= row["input_tokens"] <= 12000
    assert row["cost_usd"] >= 6000 * INPUT_PRICE
    deadline = time.monotonic() + 5
    while spend(base, key_id) == 0.0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spend(base, key_id) == pytest.approx(row["cost_usd"])


# 7. Fallbacks stay inside the key's allow-list.


def _fallback_config(upstream: FakeUpstream) -> dict[str, Any]:
    secret = priced(upstream, "secret-model", "id=secret-fallback")
    # Dear enough that reserving at its price would refuse the key's small budget.
    secret["model_info"] = {"input_cost_per_token": 1.0, "output_cost_per_token": 1.0}
    return {
        "model_list": [priced(upstream, "failing", "status=500,id=failing-primary"), secret],
        "router_settings": {"num_retries": 0, "fallbacks": [{"failing": ["secret-model"]}]},
    }


def test_fallbacks_skip_models_the_key_may_not_use(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    base = gateway(_fallback_config(upstream))
    key, _ = make_key(base, models=["failing"], max_budget=1.0)
    refused = chat(base, key, model="failing")
    assert refused.status_code == 502, refused.text  # not secret-model's answer, nor a 429
    assert upstream.calls("id=secret-fallback") == 0
    # A caller allowed both still gets the fallback.
    answered = chat(base, MASTER_KEY, model="failing")
    assert answered.status_code == 200
    assert upstream.calls("id=secret-fallback") == 1


# 12. Errors name the alias, not the gateway's internals; the log keeps the detail.

SECRET_ID = "internal-deployment-7"


def _leaks(message: str, *secrets: str) -> list[str]:
    return [secret for secret in secrets if secret in message]


@pytest.mark.parametrize(
    ("model", "status", "needle"),
    [
        ("status=500,id=leak500", 502, "500"),
        ("status=503,id=leak503", 503, "unavailable"),
        ("status=429,id=leak429", 429, "rate limit"),
        ("status=401,id=leak401", 502, "tell the operator"),
        ("status=403,id=leak403", 502, "tell the operator"),
        ("status=400,id=leak400", 400, "fake upstream error 400"),
        ("malformed,id=leakjson", 502, "invalid JSON"),
    ],
)
def test_upstream_errors_name_the_alias_not_the_deployment(
    gateway: GatewayFactory,
    upstream: FakeUpstream,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    model: str,
    status: int,
    needle: str,
) -> None:
    entry = fake_model(upstream, "public-alias", model)
    entry["model_info"] = {"id": SECRET_ID}
    config = {"model_list": [entry], "router_settings": {"num_retries": 0}}
    base = gateway(config)
    with caplog.at_level(logging.DEBUG, logger="gateway"):
        response = chat(base, MASTER_KEY, model="public-alias")
    assert response.status_code == status, response.text[:300]
    message = response.json()["error"]["message"]
    assert "public-alias" in message
    assert needle in message
    assert not _leaks(message, SECRET_ID, model, upstream.url, str(upstream.port))
    if status in (401, 403):
        assert "fake upstream error" not in message
    (row,) = log_rows(tmp_path / ".gateway" / "gateway.db", 1)
    assert row["deployment"] == SECRET_ID  # the row keeps which deployment failed
    assert row["error_type"] == response.json()["error"]["type"]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"{SECRET_ID} (openai/{model})" in logged


def test_unreachable_upstream_error_hides_its_address(
    gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    entry = {
        "model_name": "far",
        "litellm_params": {
            "model": "openai/secret-upstream",
            "api_base": f"http://127.0.0.1:{port}/v1",
        },
        "model_info": {"id": SECRET_ID},
    }
    base = gateway({"model_list": [entry], "router_settings": {"num_retries": 0}})
    with caplog.at_level(logging.DEBUG, logger="gateway"):
        response = chat(base, MASTER_KEY, model="far")
    assert response.status_code == 503
    message = response.json()["error"]["message"]
    assert "'far'" in message
    assert not _leaks(message, SECRET_ID, "secret-upstream", str(port))
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"{SECRET_ID} (openai/secret-upstream)" in logged


def test_a_stream_cut_names_the_alias_not_the_deployment(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    entry = fake_model(upstream, "cutting", "chunks=10,cut=3,id=leakcut")
    entry["model_info"] = {"id": SECRET_ID}
    base = gateway({"model_list": [entry]})
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    body = {"model": "cutting", "messages": USER, "stream": True}
    raw = httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers).content
    last = raw.strip().split(b"\n\n")[-1]
    error = orjson.loads(last.removeprefix(b"data: "))["error"]
    assert "'cutting'" in error["message"]
    assert not _leaks(error["message"], SECRET_ID, "leakcut")
