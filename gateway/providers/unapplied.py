"""The deployment settings a config gives that the gateway accepts and does not apply.

LiteLLM files carry keys for LiteLLM's router, proxy and callbacks (itpm, mock_response, ...)
and settings only litellm acts on (aws_region_name on an OpenAI-compatible upstream). They load,
none reaches the provider, and each is named here rather than silently dropped: logged at
start and printed by `gateway config check`.
"""

from __future__ import annotations

from gateway.core.config import GatewayConfig, ModelEntry
from gateway.core.deployment_params import is_litellm_only, provider_and_model, split_params
from gateway.core.price_keys import PRICE_KEYS
from gateway.providers.openai_compat import takes_fast_path

# Modes whose calls the gateway serves (chat and completion models answer chat calls).
SERVED_MODES = frozenset({"chat", "completion", "embedding"})


def _named(entry: ModelEntry, index: int) -> str:
    deployment = entry.model_info.id or f"{entry.model_name}#{index}"
    return f"deployment {deployment!r} of model {entry.model_name!r}"


def unapplied_settings(config: GatewayConfig) -> list[str]:
    """One line per deployment with settings accepted and not applied (prices aside: see
    metering/prices.py config_price_warnings)."""
    found = []
    for index, entry in enumerate(config.model_list):
        named = _named(entry, index)
        split = split_params(entry.litellm_params.extra_params())
        ignored = sorted(k for k in split.metadata if k not in PRICE_KEYS and k != "base_model")
        if ignored:
            found.append(
                f"{named}: litellm_params {', '.join(ignored)} accepted and not applied "
                "(LiteLLM router, proxy or callback settings the gateway does not act on); "
                "none is sent to the provider"
            )
        params = entry.litellm_params
        provider, _ = provider_and_model(params.model, params.model_extra)
        if provider != "local" and takes_fast_path(provider, entry.model_info.transport):
            litellm_only = sorted(k for k in split.litellm if is_litellm_only(k))
            if litellm_only:
                found.append(
                    f"{named}: litellm_params {', '.join(litellm_only)} are read by litellm "
                    "only, and this deployment takes the OpenAI-compatible fast path, which "
                    "sends the parameters as given (drop_params has nothing to drop there); "
                    "set model_info.transport: litellm to have litellm apply them"
                )
        mode = entry.model_info.mode
        if mode is not None and mode not in SERVED_MODES:
            found.append(
                f"{named}: model_info.mode {mode!r} accepted; the gateway serves chat and "
                "embeddings calls only, so this deployment answers those (or fails upstream)"
            )
    return found
