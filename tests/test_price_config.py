"""LiteLLM's price keys load, and what cannot price a call is said at load, never dropped."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.core.config import GatewayConfig, load_config
from gateway.core.errors import ConfigError
from gateway.metering.budgets import MemoryBudgetLedger
from gateway.metering.limits import MemoryRateLimiter
from gateway.metering.meter import Meter
from gateway.metering.prices import (
    PriceTable,
    config_price_warnings,
    unpriced_deployments,
)
from gateway.metering.stores import LocalMeterStore
from gateway.providers import Usage, build_deployments

# Real model_info keys of LiteLLM that an earlier did-you-mean check took for typos.
REAL_PRICE_KEYS = [
    "cache_creation_input_token_cost",
    "cache_creation_input_token_cost_above_1hr",
    "cache_read_input_token_cost_above_200k_tokens",
    "input_cost_per_audio_token",
    "output_cost_per_audio_token",
    "input_cost_per_character",
    "output_cost_per_character",
    "input_cost_per_image",
    "output_cost_per_image",
    "input_cost_per_token_above_128k_tokens",
    "output_cost_per_token_above_128k_tokens",
    "input_cost_per_token_above_200k_tokens",
    "input_cost_per_token_batches",
    "output_cost_per_token_batches",
    "input_cost_per_token_priority",
    "input_cost_per_second",
    "output_cost_per_second",
    "input_cost_per_pixel",
]


def _config(*entries: dict[str, Any]) -> GatewayConfig:
    return GatewayConfig.model_validate({"model_list": list(entries)})


def _entry(model: str, info: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"model_name": model, "litellm_params": {"model": model, **params}}
    if info is not None:
        entry["model_info"] = info
    return entry


def test_litellms_real_keys_load_and_typos_still_fail(tmp_path: Path) -> None:
    info = dict.fromkeys(REAL_PRICE_KEYS, 1e-6)
    params = {**info, "itpm": 1000, "otpm": 500, "vertex_ai_location": "eu"}
    config = _config(_entry("openai/gpt-4o-mini", {**info, "mode": "image_generation"}, **params))
    assert config.model_list[0].model_info.mode == "image_generation"
    for mode in ("audio_transcription", "rerank", "moderation", "responses", "image_edit"):
        _config(_entry("openai/x", {"mode": mode}))
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "model_list:\n  - model_name: a\n    litellm_params: {model: openai/x}\n"
        "    model_info:\n      input_cost_per_tokn: 1.0e-6\n"
    )
    with pytest.raises(ConfigError, match="did you mean 'input_cost_per_token'"):
        load_config(path)


def test_prices_are_numbers(tmp_path: Path) -> None:
    # YAML reads 1e-6 (no dot) as a string; LiteLLM takes it as a number, and so do we.
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n"
        "      input_cost_per_token: 1e-6\n      input_cost_per_token_above_128k_tokens: 2e-6\n"
    )
    params = load_config(path).model_list[0].litellm_params
    assert params.input_cost_per_token == 1e-6
    assert params.extra_params()["input_cost_per_token_above_128k_tokens"] == 2e-6
    path.write_text(
        "model_list:\n  - model_name: a\n    litellm_params: {model: openai/x}\n"
        "    model_info:\n      input_cost_per_audio_token: -1\n"
    )
    with pytest.raises(ConfigError, match=r"gateway.yaml:4: .*input_cost_per_audio_token: a price"):
        load_config(path)


def test_a_deployment_with_no_price_is_named_at_load(caplog: pytest.LogCaptureFixture) -> None:
    config = _config(
        _entry("azure/my-deployment"),  # a deployment's own name: not in the map
        _entry("azure/my-other", {"base_model": "gpt-4o"}),
        _entry("openai/my-finetune", input_cost_per_token=1e-6, output_cost_per_token=2e-6),
        _entry("openai/my-free-model", {"input_cost_per_token": 0, "output_cost_per_token": 0}),
        _entry("openai/gpt-4o-mini"),
        _entry("local/echo"),
        _entry("azure/my-deployment-2", {"base_model": "not-a-model-anyone-knows"}),
    )
    unpriced = unpriced_deployments(config)
    assert len(unpriced) == 2
    assert "'azure/my-deployment#0'" in unpriced[0]
    assert "no budget can stop it" in unpriced[0]
    assert "'not-a-model-anyone-knows' is not in litellm's price map" in unpriced[1]
    with caplog.at_level(logging.WARNING, logger="gateway.prices"):
        PriceTable.for_deployments(build_deployments(config))
    logged = [r.getMessage() for r in caplog.records]
    assert logged == config_price_warnings(config)
    assert sum("has no price" in line for line in logged) == 2


def test_price_keys_the_gateway_cannot_apply_are_named() -> None:
    info = {"input_cost_per_audio_token": 1e-5, "input_cost_per_token_priority": 3e-6}
    params = {"input_cost_per_token": 1e-6, "output_cost_per_token_above_200k_tokens": 4e-6}
    lines = config_price_warnings(_config(_entry("openai/gpt-4o-mini", info, **params)))
    assert len(lines) == 1
    assert "input_cost_per_audio_token, input_cost_per_token_priority" in lines[0]
    assert "above_200k" not in lines[0]  # long-context tiers are applied


def test_a_lone_cache_rate_sets_no_price_as_in_litellm() -> None:
    config = _config(_entry("openai/gpt-4o-mini", {"cache_read_input_token_cost": 1.0}))
    (line,) = config_price_warnings(config)
    assert "cache_read_input_token_cost set no per-token or per-second rate" in line
    table = PriceTable.for_deployments(build_deployments(config))
    price = table.price(build_deployments(config)[0])
    assert price is not None
    assert price.cached_input != 1.0  # the map's rate


def test_a_price_per_second_bills_the_seconds_upstream() -> None:
    config = _config(
        _entry("sagemaker/my-endpoint", input_cost_per_second=0.5),
        _entry("sagemaker/both", {"cost_per_second": 0.5}, input_cost_per_token=1e-3),
    )
    per_second, per_token = build_deployments(config)
    table = PriceTable.for_deployments([per_second, per_token])
    usage = Usage(100, 10)
    assert table.cost(per_second, usage, seconds=2.0) == pytest.approx(1.0)
    # A per-token price wins: LiteLLM ignores the per-second one then.
    assert table.cost(per_token, usage, seconds=2.0) == pytest.approx(0.1)


def test_budgets_reserve_a_long_context_rate_only_for_a_prompt_that_may_reach_it() -> None:
    prices = {
        "input_cost_per_token": 1e-6,
        "output_cost_per_token": 2e-6,
        "input_cost_per_token_above_128k_tokens": 5e-6,
        "output_cost_per_token_above_128k_tokens": 8e-6,
    }
    deployments = build_deployments(_config({**_entry("openai/long", **prices), "model_name": "r"}))
    store = LocalMeterStore(MemoryBudgetLedger(), MemoryRateLimiter())
    meter = Meter(store, PriceTable.for_deployments(deployments), {"r": deployments}, 100)
    # The prompt estimate is an upper bound: at most 1000 tokens never reach the 128k tier.
    assert meter.worst_cost(["r"], 1000, 10) == pytest.approx(1000 * 1e-6 + 10 * 2e-6)
    assert meter.worst_cost(["r"], 200_000, 10) == pytest.approx(200_000 * 5e-6 + 10 * 8e-6)


def test_classic_models_are_priced_per_prediction_and_warned_of_only_when_unpriced() -> None:
    # A catch-all wildcard beside them: a classic deployment is never priced by its name in
    # the map (nor by the wildcard), only by model_info.cost_per_1k_predictions.
    config = _config(
        {**_entry("registry/iris"), "model_name": "iris"},  # in process: free unless priced
        {**_entry("v2/gpt-4o", {"cost_per_1k_predictions": 2.0}), "model_name": "priced"},
        {**_entry("mlflow/gpt-4o-mini"), "model_name": "unpriced"},
        {**_entry("v2/tab", {"input_cost_per_token": 1e-6}), "model_name": "tokens"},
        {**_entry("openai/*"), "model_name": "*"},
    )
    lines = config_price_warnings(config)
    assert not any("'iris'" in line or "'priced'" in line for line in lines)
    (unpriced,) = [line for line in lines if "'unpriced'" in line]
    assert "no price" in unpriced
    assert "model_info.cost_per_1k_predictions" in unpriced
    assert "base_model" not in unpriced  # LiteLLM's advice is no use to a classic model
    (tokens,) = [line for line in lines if "'tokens'" in line and "not applied" in line]
    assert "input_cost_per_token" in tokens
    assert "priced per prediction" in tokens
    unpriced_models = [
        line.split("of model ")[1].split(" ")[0] for line in unpriced_deployments(config)
    ]
    assert unpriced_models == ["'unpriced'", "'tokens'"]

    deployments = build_deployments(config)
    table = PriceTable.for_deployments(deployments)
    iris, priced, mlflow, tokens_deployment, _ = deployments
    assert table.prediction_cost(iris, 1000) == 0.0
    assert table.prediction_cost(priced, 500) == pytest.approx(1.0)
    assert table.price(mlflow) is None  # not the map's gpt-4o-mini price
    assert table.prediction_cost(tokens_deployment, 1000) == 0.0
    store = LocalMeterStore(MemoryBudgetLedger(), MemoryRateLimiter())
    meter = Meter(store, table, {d.alias: [d] for d in deployments}, 100)
    assert meter.worst_cost(["priced", "tokens"], 1000, 10) == 0.0  # tokens never price them
