"""Prices, taken as LiteLLM's proxy takes them for the same config, decided once at start.

For each deployment, LiteLLM (its router registering the deployment, then `completion_cost`):

1. With custom prices (any of its pricing keys in `litellm_params`, or in `model_info`), prices
   from those alone, litellm_params winning over model_info; a rate left out is 0, except the
   cache rates of a deployment that sets `input_cost_per_token`, which come from the price
   map's entry for its base_model (else its model) when the map has them. Custom keys that
   set no per-token or per-second rate (a lone `cache_read_input_token_cost`) are ignored and
   the model's own map entry prices it.
2. Else with `base_model` (model_info's, else litellm_params'): that model's map entry.
3. Else the map's entry for the model itself (`provider/name`, then `name`).

A call's cost, from its usage: uncached prompt tokens at the input rate, cached ones at the
cache-read rate and cache writes at the cache-creation rate (each the input rate when unset);
completion tokens at the output rate, reasoning tokens among them at the reasoning rate (the
output rate when unset). When the prompt exceeds a tier (`..._above_128k_tokens`), the whole
call is billed at that tier's rates. A deployment priced per second (and not per token) costs
its seconds upstream. tests/test_litellm_prices.py holds all this to litellm's own figures.

A classic model (`registry/`, `v2/`, `mlflow/`: /v2 infer) is not LiteLLM's: it is priced per
row it predicts (model_info.cost_per_1k_predictions), a `registry/` one running in this
process being free unless so priced.

The map is the JSON file inside the installed litellm package, read without importing litellm.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.core.config import GatewayConfig
from gateway.core.litellm_keys import CUSTOM_PRICING_PARAMS
from gateway.core.wildcards import is_wildcard
from gateway.providers import Deployment, Usage, build_deployments
from gateway.providers.catalogue import ModelCatalogue
from gateway.providers.classic import is_classic

log = logging.getLogger("gateway.prices")

PRICE_FILE = "model_prices_and_context_window_backup.json"

_RATES = (
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
)
# `input_cost_per_token_above_128k_tokens`, ...: LiteLLM's long-context tiers.
_TIER_KEY = re.compile(rf"({'|'.join(_RATES)})_above_(\d+(?:\.\d+)?)(k?)_tokens")
_PER_SECOND = ("cost_per_second", "input_cost_per_second", "output_cost_per_second")
# Cache rates a custom-priced deployment takes from its model's map entry (LiteLLM's
# _CACHE_PRICING_FIELDS, those that price a chat or embeddings call).
_INHERITED_CACHE_RATES = (
    "cache_creation_input_token_cost",
    "cache_creation_input_token_cost_above_200k_tokens",
    "cache_read_input_token_cost",
    "cache_read_input_token_cost_above_200k_tokens",
)
# LiteLLM counts these as setting a price; other custom keys (a cache rate alone) do not.
_NON_TOKEN_RATES = frozenset({*_PER_SECOND, "input_cost_per_query", "input_cost_per_text_message"})
# Modes LiteLLM bills by the second when a deployment has a per-second price.
_WALL_CLOCK_MODES = frozenset({"audio_transcription", "chat", "completion", "embedding"})
APPLIED_PRICE_KEYS = frozenset({*_RATES, "output_cost_per_reasoning_token", *_PER_SECOND})


@dataclass(frozen=True, slots=True)
class Tier:
    """Rates for a call whose prompt has more than `above` tokens (None: the lower rate)."""

    above: float
    input: float | None = None
    output: float | None = None
    cached_input: float | None = None
    cache_creation: float | None = None


@dataclass(frozen=True, slots=True)
class Price:
    input: float = 0.0
    output: float = 0.0
    cached_input: float | None = None  # None: the input rate
    cache_creation: float | None = None  # None: the input rate
    reasoning_output: float | None = None  # None: the output rate
    tiers: tuple[Tier, ...] = ()  # by `above`, ascending
    per_second: float | None = None  # set only when nothing is priced per token
    source: str = "none"
    prediction: float = 0.0  # per row a classic model predicts

    def cost(self, usage: Usage, seconds: float = 0.0) -> float:
        if self.per_second is not None:
            return self.per_second * seconds
        input_rate, output_rate = self.input, self.output
        cached_rate, creation_rate = self.cached_input, self.cache_creation
        for tier in self.tiers:
            if usage.prompt_tokens <= tier.above:
                break
            input_rate = _or(tier.input, input_rate)
            output_rate = _or(tier.output, output_rate)
            if tier.cached_input is not None:
                cached_rate = tier.cached_input
            if tier.cache_creation is not None:
                creation_rate = tier.cache_creation
        # Cached tokens and cache writes are among the prompt's; reasoning among the completion's.
        cached, written = usage.cached_tokens, usage.cache_creation_tokens
        total = max(usage.prompt_tokens - cached - written, 0) * input_rate
        total += cached * _or(cached_rate, input_rate) + written * _or(creation_rate, input_rate)
        reasoning = usage.reasoning_tokens
        if reasoning <= 0:
            return total + usage.completion_tokens * output_rate
        text = max(usage.completion_tokens - reasoning, 0)
        return total + text * output_rate + reasoning * _or(self.reasoning_output, output_rate)

    def dearest(self, prompt_tokens: int | None = None) -> tuple[float, float]:
        """The dearest rate a prompt token and a completion token may be billed at, for a
        prompt of at most `prompt_tokens` (any size when None)."""
        prompt = [self.input, self.cached_input or 0.0, self.cache_creation or 0.0]
        completion = [self.output, self.reasoning_output or 0.0]
        for tier in self.tiers:
            if prompt_tokens is not None and prompt_tokens <= tier.above:
                break
            prompt += [tier.input or 0.0, tier.cached_input or 0.0, tier.cache_creation or 0.0]
            completion.append(tier.output or 0.0)
        return max(prompt), max(completion)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


FREE = Price(source="local")


def price_map_path() -> Path | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / PRICE_FILE
    return path if path.exists() else None


def _rate(value: Any) -> float | None:
    return None if value is None else float(value)


def _tiers(entry: dict[str, Any]) -> tuple[Tier, ...]:
    found: dict[float, dict[str, float]] = {}
    for key, value in entry.items():
        match = _TIER_KEY.fullmatch(key)
        if match is None or value is None:
            continue
        above = float(match[2]) * (1000 if match[3] else 1)
        found.setdefault(above, {})[match[1]] = float(value)
    return tuple(
        Tier(
            above=above,
            input=rates.get("input_cost_per_token"),
            output=rates.get("output_cost_per_token"),
            cached_input=rates.get("cache_read_input_token_cost"),
            cache_creation=rates.get("cache_creation_input_token_cost"),
        )
        for above, rates in sorted(found.items())
    )


def _per_second(entry: dict[str, Any]) -> float | None:
    """LiteLLM's per-second price: only without a per-token one, first of cost_per_second,
    input_cost_per_second, output_cost_per_second, charged once."""
    per_token = (entry.get("input_cost_per_token") or 0, entry.get("output_cost_per_token") or 0)
    if max(per_token) > 0:
        return None
    if entry.get("mode") not in (None, *_WALL_CLOCK_MODES):
        return None
    return next((float(entry[k]) for k in _PER_SECOND if entry.get(k) is not None), None)


def price_of(entry: dict[str, Any], source: str) -> Price:
    """A price from LiteLLM-style keys (a map entry, or a deployment's custom prices)."""
    return Price(
        input=float(entry.get("input_cost_per_token") or 0.0),
        output=float(entry.get("output_cost_per_token") or 0.0),
        cached_input=_rate(entry.get("cache_read_input_token_cost")),
        cache_creation=_rate(entry.get("cache_creation_input_token_cost")),
        reasoning_output=_rate(entry.get("output_cost_per_reasoning_token")),
        tiers=_tiers(entry),
        per_second=_per_second(entry),
        source=source,
    )


def _prices_anything(entry: dict[str, Any]) -> bool:
    """LiteLLM's test of a custom entry: a per-token or per-second rate is set."""
    return any(
        value is not None and (key in _NON_TOKEN_RATES or ("cost_per" in key and "token" in key))
        for key, value in entry.items()
    )


def is_custom_priced(d: Deployment) -> bool:
    """LiteLLM's use_custom_pricing_for_model: a pricing key in litellm_params or model_info."""
    return bool(d.param_prices) or any(
        key in CUSTOM_PRICING_PARAMS or key == "off_peak_pricing" for key in d.info_prices
    )


def _names(model: str, provider: str) -> list[str]:
    """The map's names for a model, in LiteLLM's order: with its provider, as written, bare."""
    names = [model if model.startswith(f"{provider}/") else f"{provider}/{model}", model]
    if "/" in model:
        names.append(model.split("/", 1)[1])
    return list(dict.fromkeys(names))


def _map_entry(catalogue: dict[str, Any], model: str, provider: str) -> dict[str, Any] | None:
    return next(
        (e for name in _names(model, provider) if isinstance(e := catalogue.get(name), dict)),
        None,
    )


@dataclass(frozen=True, slots=True)
class Priced:
    """A deployment's price and, for the operator, what it was taken from."""

    price: Price | None
    taken_from: str  # "config", a map name, or why there is none
    unused_custom: list[str] = field(default_factory=list)


def resolve(d: Deployment, catalogue: dict[str, Any], map_source: str) -> Priced:
    """The deployment's price, chosen as LiteLLM's proxy chooses it (see the docstring)."""
    if is_classic(d):
        return _classic_price(d)
    if is_custom_priced(d):
        entry = {**d.info_prices, **d.param_prices}
        if _prices_anything(entry):
            if entry.get("input_cost_per_token") is not None:
                backend = _map_entry(catalogue, d.base_model or d.model, d.provider) or {}
                for key in _INHERITED_CACHE_RATES:
                    if entry.get(key) is None and backend.get(key) is not None:
                        entry[key] = backend[key]
            entry["mode"] = d.mode
            return Priced(price_of(entry, "config"), "config")
        unused = sorted(entry)
        found = _map_entry(catalogue, d.model, d.provider)
        name = d.model
    elif d.base_model:
        unused = []
        found = _map_entry(catalogue, d.base_model, d.provider)
        name = d.base_model
    elif d.provider == "local":
        return Priced(FREE, "local")
    else:
        unused = []
        found = _map_entry(catalogue, d.model, d.provider)
        name = d.model
    if found is None:
        return Priced(None, f"{name!r} is not in litellm's price map", unused)
    return Priced(price_of(found, map_source), name, unused)


def _classic_price(d: Deployment) -> Priced:
    """A classic model (/v2 infer) is priced per row it predicts, by its own key alone
    (model_info.cost_per_1k_predictions): LiteLLM's token prices and map know nothing of it.
    One served in this process from the registry is free unless priced."""
    if d.cost_per_1k_predictions is not None:
        price = Price(prediction=d.cost_per_1k_predictions / 1000, source="config")
        return Priced(price, "config")
    if d.provider == "registry":
        return Priced(FREE, "registry: predicted in this process")
    return Priced(None, "model_info.cost_per_1k_predictions is not set")


class PriceTable:
    def __init__(self, prices: dict[str, Price], version: str) -> None:
        self._prices = prices
        self.version = version
        # With wildcard deployments: the map's prices by model name, for the models they are
        # asked for (known only per call), and the map's models for the router.
        self._by_name: dict[str, Price] = {}
        self._wildcards: dict[str, Price] = {}
        self.catalogue: ModelCatalogue | None = None

    @classmethod
    def for_deployments(cls, deployments: list[Deployment]) -> PriceTable:
        catalogue, source = load_price_map()
        prices: dict[str, Price] = {}
        wildcards: dict[str, Price] = {}
        for d in deployments:
            if is_wildcard(d.model) and not is_classic(d) and not is_custom_priced(d):
                # Priced per call by the model it is asked for: the version names the map.
                wildcards[d.id] = Price(source=f"{source} by model name")
                continue
            priced = resolve(d, catalogue, source)
            if priced.price is not None:
                prices[d.id] = priced.price
        for warning in price_warnings(deployments, catalogue, source):
            log.warning("%s", warning)
        # The version names the prices actually in force (map entries and config overrides),
        # so a request-log row's reference resolves to exactly what priced it.
        in_force = {**wildcards, **prices}
        entries = orjson.dumps(
            {k: asdict(v) for k, v in sorted(in_force.items())}, option=orjson.OPT_SORT_KEYS
        )
        table = cls(prices, "prices-" + hashlib.sha256(entries).hexdigest()[:12])
        if wildcards or any(is_wildcard(d.alias) for d in deployments):
            table._by_name = {
                name: price_of(entry, source)
                for name, entry in catalogue.items()
                if isinstance(entry, dict)
            }
            table._wildcards = wildcards
            table.catalogue = ModelCatalogue(catalogue)
        return table

    def entries(self) -> dict[str, dict[str, Any]]:
        """Per deployment id, the price in force (what `price_versions` stores)."""
        return {k: asdict(v) for k, v in {**self._wildcards, **self._prices}.items()}

    def price(self, deployment: Deployment) -> Price | None:
        price = self._prices.get(deployment.id)
        if price is None and self._by_name and not is_classic(deployment):
            # A wildcard's copy for one model (or a deployment the map has no price for).
            by_name = self._by_name
            names = [*_names(deployment.model, deployment.provider), deployment.upstream_model]
            price = next((by_name[n] for n in names if n in by_name), None)
        return price

    def prediction_cost(self, deployment: Deployment, rows: int) -> float:
        """A classic model's call: its rows at the deployment's price per prediction."""
        price = self._prices.get(deployment.id)
        return rows * price.prediction if price is not None else 0.0

    def cost(self, deployment: Deployment, usage: Usage | None, seconds: float = 0.0) -> float:
        price = self.price(deployment)
        if price is None or usage is None:
            return 0.0
        return price.cost(usage, seconds)


def load_price_map() -> tuple[dict[str, Any], str]:
    """litellm's bundled price map and the name of its version."""
    path = price_map_path()
    raw = path.read_bytes() if path else b"{}"
    catalogue: dict[str, Any] = orjson.loads(raw)
    return catalogue, "litellm-" + hashlib.sha256(raw).hexdigest()[:12]


def _named(d: Deployment) -> str:
    return f"deployment {d.id!r} of model {d.alias!r}"


def price_warnings(
    deployments: Iterable[Deployment], catalogue: dict[str, Any], source: str
) -> list[str]:
    """What an operator must know about the prices: deployments priced at nothing (no budget
    can stop them) and price keys the config sets that the gateway does not apply."""
    found = []
    for d in deployments:
        if is_classic(d):
            found += _classic_warnings(d)
            continue
        priced = resolve(d, catalogue, source)
        # A wildcard is priced per call by the model it is asked for.
        if priced.price is None and not is_wildcard(d.model):
            found.append(
                f"{_named(d)} has no price ({priced.taken_from}; no base_model or custom price "
                "is set): it is metered at $0 and no budget can stop it. Set model_info."
                "base_model to the model it serves, or litellm_params.input_cost_per_token "
                "and output_cost_per_token"
            )
        if priced.unused_custom:
            found.append(
                f"{_named(d)}: {', '.join(priced.unused_custom)} set no per-token or per-second "
                f"rate, so LiteLLM and the gateway ignore them and price it from "
                f"{priced.taken_from}; set input_cost_per_token and output_cost_per_token too"
            )
        declared = {*d.info_prices, *d.param_prices}
        unapplied = sorted(k for k in declared if not _applied(k))
        if unapplied:
            found.append(
                f"{_named(d)}: price keys accepted and not applied: {', '.join(unapplied)} "
                "(the gateway bills the token usage of chat and embeddings calls: input, "
                "cached, cache-write, output and reasoning tokens, long-context tiers, or "
                "seconds; not audio, image, video or character units, service tiers, batches, "
                "tier tables, off-peak hours or regional uplifts)"
            )
    return found


def _classic_warnings(d: Deployment) -> list[str]:
    """A classic model's: unpriced (a remote one with no price per prediction), or given
    LiteLLM's token prices, which its calls never use."""
    found = []
    if _classic_price(d).price is None:
        found.append(
            f"{_named(d)} has no price (model_info.cost_per_1k_predictions is not set): it is "
            "metered at $0 and no budget can stop it. Set model_info.cost_per_1k_predictions"
        )
    declared = sorted({*d.info_prices, *d.param_prices})
    if declared:
        found.append(
            f"{_named(d)}: price keys accepted and not applied: {', '.join(declared)} (a "
            "classic model is priced per prediction: model_info.cost_per_1k_predictions)"
        )
    return found


def _applied(key: str) -> bool:
    return key in APPLIED_PRICE_KEYS or _TIER_KEY.fullmatch(key) is not None


def unpriced_deployments(config: GatewayConfig) -> list[str]:
    """One line per deployment that has no price at all (for `gateway config check`)."""
    catalogue, source = load_price_map()
    return [
        f"{_named(d)} has no price ({priced.taken_from}): no budget can stop it"
        for d in build_deployments(config)
        if (priced := resolve(d, catalogue, source)).price is None and not is_wildcard(d.model)
    ]


def config_price_warnings(config: GatewayConfig) -> list[str]:
    """Every price warning the config gives (logged at start; for `gateway config check`)."""
    catalogue, source = load_price_map()
    return price_warnings(build_deployments(config), catalogue, source)


def _model_entry(catalogue: dict[str, Any], d: Deployment) -> dict[str, Any] | None:
    """The price map's entry for the deployment's base_model, else for its model."""
    models = [m for m in (d.base_model, d.model) if m]
    return next(
        (e for m in models if (e := _map_entry(catalogue, m, d.provider)) is not None), None
    )


def context_windows(
    deployments: list[Deployment], configured: dict[str, int | None]
) -> dict[str, int]:
    """Per deployment id, the most prompt tokens it takes (for the router's pre-call check):
    its model_info.max_input_tokens (`configured`), else the price map's max_input_tokens for
    its base_model, else for its model."""
    catalogue, _ = load_price_map()
    windows: dict[str, int] = {}
    for d in deployments:
        window = configured.get(d.id)
        if window is None:
            entry = _model_entry(catalogue, d)
            found = entry.get("max_input_tokens") if entry else None
            window = found if isinstance(found, int) and found > 0 else None
        if window is not None:
            windows[d.id] = window
    return windows


def assistant_prefill(
    deployments: list[Deployment], configured: dict[str, bool | None]
) -> frozenset[str]:
    """The ids of the deployments whose model continues a final assistant message marked
    `prefix: true`: as model_info.supports_assistant_prefill says (`configured`), else as the
    price map says for its base_model, else for its model (LiteLLM's own reading)."""
    catalogue, _ = load_price_map()
    found: set[str] = set()
    for d in deployments:
        declared = configured.get(d.id)
        if declared is None:
            entry = _model_entry(catalogue, d)
            declared = bool(entry and entry.get("supports_assistant_prefill") is True)
        if declared:
            found.add(d.id)
    return frozenset(found)


def cost_ranks(prices: PriceTable, deployments: list[Deployment]) -> dict[str, float]:
    """Per deployment id with a known price, its input and output price per token together,
    the order cost-based routing tries deployments in (LiteLLM's lowest-cost routing)."""
    ranks: dict[str, float] = {}
    for d in deployments:
        price = prices.price(d)
        if price is not None:
            ranks[d.id] = price.input + price.output
    return ranks
