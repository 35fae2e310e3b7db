"""The gateway charges what LiteLLM's proxy charges for the same config and the same usage.

Each deployment below is served twice from one model_list: by the gateway (its cost read from
x-gateway-cost-usd) and by litellm's own Router (its `response_cost`), both against the
loopback upstream, which reports the usage asked for in the deployment's address
(`.../_with/prompt_tokens=N,cached=N,.../v1`), so both price exactly the same tokens.
"""

from __future__ import annotations

import asyncio
import copy
import os
from typing import Any

import httpx
import pytest

from tests.conftest import MASTER_KEY, GatewayFactory
from tests.fakes.upstream import FakeUpstream

USER = [{"role": "user", "content": "what does it cost"}]
BIG = "prompt_tokens=150000,cached=40000"  # a long prompt: figures well above rounding
CACHED = "prompt_tokens=9000,cached=3000,cache_write=2000"
REASONING = "prompt_tokens=5000,reasoning_tokens=700"
LONG = "prompt_tokens=300000,cached=50000,cache_write=1000"  # past gpt-5.4's 272k tier
CUSTOM = {"input_cost_per_token": 2e-6, "output_cost_per_token": 8e-6}


def _address(upstream: FakeUpstream, usage: str, azure: bool = False) -> str:
    root = upstream.url.removesuffix("/v1") + f"/_with/{usage}"
    return root if azure else root + "/v1"


def _entry(
    upstream: FakeUpstream,
    alias: str,
    model: str,
    usage: str,
    info: dict[str, Any] | None = None,
    **params: Any,
) -> dict[str, Any]:
    azure = model.startswith("azure/")
    litellm_params = {
        "model": model,
        "api_base": _address(upstream, usage, azure),
        "api_key": "sk-fake",
        **({"api_version": "2024-06-01"} if azure else {}),
        **params,
    }
    entry: dict[str, Any] = {"model_name": alias, "litellm_params": litellm_params}
    if info:
        entry["model_info"] = info
    return entry


def _deployments(upstream: FakeUpstream) -> list[dict[str, Any]]:
    e = _entry
    u = upstream
    return [
        # The price map's own entry: cached tokens at its cache-read rate.
        e(u, "map", "openai/gpt-4o-mini", BIG),
        e(u, "map-reasoning", "openai/o3-mini", REASONING),
        e(u, "map-long", "azure/my-gpt54", LONG, {"base_model": "gpt-5.4"}),
        # An Azure deployment's name is its own: base_model says whose price applies.
        e(u, "azure-based", "azure/my-gpt4o-deployment", BIG, {"base_model": "gpt-4o"}),
        e(u, "azure-params-based", "azure/my-deployment", CACHED, base_model="azure/gpt-4o"),
        # Custom prices in litellm_params, LiteLLM's documented place.
        e(u, "params", "openai/my-finetune", CACHED, **CUSTOM),
        e(
            u,
            "params-cache",
            "openai/my-finetune",
            CACHED,
            cache_read_input_token_cost=5e-7,
            cache_creation_input_token_cost=3e-6,
            **CUSTOM,
        ),
        # Only an input price on a mapped model: output is then free and the map's cache rate
        # still applies, as LiteLLM does it.
        e(u, "params-input-only", "openai/gpt-4o-mini", BIG, input_cost_per_token=1e-6),
        # Custom prices in model_info, and both places (litellm_params wins).
        e(u, "info", "openai/my-finetune", CACHED, dict(CUSTOM)),
        e(u, "both", "openai/my-finetune", CACHED, {"input_cost_per_token": 9e-6}, **CUSTOM),
        e(
            u,
            "info-based-custom",
            "azure/my-gpt4o-deployment",
            CACHED,
            {"base_model": "gpt-4o", **CUSTOM},
        ),
        # Reasoning tokens priced apart, and a long-context tier.
        e(u, "reasoning", "openai/my-reasoner", REASONING, output_cost_per_reasoning_token=3e-5),
        e(
            u,
            "tiered",
            "openai/my-long-model",
            BIG,
            input_cost_per_token_above_128k_tokens=4e-6,
            output_cost_per_token_above_128k_tokens=1.6e-5,
            **CUSTOM,
        ),
        # Through the gateway's litellm path: its usage (cache writes included) priced alike.
        e(
            u,
            "via-litellm",
            "openai/my-finetune",
            CACHED,
            {"transport": "litellm"},
            cache_creation_input_token_cost=3e-6,
            **CUSTOM,
        ),
    ]


def _embedding_deployments(upstream: FakeUpstream) -> list[dict[str, Any]]:
    usage = "prompt_tokens=120000"
    return [
        _entry(upstream, "emb-map", "openai/text-embedding-3-large", usage),
        _entry(upstream, "emb-custom", "openai/my-embedder", usage, input_cost_per_token=3e-7),
    ]


async def _litellm_costs(model_list: list[dict[str, Any]], kind: str) -> dict[str, float]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    router = litellm.Router(model_list=copy.deepcopy(model_list))
    costs = {}
    for entry in model_list:
        alias = entry["model_name"]
        if kind == "chat":
            response = await router.acompletion(model=alias, messages=USER)
        else:
            response = await router.aembedding(model=alias, input=["what does it cost"])
        costs[alias] = float(response._hidden_params["response_cost"])
    return costs


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["chat", "embeddings"])
def test_the_gateway_charges_what_litellm_charges(
    gateway: GatewayFactory, upstream: FakeUpstream, kind: str
) -> None:
    chat = kind == "chat"
    model_list = _deployments(upstream) if chat else _embedding_deployments(upstream)
    base = gateway({"model_list": copy.deepcopy(model_list)})
    charged = {}
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        for entry in model_list:
            alias = entry["model_name"]
            if chat:
                body = {"model": alias, "messages": USER}
            else:
                body = {"model": alias, "input": ["what does it cost"]}
            answer = client.post(f"/v1/{'chat/completions' if chat else 'embeddings'}", json=body)
            assert answer.status_code == 200, answer.text
            charged[alias] = float(answer.headers["x-gateway-cost-usd"])
    expected = asyncio.run(_litellm_costs(model_list, kind))
    for alias, cost in expected.items():
        assert cost > 0, f"{alias}: litellm priced it at 0, so the case proves nothing"
        assert charged[alias] == pytest.approx(cost, rel=1e-6, abs=1e-9), alias
