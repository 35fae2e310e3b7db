"""Deployments that go through litellm behave like the fast path: same answers, same errors."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.conftest import GatewayFactory, fake_model, sdk
from tests.fakes.upstream import FakeUpstream

USER = [{"role": "user", "content": "through litellm"}]


def _via_litellm(upstream: FakeUpstream, name: str, model: str) -> dict[str, Any]:
    entry = fake_model(upstream, name, model, api_key="sk-fake")
    entry["model_info"] = {"transport": "litellm"}
    return entry


@pytest.mark.slow
def test_litellm_chat_stream_and_errors(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    config = {
        "model_list": [
            _via_litellm(upstream, "ll", "gpt-4o-mini"),
            _via_litellm(upstream, "ll-limited", "status=429,id=ll429"),
            _via_litellm(upstream, "ll-broken", "status=500,id=ll500"),
        ],
        "router_settings": {"num_retries": 1, "timeout": 10, "max_retry_wait": 0.1},
    }
    client = sdk(gateway(config), timeout=60)
    raw = client.chat.completions.with_raw_response.create(model="ll", messages=USER)
    assert raw.parse().choices[0].message.content == "echo: through litellm"
    assert float(raw.headers["x-gateway-cost-usd"]) > 0

    chunks = list(
        client.chat.completions.create(
            model="ll", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: through litellm"
    assert any(c.usage is not None for c in chunks)

    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="ll-limited", messages=USER)
    assert upstream.calls("status=429,id=ll429") == 2
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="ll-broken", messages=USER)
    assert caught.value.status_code == 502
