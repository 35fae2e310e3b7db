"""Which of LiteLLM's keys are prices, and their values checked where a config declares them.

LiteLLM takes a deployment's prices from `litellm_params` (its documented place) and from
`model_info`, under ~200 names (per token, per cached token, per second, per image, long-context
tiers, service tiers, ...). A config may use any of them; the metering room applies the ones
that price the calls the gateway makes and reports the rest (metering/prices.py).
"""

from __future__ import annotations

import math
from typing import Any

from gateway.core.litellm_keys import CUSTOM_PRICING_PARAMS, MODEL_INFO_KEYS

# LiteLLM's structured prices (a table of tiers, a window of hours, a table per context size).
_STRUCTURED = frozenset({"tiered_pricing", "off_peak_pricing"})

PRICE_KEYS = frozenset(
    (
        CUSTOM_PRICING_PARAMS
        | _STRUCTURED
        | {key for key in MODEL_INFO_KEYS if "cost" in key or key.endswith("_multiplier")}
    )
    - {"output_vector_size"}  # among LiteLLM's custom-pricing fields, but an embedding's size
)


def is_price_key(key: str) -> bool:
    return key in PRICE_KEYS


def check_declared_prices(extras: dict[str, Any] | None) -> None:
    """Every price among a section's extra keys is a number >= 0 (a number written as a string,
    as YAML reads `1e-6`, becomes one) or one of LiteLLM's structured prices."""
    for key, value in (extras or {}).items():
        if key not in PRICE_KEYS or value is None or isinstance(value, dict | list):
            continue
        number = _number(value)
        if number is None or not math.isfinite(number) or number < 0:
            raise ValueError(f"{key}: a price must be a number >= 0, got {value!r}")
        extras[key] = number  # type: ignore[index]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def declared_prices(fields: dict[str, Any], extras: dict[str, Any] | None) -> dict[str, Any]:
    """The prices a section declares: its price fields and extra keys that are set."""
    found = {k: v for k, v in fields.items() if k in PRICE_KEYS and v is not None}
    found.update({k: v for k, v in (extras or {}).items() if k in PRICE_KEYS and v is not None})
    return found
