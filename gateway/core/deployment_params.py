"""Where each of a deployment's extra `litellm_params` goes: to the provider, to litellm, or
nowhere (kept as routing and pricing metadata).

LiteLLM's router hands a deployment's litellm_params to `litellm.completion`, which keeps the
names it knows for itself (its `all_litellm_params`: routing, pricing, credentials, logging) and
sends every other one to the provider as a request parameter. The gateway makes the same split,
once at load:

- provider parameters (temperature, max_tokens, response_format, a vLLM server's top_k, ...)
  go in the request body of both paths; `extra_body` is merged into the fast path's body, as
  OpenAI's SDK does, and handed to litellm as it is;
- LiteLLM's provider settings (credentials such as aws_region_name or vertex_project,
  region_name, drop_params, prompt templates) go to litellm's call only: an OpenAI-compatible
  upstream has no use for them;
- LiteLLM's router, proxy, pricing, logging and caching keys (tags, order, rpm, itpm,
  input_cost_per_token, mock_response, ...) go nowhere: the gateway does that work itself, or
  reports at load that it does not (see `unapplied_params`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.core.litellm_keys import LITELLM_ONLY_PARAMS
from gateway.core.price_keys import PRICE_KEYS

# Families of provider credentials litellm reads; more than its lists name (vertex_ai_project).
CREDENTIAL_PREFIXES = ("aws_", "vertex_", "watsonx_", "azure_")

# OpenAI client settings, never part of a request body (the gateway's own fields carry the
# ones it uses; litellm reads the others).
CLIENT_SETTINGS = frozenset(
    {"base_url", "default_headers", "deployment_id", "request_timeout", "stream"}
)

# LiteLLM keys for work its router, proxy, callbacks, cache or vector stores do (the gateway
# does its own, or none) and settings the gateway's own fields carry: never passed to litellm's
# call, where some would act (mock_response answers without calling the provider, fallbacks
# and num_retries retry inside litellm, stream and text_completion change the call).
ROUTER_AND_PROXY_KEYS = frozenset(
    {
        "acompletion",
        "aembedding",
        "aimg_generation",
        "allm_passthrough_route",
        "allow_client_keepalive_override",
        "allowed_model_region",
        "async_call",
        "atext_completion",
        "attempted_targets",
        "base_model",
        "bucket_name",
        "budget_duration",
        "cache",
        "cache_key",
        "caching",
        "caching_groups",
        "client",
        "client_side_timeout",
        "complete_response",
        "completion_call_id",
        "configurable_clientside_auth_params",
        "context_window_fallback_dict",
        "cooldown_time",
        "cost_per_query",
        "data_residency",
        "daily_reset_time",
        "default_api_key_rpm_limit",
        "default_api_key_tpm_limit",
        "enable_tag_filtering",
        "fallback_depth",
        "fallbacks",
        "fastest_response",
        "force_timeout",
        "guardrails",
        "id",
        "itpm",
        "keepalive_seconds",
        "kubernetes_pod_discovery",
        "log_client_error_tracebacks",
        "logger_fn",
        "max_agentic_loops",
        "max_budget",
        "max_fallbacks",
        "max_file_size_mb",
        "max_parallel_requests",
        "metadata",
        "mock_response",
        "mock_timeout",
        "model_alias_map",
        "model_config",
        "model_file_id_mapping",
        "model_info",
        "model_list",
        "no-log",
        "num_retries",
        "order",
        "otpm",
        "output_vector_size",
        "preset_cache_key",
        "provider_affinity_header",
        "proxy_server_request",
        "retry_policy",
        "request_timeout",
        "retry_strategy",
        "routing_strategy",
        "rpd",
        "rpm",
        "rust",
        "search_tool_name",
        "secret_fields",
        "self",
        "shared_session",
        "silent_model",
        "stream",
        "stream_response",
        "stream_timeout_by_service_tier",
        "switchyard_router_config",
        "tag_regex",
        "tags",
        "text_completion",
        "timeout_by_service_tier",
        "tpd",
        "tpm",
        "ttl",
        "turn_off_message_logging",
        "use_client",
        "use_in_pass_through",
        "vector_store_id",
        "verbose",
        "weight",
    }
)
# Internal state, LiteLLM's own routers, prompt management and logging destinations.
_ROUTER_AND_PROXY_PREFIXES = (
    "_",
    "adaptive_router_",
    "arize_",
    "auto_router_",
    "complexity_router_",
    "dd_",
    "gcs_",
    "humanloop_",
    "langfuse_",
    "langsmith_",
    "litellm_",
    "milvus_",
    "newrelic_",
    "posthog_",
    "prompt_",
    "quality_router_",
    "s3_",
    "signoz_",
    "valkey_",
    "wandb_",
    "weave_",
)


def is_litellm_only(key: str) -> bool:
    """A key LiteLLM consumes itself: never a provider's request parameter."""
    return (
        key in LITELLM_ONLY_PARAMS or key in CLIENT_SETTINGS or key.startswith(CREDENTIAL_PREFIXES)
    )


def is_router_or_proxy_key(key: str) -> bool:
    return (
        key in ROUTER_AND_PROXY_KEYS
        or key in PRICE_KEYS
        or (is_litellm_only(key) and key.startswith(_ROUTER_AND_PROXY_PREFIXES))
    )


@dataclass(frozen=True, slots=True)
class ParamSplit:
    # The request parameters the provider takes, as the fast path sends them.
    body: dict[str, Any] = field(default_factory=dict)
    # What litellm's call takes besides the request: the request parameters (extra_body as
    # it is) and LiteLLM's provider settings.
    litellm: dict[str, Any] = field(default_factory=dict)
    # LiteLLM's router, proxy and pricing keys: read where the gateway acts on them, never sent.
    metadata: dict[str, Any] = field(default_factory=dict)


def provider_and_model(model: str, extras: dict[str, Any] | None) -> tuple[str, str]:
    """The provider and the name the upstream is asked for, as litellm's get_llm_provider
    reads them: litellm_params.custom_llm_provider, else the prefix before the first "/"."""
    custom = (extras or {}).get("custom_llm_provider")
    if isinstance(custom, str) and custom:
        prefix, _, rest = model.partition("/")
        return custom, rest if prefix == custom and rest else model
    provider, _, upstream_model = model.partition("/")
    if not upstream_model:
        return "openai", model
    return provider, upstream_model


def split_params(extras: dict[str, Any]) -> ParamSplit:
    split = ParamSplit()
    for key, value in extras.items():
        if is_router_or_proxy_key(key):
            split.metadata[key] = value
        elif is_litellm_only(key):
            split.litellm[key] = value
        else:
            split.litellm[key] = value
            if key == "extra_body" and isinstance(value, dict):
                split.body.update(value)
            else:
                split.body[key] = value
    return split
