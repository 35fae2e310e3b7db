"""Every error status arrives in OpenAI's shape and makes the SDK raise the matching class."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY, GatewayFactory, fake_model, free_port, sdk
from tests.fakes.upstream import FakeUpstream

USER = [{"role": "user", "content": "hello"}]
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def _error_shape(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


def _quick_router(**overrides: Any) -> dict[str, Any]:
    settings = {"num_retries": 1, "timeout": 5, "retry_after": 0, "max_retry_wait": 0.2}
    return {**settings, **overrides}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"", "empty"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "'model' is required"),
        (b'{"model": "local/echo", "messages": []}', "'messages'"),
        (b'{"model": "local/echo", "messages": [{"content": "x"}]}', "role"),
        (
            b'{"model": "local/echo", "messages": [{"role": "user", "content": "x"}], '
            b'"stream": "yes"}',
            "stream",
        ),
    ],
)
def test_bad_body_is_400(gateway: GatewayFactory, body: bytes, needle: str) -> None:
    response = httpx.post(
        f"{gateway()}/v1/chat/completions",
        content=body,
        headers={**AUTH, "content-type": "application/json"},
    )
    assert response.status_code == 400
    error = _error_shape(response)
    assert error["type"] == "invalid_request_error"
    assert needle in error["message"]


def test_sdk_raises_bad_request(gateway: GatewayFactory) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway()).chat.completions.create(model="local/echo", messages=[])
    assert caught.value.status_code == 400


def test_missing_and_wrong_key_are_401(gateway: GatewayFactory) -> None:
    base = gateway()
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(base, key="wrong").chat.completions.create(model="local/echo", messages=USER)
    assert "Invalid API key" in caught.value.message
    response = httpx.get(f"{base}/v1/models")
    assert response.status_code == 401
    assert _error_shape(response)["code"] == "invalid_api_key"
    response = httpx.get(f"{base}/v1/models", headers={"Authorization": "Basic abc"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-litellm-api-key", MASTER_KEY),
        ("x-litellm-api-key", f"Bearer {MASTER_KEY}"),
        ("api-key", MASTER_KEY),  # Azure OpenAI's SDKs
        ("x-api-key", MASTER_KEY),  # Anthropic's
    ],
)
def test_a_key_is_read_from_the_headers_litellm_reads(
    gateway: GatewayFactory, header: str, value: str
) -> None:
    """Every route, chat and embeddings included, takes the key from where LiteLLM's proxy
    does, so clients configured for LiteLLM or Azure keep working unchanged."""
    base = gateway()
    body = {"model": "local/echo", "messages": USER}
    chat = httpx.post(f"{base}/v1/chat/completions", json=body, headers={header: value})
    assert chat.status_code == 200, chat.text
    models = httpx.get(f"{base}/v1/models", headers={header: value})
    assert models.status_code == 200, models.text
    # x-litellm-api-key wins over Authorization, as in LiteLLM
    both = {"x-litellm-api-key": MASTER_KEY, "Authorization": "Bearer wrong"}
    assert httpx.post(f"{base}/v1/chat/completions", json=body, headers=both).status_code == 200
    wrong = httpx.post(f"{base}/v1/chat/completions", json=body, headers={header: "wrong"})
    assert wrong.status_code == 401
    assert _error_shape(wrong)["code"] == "invalid_api_key"


def test_the_openai_sdk_can_send_its_key_in_another_header(gateway: GatewayFactory) -> None:
    """LiteLLM's documented way: the SDK's own api_key stays a placeholder (or a provider's
    key), the gateway's key travels in x-litellm-api-key, and that header wins."""
    client = sdk(gateway(), key="sk-placeholder", default_headers={"x-litellm-api-key": MASTER_KEY})
    reply = client.chat.completions.create(model="local/echo", messages=USER)
    assert reply.choices[0].message.content


def test_unknown_model_is_404(gateway: GatewayFactory) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(gateway()).chat.completions.create(model="no-such-model", messages=USER)
    assert caught.value.code == "model_not_found"
    assert "no-such-model" in caught.value.message


def test_unknown_route_is_404_in_openai_shape(gateway: GatewayFactory) -> None:
    response = httpx.get(f"{gateway()}/v1/nothing-here", headers=AUTH)
    assert response.status_code == 404
    _error_shape(response)


def test_body_too_large_is_413(gateway: GatewayFactory) -> None:
    base = gateway(max_body_bytes=4096)
    big = [{"role": "user", "content": "x" * 10_000}]
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(base).chat.completions.create(model="local/echo", messages=big)
    assert caught.value.status_code == 413
    assert "4096" in caught.value.message

    # Chunked upload with no content-length: the cap holds on bytes actually received.
    def chunks() -> Any:
        for _ in range(10):
            yield b" " * 1000

    response = httpx.post(
        f"{base}/v1/chat/completions",
        content=chunks(),
        headers={**AUTH, "content-type": "application/json"},
    )
    assert response.status_code == 413
    _error_shape(response)


