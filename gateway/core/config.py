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
from urllib.parse import quote

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.core.errors import ConfigError
from gateway.core.yamlfile import YamlDocument, format_loc, one_line, validation_problems

log = logging.getLogger("gateway.config")

ENV_PREFIX = "os.environ/"


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
    # The most prompt tokens it takes, for router_settings.enable_pre_call_checks (else the
    # price map's max_input_tokens for the model).
    max_input_tokens: int | None = Field(default=None, ge=1)
    # Ours: "auto" sends OpenAI-compatible upstreams through the pooled fast path and the
    # rest through litellm; "litellm" forces litellm (e.g. to compare behaviour).
    transport: Literal["auto", "litellm"] = "auto"
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _typos(cls, data: Any) -> Any:
        return _reject_typos(set(cls.model_fields), data)


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(min_length=1)
    litellm_params: LiteLLMParams
    model_info: ModelInfo = Field(default_factory=ModelInfo)


RoutingStrategy = Literal[
    "simple-shuffle",
    "least-busy",
    "latency-based-routing",
    "usage-based-routing",
    "usage-based-routing-v2",
    "cost-based-routing",
]
# [{alias: [alias or model_info.id, ...]}, ...]; "*" as the alias applies to every alias
# without an entry of its own (LiteLLM's default_fallbacks are kept that way).
Fallbacks = list[dict[str, list[str]]]
# The kinds of failure LiteLLM's retry_policy and allowed_fails_policy name, as the prefix of
# their keys (`RateLimitErrorRetries`); routing/failures.py says which failure is which.
FAILURE_KINDS = (
    "BadRequest",
    "Authentication",
    "Timeout",
    "RateLimit",
    "ContentPolicyViolation",
    "InternalServer",
    "ServiceUnavailable",
    "BadGateway",
    "NotFound",
)


class RetryPolicy(BaseModel):
    """LiteLLM's retry_policy: retries for one kind of failure, in place of num_retries."""

    model_config = ConfigDict(extra="forbid")

    BadRequestErrorRetries: int | None = Field(default=None, ge=0)
    AuthenticationErrorRetries: int | None = Field(default=None, ge=0)
    TimeoutErrorRetries: int | None = Field(default=None, ge=0)
    RateLimitErrorRetries: int | None = Field(default=None, ge=0)
    ContentPolicyViolationErrorRetries: int | None = Field(default=None, ge=0)
    InternalServerErrorRetries: int | None = Field(default=None, ge=0)
    ServiceUnavailableErrorRetries: int | None = Field(default=None, ge=0)
    NotFoundErrorRetries: int | None = Field(default=None, ge=0)
    # For the upstream faults none of the keys above names (LiteLLM: any other exception).
    DefaultRetries: int | None = Field(default=None, ge=0)

    def retries(self) -> tuple[dict[str, int], int | None]:
        """Retries per failure kind that has a value, and DefaultRetries."""
        named = {
            kind: value
            for kind in FAILURE_KINDS
            if (value := getattr(self, f"{kind}ErrorRetries", None)) is not None
        }
        return named, self.DefaultRetries


class AllowedFailsPolicy(BaseModel):
    """LiteLLM's allowed_fails_policy: allowed_fails for one kind of failure."""

    model_config = ConfigDict(extra="forbid")

    BadRequestErrorAllowedFails: int | None = Field(default=None, ge=0)
    AuthenticationErrorAllowedFails: int | None = Field(default=None, ge=0)
    TimeoutErrorAllowedFails: int | None = Field(default=None, ge=0)
    RateLimitErrorAllowedFails: int | None = Field(default=None, ge=0)
    ContentPolicyViolationErrorAllowedFails: int | None = Field(default=None, ge=0)
    InternalServerErrorAllowedFails: int | None = Field(default=None, ge=0)
    ServiceUnavailableErrorAllowedFails: int | None = Field(default=None, ge=0)
    BadGatewayErrorAllowedFails: int | None = Field(default=None, ge=0)
    NotFoundErrorAllowedFails: int | None = Field(default=None, ge=0)

    def allowed(self) -> dict[str, int]:
        return {
            kind: value
            for kind in FAILURE_KINDS
            if (value := getattr(self, f"{kind}ErrorAllowedFails")) is not None
        }


