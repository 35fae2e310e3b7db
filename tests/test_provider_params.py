"""Only what the provider takes reaches it: LiteLLM's own litellm_params stay behind.

A LiteLLM deployment carries routing, pricing, logging and credential keys beside the request
parameters it means for the provider. The loopback upstream records each request's body, so
these tests see exactly what an upstream receives, on the fast path and through litellm.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from gateway.core.config import GatewayConfig
from gateway.core.deployment_params import split_params
from gateway.providers.unapplied import unapplied_settings
from tests.conftest import GatewayFactory, fake_model, sdk
from tests.fakes.upstream import FakeUpstream

USER = [{"role": "user", "content": "what reaches the provider"}]

# What LiteLLM sends the provider: request parameters, a vLLM server's own (top_k), and
# extra_body's contents merged into the body, as OpenAI's SDK does.
PROVIDER = {"temperature": 0.3, "seed": 7, "top_k": 5, "extra_body": {"guided_choice": ["a"]}}
RECEIVED = {"temperature": 0.3, "seed": 7, "top_k": 5, "guided_choice": ["a"]}
# Found in upstream bodies before (issue 15): LiteLLM's router, proxy, pricing, logging and
# credential keys. None is a request parameter.
LITELLM_ONLY: dict[str, Any] = {
    "tags": ["eu", "fast"],
    "order": 1,
    "region_name": "eu-west-1",
    "input_cost_per_token": 1e-6,
    "output_cost_per_token": 2e-6,
    "cache_creation_input_token_cost": 3e-6,
    "drop_params": True,
    "rpm": 1000,
    "tpm": 100000,
    "itpm": 50000,
    "otpm": 50000,
    "weight": 2,
    "max_parallel_requests": 10,
    "model_info": {"id": "nested"},
    "mock_response": "a canned answer that must not be served",
    "use_in_pass_through": False,
    "merge_reasoning_content_in_choices": True,
    "aws_region_name": "us-east-1",
    "aws_access_key_id": "AKIA-not-for-openai",
    "vertex_project": "a-project",
    "vertex_location": "europe-west4",
    "base_model": "gpt-4o-mini",
    "langfuse_public_key": "pk-lf",
    "metadata": {"team": "search"},
}


def _entry(upstream: FakeUpstream, alias: str, model: str, **info: Any) -> dict[str, Any]:
    entry = fake_model(upstream, alias, model, api_key="sk-fake", **PROVIDER, **LITELLM_ONLY)
    if info:
        entry["model_info"] = info
    return entry


def _sent(upstream: FakeUpstream, model: str) -> dict[str, Any]:
    seen = upstream.last_request(model)
    assert seen is not None, f"the upstream never received a request for {model!r}"
    return {k: v for k, v in seen.body.items() if k not in ("model", "messages")}


def test_the_fast_path_sends_only_provider_parameters(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    model = "gpt-4o-mini,id=params-fast"
    client = sdk(gateway({"model_list": [_entry(upstream, "fast", model)]}))
    answer = client.chat.completions.create(model="fast", messages=USER)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "echo: what reaches the provider"
    assert _sent(upstream, model) == RECEIVED
    # The caller's own parameters win over the deployment's, as in LiteLLM.
    client.chat.completions.create(model="fast", messages=USER, temperature=1.5)  # type: ignore[arg-type]
    assert _sent(upstream, model) == {**RECEIVED, "temperature": 1.5}
    stream = client.chat.completions.create(model="fast", messages=USER, stream=True)  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    # (the gateway asks for the stream's usage, to meter it)
    usage = {"stream_options": {"include_usage": True}}
    assert _sent(upstream, model) == {**RECEIVED, "stream": True, **usage}


@pytest.mark.slow
def test_litellm_gets_its_settings_and_the_provider_only_its_parameters(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    model = "gpt-4o-mini,id=params-litellm"
    entry = _entry(upstream, "via-litellm", model, transport="litellm")
    client = sdk(gateway({"model_list": [entry]}), timeout=60)
    answer = client.chat.completions.create(model="via-litellm", messages=USER)  # type: ignore[arg-type]
    # mock_response stayed behind: the upstream answered.
    assert answer.choices[0].message.content == "echo: what reaches the provider"
    assert upstream.calls(model) == 1
    # litellm's openai provider sends extra_body's contents and unknown parameters (top_k),
    # and keeps the credentials it was handed (aws_*, vertex_*) out of an OpenAI body.
    assert _sent(upstream, model) == RECEIVED


def test_the_split_at_load() -> None:
    split = split_params({**PROVIDER, **LITELLM_ONLY, "custom_llm_provider": "openai"})
    assert split.body == RECEIVED
    # litellm's call gets the request parameters (extra_body as it is) and its own settings.
    assert split.litellm == {
        **PROVIDER,
        "region_name": "eu-west-1",
        "drop_params": True,
        "merge_reasoning_content_in_choices": True,
        "aws_region_name": "us-east-1",
        "aws_access_key_id": "AKIA-not-for-openai",
        "vertex_project": "a-project",
        "vertex_location": "europe-west4",
        "custom_llm_provider": "openai",
    }
    kept = set(LITELLM_ONLY) - set(split.litellm)
    assert set(split.metadata) == kept
    assert {"tags", "order", "mock_response", "input_cost_per_token", "itpm"} <= kept


def test_what_is_not_applied_is_said_at_load(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    entries = [
        _entry(upstream, "fast", "gpt-4o-mini"),
        _entry(upstream, "slow", "gpt-4o-mini", transport="litellm", mode="image_generation"),
    ]
    config = GatewayConfig.model_validate({"model_list": entries})
    lines = unapplied_settings(config)
    fast = [line for line in lines if "'fast#0'" in line]
    assert len(fast) == 2
    for key in ("itpm", "otpm", "mock_response", "order", "max_parallel_requests"):
        assert key in fast[0]
    assert "tags" not in fast[0]  # routing metadata (tag-based routing)
    assert "input_cost_per_token" not in fast[0]  # priced, so applied
    assert "aws_region_name" in fast[1]
    assert "drop_params" in fast[1]
    assert "transport: litellm" in fast[1]
    slow = [line for line in lines if "'slow#1'" in line]
    assert len(slow) == 2  # litellm reads its settings itself: nothing said of them
    assert "image_generation" in slow[1]
    with caplog.at_level(logging.WARNING, logger="gateway.providers"):
        from gateway.providers import Providers

        Providers(config)
    assert [r.getMessage() for r in caplog.records] == lines


def test_custom_llm_provider_and_base_url_are_litellms(upstream: FakeUpstream) -> None:
    from gateway.providers import build_deployments

    entry = {
        "model_name": "named",
        "litellm_params": {
            "model": "my-org/my-model",
            "custom_llm_provider": "hosted_vllm",
            "base_url": upstream.url,
        },
    }
    (deployment,) = build_deployments(GatewayConfig.model_validate({"model_list": [entry]}))
    assert (deployment.provider, deployment.upstream_model) == ("hosted_vllm", "my-org/my-model")
    assert deployment.api_base == upstream.url
    assert deployment.params == {}
