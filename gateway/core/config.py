"""The gateway.yaml schema and loader.

`model_list` and `router_settings` follow LiteLLM's proxy config so its users can bring their
file; our own sections sit beside them. Everything is validated strictly: a typo is an error
naming the file, the line and the key path, never a silently ignored setting.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.core.errors import ConfigError
from gateway.core.yamlfile import YamlDocument, format_loc, one_line, validation_problems

log = logging.getLogger("gateway.config")

ENV_PREFIX = "os.environ/"
# Providers (the prefix of litellm_params.model) of classic models, called over /v2 infer:
# a registry version in process, a remote Open Inference Protocol server, an MLflow server.
CLASSIC_PROVIDERS = ("registry", "v2", "mlflow")


def _reject_typos(known: set[str], data: Any) -> Any:
    """LiteLLM passes unknown params through to providers, so we must too; but an unknown
    key that is one edit away from a known one is almost surely a typo worth failing on."""
    if isinstance(data, dict):
        for key in data:
            if key in known or not isinstance(key, str):
                continue
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.85)
            if close:
                raise ValueError(f"unknown key {key!r}: did you mean {close[0]!r}?")
    return data


class LiteLLMParams(BaseModel):
    """A deployment: which upstream model and how to reach it (LiteLLM's litellm_params)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    model: str = Field(min_length=1)
    api_base: str | None = None
    api_key: str | None = None
    api_version: str | None = None
    organization: str | None = None
    weight: float = Field(default=1.0, ge=0)
    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)
    timeout: float | None = Field(default=None, gt=0)
    stream_timeout: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0)
    extra_headers: dict[str, str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _typos(cls, data: Any) -> Any:
        return _reject_typos(set(cls.model_fields), data)

    def extra_params(self) -> dict[str, Any]:
        """Provider parameters LiteLLM would pass through (temperature, drop_params, ...)."""
        return dict(self.model_extra or {})


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    id: str | None = None
    mode: Literal["chat", "completion", "embedding"] | None = None
    base_model: str | None = None
    input_cost_per_token: float | None = Field(default=None, ge=0)
    output_cost_per_token: float | None = Field(default=None, ge=0)
    cache_read_input_token_cost: float | None = Field(default=None, ge=0)
    output_cost_per_reasoning_token: float | None = Field(default=None, ge=0)
    # Ours: "auto" sends OpenAI-compatible upstreams through the pooled fast path and the
    # rest through litellm; "litellm" forces litellm (e.g. to compare behaviour).
    transport: Literal["auto", "litellm"] = "auto"
    description: str | None = None
    # Ours, for classic models (/v2 infer): USD per 1,000 rows predicted.
    cost_per_1k_predictions: float | None = Field(default=None, ge=0)
    # Ours, for classic models served in process: adaptive batching, off unless set.
    # Concurrent calls to one version are predicted together, up to this many rows...
    max_batch_size: int | None = Field(default=None, ge=2)
    # ...a call waiting at most this many seconds for others to join it.
    max_batch_time: float = Field(default=0.002, gt=0, le=10)

    @model_validator(mode="before")
    @classmethod
    def _typos(cls, data: Any) -> Any:
        return _reject_typos(set(cls.model_fields), data)


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(min_length=1)
    litellm_params: LiteLLMParams
    model_info: ModelInfo = Field(default_factory=ModelInfo)


RoutingStrategy = Literal["simple-shuffle", "least-busy", "latency-based-routing"]


class RouterSettings(BaseModel):
    # Infinity and NaN are never a meaningful timeout, wait or weight: a mistake to report.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    routing_strategy: RoutingStrategy = "simple-shuffle"
    num_retries: int = Field(default=2, ge=0, le=10)
    # Seconds for a whole non-streaming attempt, or until a stream's first event.
    timeout: float = Field(default=60.0, gt=0)
    # Seconds a stream may stay silent between events before it counts as stalled.
    stream_timeout: float | None = Field(default=None, gt=0)
    fallbacks: list[dict[str, list[str]]] = Field(default_factory=list)
    # Consecutive failures before a deployment cools down, and for how long (seconds).
    allowed_fails: int = Field(default=3, ge=1)
    cooldown_time: float = Field(default=5.0, ge=0)
    # Backoff between retries: min wait, and the longest upstream retry-after we will sit out;
    # a longer one cools that deployment down and moves on instead of holding the client.
    retry_after: float = Field(default=0.0, ge=0)
    max_retry_wait: float = Field(default=2.0, ge=0)


class GatewaySection(BaseModel):
    """Our own settings beside LiteLLM's sections."""

    model_config = ConfigDict(extra="forbid")

    max_body_bytes: int | None = Field(default=None, ge=1024)
    # Completion tokens reserved against budgets and TPM limits when a request sets no
    # max_tokens; the reservation is settled to the real count after the call.
    default_max_tokens: int = Field(default=4096, ge=1)
    # A chat call whose worst case does not fit what its budget has left is sent with a lower
    # max_tokens that fits (said in x-gateway-max-tokens-capped) instead of being refused;
    # only a call that cannot have even 16 completion tokens is refused.
    cap_max_tokens_to_budget: bool = True
    # Store request and response bodies in the request log (secrets redacted); a key's
    # log_bodies flag turns it on for that key alone.
    log_bodies: bool = False
    # The most an upstream answer (a JSON reply, or one streamed event) may hold before the
    # call fails with a 502: an upstream that never stops sending must not take the memory
    # every other call needs. Large embedding batches are the biggest legitimate answers.
    max_response_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    # Share of classic-model calls (/v2 infer) whose inputs and predictions are kept (table
    # prediction_samples) for drift monitoring, written off the request path.
    prediction_sample_rate: float = Field(default=0.1, ge=0, le=1)


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_list: list[ModelEntry] = Field(default_factory=list)
    router_settings: RouterSettings = Field(default_factory=RouterSettings)
    # Accepted so LiteLLM files load; the keys we act on are documented in the README.
    litellm_settings: dict[str, Any] = Field(default_factory=dict)
    general_settings: dict[str, Any] = Field(default_factory=dict)
    gateway: GatewaySection = Field(default_factory=GatewaySection)

    @model_validator(mode="after")
    def _fallbacks_name_known_aliases(self) -> GatewayConfig:
        aliases = {m.model_name for m in self.model_list}
        for index, rule in enumerate(self.router_settings.fallbacks):
            for source, targets in rule.items():
                for name in [source, *targets]:
                    if name not in aliases:
                        raise ValueError(
                            f"router_settings.fallbacks[{index}] names {name!r}, which is not a "
                            f"model_name in model_list (known: {', '.join(sorted(aliases))})"
                        )
        return self

    def aliases(self) -> list[str]:
        return list(dict.fromkeys(m.model_name for m in self.model_list))


def _resolve_env(value: Any, loc: tuple[str | int, ...], doc: YamlDocument) -> Any:
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        resolved = os.environ.get(name)
        if resolved is None:
            raise ConfigError(
                one_line(
                    f"{doc.where(loc)}: {format_loc(loc)}: environment variable {name} is not "
                    f"set (export it, or remove this entry)"
                )
            )
        return resolved
    if isinstance(value, dict):
        return {k: _resolve_env(v, (*loc, k), doc) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, (*loc, i), doc) for i, v in enumerate(value)]
    return value