class RouterSettings(BaseModel):
    # Infinity and NaN are never a meaningful timeout, wait or weight: a mistake to report.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    routing_strategy: RoutingStrategy = "simple-shuffle"
    # No upper bound, as in LiteLLM: retries also stop once every deployment cools down.
    num_retries: int = Field(default=2, ge=0)
    retry_policy: RetryPolicy | None = None
    # Seconds for a whole non-streaming attempt, or until a stream's first event.
    timeout: float = Field(default=60.0, gt=0)
    # Seconds a stream may stay silent between events before it counts as stalled.
    stream_timeout: float | None = Field(default=None, gt=0)
    fallbacks: Fallbacks = Field(default_factory=list)
    # When the upstream says the prompt is longer than the model takes, or its content
    # filter refused it: these instead of `fallbacks` (which apply when these are unset).
    context_window_fallbacks: Fallbacks = Field(default_factory=list)
    content_policy_fallbacks: Fallbacks = Field(default_factory=list)
    # Fallbacks for every alias that has no entry in `fallbacks`.
    default_fallbacks: list[str] = Field(default_factory=list)
    # The most fallback aliases one call tries (LiteLLM's default).
    max_fallbacks: int = Field(default=5, ge=0)
    # A deployment cools down when it fails more than this many times, each failure within
    # cooldown_time seconds of the one before (0: at its first failure), for cooldown_time s.
    allowed_fails: int = Field(default=3, ge=0)
    allowed_fails_policy: AllowedFailsPolicy | None = None
    cooldown_time: float = Field(default=5.0, ge=0)
    disable_cooldowns: bool = False
    # Skip deployments whose context window (model_info.max_input_tokens, else the price
    # map's) is smaller than the prompt, estimated at 4 characters a token.
    enable_pre_call_checks: bool = False
    # Backoff between retries: min wait, and the longest upstream retry-after we will sit out;
    # a longer one cools that deployment down and moves on instead of holding the client.
    retry_after: float = Field(default=0.0, ge=0)
    max_retry_wait: float = Field(default=2.0, ge=0)
    # LiteLLM's Redis for sharing router state between replicas: here the Redis that makes
    # budgets and rate limits exact across replicas, when GATEWAY_REDIS_URL is unset.
    redis_url: str | None = None
    redis_host: str | None = None
    redis_port: int | str | None = None  # a string only as os.environ/NAME
    redis_password: str | None = None
    provider_budget_config: Any = None

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        # `fallbacks:` with its entries commented out: LiteLLM's Router reads None as unset.
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data

    @field_validator("provider_budget_config")
    @classmethod
    def _no_provider_budgets(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError(
                "LiteLLM's provider budgets are not supported; budget spend per key or team "
                "instead (max_budget and budget_duration: POST /v1/keys, POST /v1/teams, "
                "gateway teams create --max-budget), and remove provider_budget_config"
            )
        return value

    @field_validator("redis_port")
    @classmethod
    def _port(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, str) and not value.startswith(ENV_PREFIX):
            try:
                return int(value)
            except ValueError:
                raise ValueError("must be a port number or os.environ/NAME") from None
        return value

    def shared_redis_url(self) -> str | None:
        """The Redis these settings name (after secrets are resolved), as LiteLLM's Router
        reads them: redis_url, else redis_host with redis_port (6379 when left out; LiteLLM
        would silently use no Redis)."""
        if self.redis_url:
            return self.redis_url
        if self.redis_host is None:
            return None
        password = f":{quote(self.redis_password, safe='')}@" if self.redis_password else ""
        host = self.redis_host
        if ":" in host and not host.startswith("["):  # an IPv6 address
            host = f"[{host}]"
        return f"redis://{password}{host}:{self.redis_port or 6379}"


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


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_list: list[ModelEntry] = Field(default_factory=list)
    router_settings: RouterSettings = Field(default_factory=RouterSettings)
    # Accepted so LiteLLM files load; the keys we act on are documented in the README.
    litellm_settings: dict[str, Any] = Field(default_factory=dict)
    general_settings: dict[str, Any] = Field(default_factory=dict)
    gateway: GatewaySection = Field(default_factory=GatewaySection)

    @model_validator(mode="after")
    def _litellm_reliability(self) -> GatewayConfig:
        """litellm_settings' router keys, where router_settings leaves them unset, as LiteLLM's
        Router reads them (`router value or litellm.<key>`)."""
        origins = apply_litellm_router_keys(self.router_settings, self.litellm_settings)
        problems = fallback_problems(self, origins)
        if problems:
            raise ConfigProblems(problems)
        return self

    def fallback_names(self) -> tuple[set[str], set[str]]:
        """The names fallbacks may start from (aliases, and "*" for all), and the names they
        may go to (aliases and model_info ids, which name one deployment)."""
        aliases = {m.model_name for m in self.model_list}
        ids = {m.model_info.id for m in self.model_list if m.model_info.id}
        return aliases | {"*"}, aliases | ids

    def aliases(self) -> list[str]:
        return list(dict.fromkeys(m.model_name for m in self.model_list))


Loc = tuple[str | int, ...]


class ConfigProblems(ConfigError):
    """Problems found across sections, each at its key path; parse_config names their lines
    (a pydantic model validator can only place an error at the top of the file)."""

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{format_loc(loc)}: {text}" for loc, text in problems))


# litellm_settings keys LiteLLM's Router falls back to when its own argument is unset, and the
# router_settings key each stands for (request_timeout is the Router's timeout).
LITELLM_ROUTER_KEYS = {
    "num_retries": "num_retries",
    "request_timeout": "timeout",
    "allowed_fails": "allowed_fails",
    "cooldown_time": "cooldown_time",
    "fallbacks": "fallbacks",
    "context_window_fallbacks": "context_window_fallbacks",
    "content_policy_fallbacks": "content_policy_fallbacks",
    "default_fallbacks": "default_fallbacks",
    "max_fallbacks": "max_fallbacks",
}
FALLBACK_KEYS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")


def apply_litellm_router_keys(router: RouterSettings, litellm: dict[str, Any]) -> dict[str, str]:
    """Sets each router key router_settings left unset (a list left empty counts as unset, as
    LiteLLM's `or` reads it) from litellm_settings; returns the section each fallback list
    came from. A value of the wrong type is an error at its litellm_settings line."""
    origins = {key: "router_settings" for key in (*FALLBACK_KEYS, "default_fallbacks")}
    problems: list[tuple[Loc, str]] = []
    for key, field in LITELLM_ROUTER_KEYS.items():
        if litellm.get(key) is None:
            continue
        try:
            value = getattr(RouterSettings.model_validate({field: litellm[key]}), field)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                problems.append((("litellm_settings", key, *err["loc"][1:]), err["msg"]))
            continue
        mine = getattr(router, field)
        if field in router.model_fields_set and not (isinstance(mine, list) and not mine):
            continue
        setattr(router, field, value)
        origins[field] = "litellm_settings"
    if problems:
        raise ConfigProblems(problems)
    return origins


def fallback_problems(config: GatewayConfig, origins: dict[str, str]) -> list[tuple[Loc, str]]:
    """Fallbacks that name something the gateway does not serve, at their own line."""
    sources, targets = config.fallback_names()
    router = config.router_settings
    known = f"(known: {', '.join(sorted(sources - {'*'}))})"
    problems: list[tuple[Loc, str]] = []

    def check_targets(at: Loc, names: list[str]) -> None:
        for position, name in enumerate(names):
            if name not in targets:
                text = f"{name!r} is not a model_name or model_info.id in model_list {known}"
                problems.append(((*at, position), text))

    for field in FALLBACK_KEYS:
        for index, rule in enumerate(getattr(router, field)):
            for source, names in rule.items():
                at: Loc = (origins[field], field, index, source)
                if source not in sources:
                    problems.append((at, f"{source!r} is not a model_name in model_list {known}"))
                check_targets(at, names)
    check_targets((origins["default_fallbacks"], "default_fallbacks"), router.default_fallbacks)
    return problems


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
    except ConfigProblems as exc:
        lines = [
            one_line(f"{doc.where(loc)}: {format_loc(loc)}: {text}") for loc, text in exc.problems
        ]
        raise ConfigError("\n".join(lines)) from None
    if not secrets:
        return config
    _resolve_router_secrets(config.router_settings, doc)
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
        applied = LITELLM_ROUTER_KEYS if section == "litellm_settings" else {}
        keys = sorted(set(getattr(config, section)) - set(applied))
        if keys:
            log.info(
                "%s: %s keys accepted and not used by the gateway: %s", doc.path, section, keys
            )
    return config


def _resolve_router_secrets(router: RouterSettings, doc: YamlDocument) -> None:
    """router_settings' Redis keys may be os.environ/NAME, as LiteLLM allows."""
    for key in ("redis_url", "redis_host", "redis_port", "redis_password"):
        value = getattr(router, key)
        loc = ("router_settings", key)
        resolved = _resolve_env(value, loc, doc)
        if key == "redis_port" and isinstance(resolved, str):
            if not resolved.isdigit():
                raise ConfigError(
                    f"{doc.where(loc)}: {format_loc(loc)}: its environment variable does not "
                    f"hold a port number"
                )
            resolved = int(resolved)
        setattr(router, key, resolved)


def load_config(path: Path, secrets: bool = True) -> GatewayConfig:
    return parse_config(YamlDocument.read(path), secrets)


def config_json_schema() -> str:
    schema = GatewayConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "LLMOps gateway config (gateway.yaml)"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
