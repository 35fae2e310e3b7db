"""Prices per token: `model_info` in the config first, then litellm's bundled price map.

The map is a JSON file inside the installed litellm package; it is read without importing
litellm, once at start, and only the entries the configured deployments need are kept.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from gateway.providers import Deployment, Usage

log = logging.getLogger("gateway.prices")

PRICE_FILE = "model_prices_and_context_window_backup.json"


@dataclass(frozen=True, slots=True)
class Price:
    input: float = 0.0
    output: float = 0.0
    cached_input: float | None = None
    reasoning_output: float | None = None
    source: str = "none"
    prediction: float = 0.0  # per row a classic model predicts

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        total = (usage.prompt_tokens - cached) * self.input + cached * cached_rate
        # Reasoning tokens are part of completion tokens; some models price them apart.
        reasoning = min(usage.reasoning_tokens, usage.completion_tokens)
        reasoning_rate = self.output if self.reasoning_output is None else self.reasoning_output
        total += (usage.completion_tokens - reasoning) * self.output + reasoning * reasoning_rate
        return total


FREE = Price(source="local")


def price_map_path() -> Path | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / PRICE_FILE
    return path if path.exists() else None


def _rate(value: Any) -> float | None:
    return None if value is None else float(value)


def _from_entry(entry: dict[str, Any], source: str) -> Price:
    return Price(
        input=float(entry.get("input_cost_per_token") or 0.0),
        output=float(entry.get("output_cost_per_token") or 0.0),
        cached_input=_rate(entry.get("cache_read_input_token_cost")),
        reasoning_output=_rate(entry.get("output_cost_per_reasoning_token")),
        source=source,
    )


def _from_config(d: Deployment) -> Price | None:
    """model_info's prices, which replace the map's entry as a whole: a cache-read or
    reasoning rate left out falls back to the input or output rate, never to the map's."""
    rates = (
        d.input_cost_per_token,
        d.output_cost_per_token,
        d.cache_read_input_token_cost,
        d.output_cost_per_reasoning_token,
        d.cost_per_1k_predictions,
    )
    if all(rate is None for rate in rates):
        return None
    return Price(
        input=d.input_cost_per_token or 0.0,
        output=d.output_cost_per_token or 0.0,
        cached_input=d.cache_read_input_token_cost,
        reasoning_output=d.output_cost_per_reasoning_token,
        source="config",
        prediction=(d.cost_per_1k_predictions or 0.0) / 1000,
    )


def _map_names(d: Deployment) -> list[str]:
    """The price map's names to try, in order. base_model (LiteLLM's) names the model whose
    price applies when the deployment's own name is not in the map (an Azure deployment)."""
    names = []
    if d.base_model:
        if "/" not in d.base_model:
            names.append(f"{d.provider}/{d.base_model}")
        names.append(d.base_model)
    return [*names, d.model, d.upstream_model]


class PriceTable:
    def __init__(self, prices: dict[str, Price], version: str) -> None:
        self._prices = prices
        self.version = version

    @classmethod
    def for_deployments(cls, deployments: list[Deployment]) -> PriceTable:
        path = price_map_path()
        raw = path.read_bytes() if path else b"{}"
        source = "litellm-" + hashlib.sha256(raw).hexdigest()[:12]
        catalogue: dict[str, Any] = orjson.loads(raw)
        prices: dict[str, Price] = {}
        for d in deployments:
            configured = _from_config(d)
            if configured is not None:
                prices[d.id] = configured
            elif d.provider in ("local", "registry"):  # runs here: free unless priced
                prices[d.id] = FREE
            else:
                entry = next(
                    (e for name in _map_names(d) if isinstance(e := catalogue.get(name), dict)),
                    None,
                )
                if entry is not None:
                    prices[d.id] = _from_entry(entry, source)
                else:
                    log.info("no price known for deployment %s (%s): cost 0", d.id, d.model)
        # The version names the prices actually in force (map entries and config overrides),
        # so a request-log row's reference resolves to exactly what priced it.
        entries = orjson.dumps(
            {k: asdict(v) for k, v in sorted(prices.items())}, option=orjson.OPT_SORT_KEYS
        )
        return cls(prices, "prices-" + hashlib.sha256(entries).hexdigest()[:12])

    def entries(self) -> dict[str, dict[str, Any]]:
        """Per deployment id, the price in force (what `price_versions` stores)."""
        return {k: asdict(v) for k, v in self._prices.items()}

    def price(self, deployment: Deployment) -> Price | None:
        return self._prices.get(deployment.id)

    def prediction_cost(self, deployment: Deployment, rows: int) -> float:
        price = self._prices.get(deployment.id)
        return rows * price.prediction if price is not None else 0.0

    def cost(self, deployment: Deployment, usage: Usage | None) -> float:
        price = self._prices.get(deployment.id)
        if price is None or usage is None:
            return 0.0
        return price.cost(usage)