def parse_config(doc: YamlDocument, secrets: bool = True) -> GatewayConfig:
    """The validated config; with secrets=False, `os.environ/NAME` values stay unresolved, for
    tools that need the model names and not the keys (`prompts validate` in CI)."""
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{doc.where(())}: the top level must be a mapping of sections")
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(doc, exc, GatewayConfig)) from None
    if not secrets:
        return config
    # Secrets are resolved after validation so an error never echoes a secret's value.
    for index, entry in enumerate(config.model_list):
        loc = ("model_list", index, "litellm_params")
        raw = entry.litellm_params.model_dump(exclude_none=True)
        resolved = _resolve_env(raw, loc, doc)
        try:
            entry.litellm_params = LiteLLMParams.model_validate(resolved)
        except ValidationError as exc:  # a variable's value does not fit (model: an empty one)
            err = exc.errors(include_url=False)[0]
            at = (*loc, *err["loc"])
            written = raw.get(str(err["loc"][0])) if err["loc"] else None
            variable = "its environment variable"
            if isinstance(written, str) and written.startswith(ENV_PREFIX):
                variable = f"environment variable {written[len(ENV_PREFIX) :]}"
            # The message never echoes the value: it may be a secret.
            raise ConfigError(
                one_line(
                    f"{doc.where(at)}: {format_loc(at)}: {variable} holds an invalid value: "
                    f"{err['msg']}"
                )
            ) from None
    for section in ("litellm_settings", "general_settings"):
        keys = sorted(getattr(config, section))
        if keys:
            log.info(
                "%s: %s keys accepted and not used by the gateway: %s", doc.path, section, keys
            )
    return config


def load_config(path: Path, secrets: bool = True) -> GatewayConfig:
    return parse_config(YamlDocument.read(path), secrets)


def config_json_schema() -> str:
    schema = GatewayConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "LLMOps gateway config (gateway.yaml)"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