def test_upstream_429_after_retries(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    model = "status=429,retry_after=0.01,id=always429"
    config = {
        "model_list": [fake_model(upstream, "limited", model)],
        "router_settings": _quick_router(num_retries=2),
    }
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(gateway(config)).chat.completions.create(model="limited", messages=USER)
    assert caught.value.status_code == 429
    assert upstream.calls(model) == 3  # the first try and two retries


def test_upstream_500_is_502(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    config = {
        "model_list": [fake_model(upstream, "broken", "status=500,id=e500")],
        "router_settings": _quick_router(),
    }
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(gateway(config)).chat.completions.create(model="broken", messages=USER)
    assert caught.value.status_code == 502
    assert "500" in caught.value.message


def test_upstream_503_is_503(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    config = {
        "model_list": [fake_model(upstream, "down", "status=503,id=e503")],
        "router_settings": _quick_router(),
    }
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(gateway(config)).chat.completions.create(model="down", messages=USER)
    assert caught.value.status_code == 503


def test_unreachable_upstream_is_503(gateway: GatewayFactory) -> None:
    entry = {
        "model_name": "nowhere",
        "litellm_params": {
            "model": "openai/x",
            "api_base": f"http://127.0.0.1:{free_port()}/v1",
        },
    }
    config = {"model_list": [entry], "router_settings": _quick_router()}
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(gateway(config)).chat.completions.create(model="nowhere", messages=USER)
    assert caught.value.status_code == 503
    assert "cannot connect" in caught.value.message


def test_upstream_hang_is_504_not_a_hang(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    config = {
        "model_list": [fake_model(upstream, "slow", "hang,id=hang504")],
        "router_settings": _quick_router(timeout=0.3, num_retries=1),
    }
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(gateway(config)).chat.completions.create(model="slow", messages=USER)
    assert caught.value.status_code == 504
    assert time.monotonic() - started < 10  # bounded by the gateway's timeout, not the SDK's


def test_malformed_upstream_json_is_502(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    config = {
        "model_list": [fake_model(upstream, "bad", "malformed,id=badjson")],
        "router_settings": _quick_router(num_retries=0),
    }
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(gateway(config)).chat.completions.create(model="bad", messages=USER)
    assert caught.value.status_code == 502
    assert "invalid JSON" in caught.value.message


def test_upstream_400_is_passed_as_400(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    config = {"model_list": [fake_model(upstream, "picky", "status=400,id=e400")]}
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway(config)).chat.completions.create(model="picky", messages=USER)
    assert "upstream refused" in caught.value.message
    assert upstream.calls("status=400,id=e400") == 1  # a 400 is never retried


def test_an_upstream_out_of_quota_falls_back_and_tells_clients_not_to_retry(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    """OpenAI's `insufficient_quota` 429 is the operator's account out of credit: another
    deployment may answer, but the client retrying the same call cannot help."""
    broke = fake_model(upstream, "broke", "status=429,quota,id=broke")
    saved = fake_model(upstream, "saved", "status=429,quota,id=saved")
    backup = fake_model(upstream, "backup", "gpt-4o-mini")
    router = {**_quick_router(), "fallbacks": [{"saved": ["backup"]}]}
    base = gateway({"model_list": [broke, saved, backup], "router_settings": router})
    auth = {"Authorization": f"Bearer {MASTER_KEY}"}
    body = {"messages": [{"role": "user", "content": "hi"}]}

    refused = httpx.post(
        f"{base}/v1/chat/completions", headers=auth, json={**body, "model": "broke"}
    )
    assert refused.status_code == 429
    error = _error_shape(refused)
    assert error["code"] == "insufficient_quota"
    assert "no quota left" in error["message"]
    assert refused.headers["x-should-retry"] == "false"
    assert "retry-after" not in refused.headers

    # The official SDK with its default retries (2) asks the gateway once.
    sent: list[httpx.Request] = []
    counted = httpx.Client(event_hooks={"request": [sent.append]})
    client = sdk(base, max_retries=2, http_client=counted)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="broke", messages=body["messages"])  # type: ignore[arg-type]
    assert len(sent) == 1

    answered = httpx.post(
        f"{base}/v1/chat/completions", headers=auth, json={**body, "model": "saved"}
    )
    assert answered.status_code == 200
    assert answered.headers["x-gateway-model"].startswith("backup")
