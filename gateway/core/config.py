"""The gateway.yaml schema and loader.

`model_list` and `router_settings` follow LiteLLM's proxy config so its users can bring their
file; our own sections sit beside them. Everything is validated strictly: a typo is an error
naming the file, the line and the key path, never a silently ignored setting.
"""

from __future__ import annotations

import difflib
import json
import logging
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired
from urllib.parse import quote

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from gateway.core.deployment_params import CREDENTIAL_PREFIXES
from gateway.core.drift_config import DriftSection
from gateway.core.errors import ConfigError
from gateway.core.file_env import ENV_PREFIX, FileEnvironment, missing_variable, referenced, resolve
from gateway.core.includes import read_config
from gateway.core.index_config import IndexesSection, check_indexes
from gateway.core.litellm_keys import (
    LITELLM_ONLY_PARAMS,
    MODEL_INFO_KEYS,
    OPENAI_PARAMS,
)
from gateway.core.litellm_support import LITELLM_ROUTER_KEYS, RULES, review
from gateway.core.load_report import FromFile, LeftOut, LoadReport
from gateway.core.price_keys import check_declared_prices
from gateway.core.wildcards import first_match, is_wildcard, most_specific_first
from gateway.core.yamlfile import YamlDocument, format_loc, one_line, validation_problems

log = logging.getLogger("gateway.config")

# LiteLLM's name for a credential_list entry, in a deployment's litellm_params.
CREDENTIAL_KEY = "litellm_credential_name"
# Providers (the prefix of litellm_params.model) of classic models, called over /v2 infer:
# a registry version in process, a remote Open Inference Protocol server, an MLflow server.
CLASSIC_PROVIDERS = ("registry", "v2", "mlflow")


def tls_problems(verify: Any, certificate: str | None, key: str | None) -> list[str]:
    """Missing files among TLS settings (the upstream's, or litellm_settings' defaults)."""
    found = []
    if isinstance(verify, str) and not Path(verify).exists():
        found.append(f"ssl_verify: no CA bundle (file or directory) at {verify}")
    for name, path in (("ssl_certificate", certificate), ("ssl_certificate_key", key)):
        if path is not None and not Path(path).is_file():
            found.append(f"{name}: no file at {path}")
    if key is not None and certificate is None:
        found.append("ssl_certificate_key is set without ssl_certificate")
    return found


def _reject_typos(known: set[str] | frozenset[str], data: Any) -> Any:
    """LiteLLM passes unknown params through to providers, so we must too; but an unknown
    key that is one edit away from a known one is almost surely a typo worth failing on.
    `known` holds LiteLLM's own names too, so its real keys are never taken for typos, nor
    are provider credentials (aws_..., vertex_...: families too large to list)."""
    if isinstance(data, dict):
        for key in data:
            if key in known or not isinstance(key, str) or key.startswith(CREDENTIAL_PREFIXES):
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
    # Tag-based routing (router_settings.enable_tag_filtering): routing metadata, never sent.
    tags: list[str] | None = None
    # LiteLLM's documented place for a deployment's own prices (they win over model_info's);
    # every other LiteLLM price key is accepted too (see gateway/metering/prices.py).
    input_cost_per_token: float | None = Field(default=None, ge=0)
    output_cost_per_token: float | None = Field(default=None, ge=0)
    cache_read_input_token_cost: float | None = Field(default=None, ge=0)
    cache_creation_input_token_cost: float | None = Field(default=None, ge=0)
    output_cost_per_reasoning_token: float | None = Field(default=None, ge=0)
    # The price map's name for the model, as model_info.base_model (which wins when both).
    base_model: str | None = None
    # TLS to the upstream, LiteLLM's keys (litellm_settings' of the same names are the
    # default): ssl_verify false turns certificate checks off, a path trusts that CA bundle
    # (a file or a directory); ssl_certificate is a client certificate (PEM, holding its key
    # unless ssl_certificate_key, ours, names another file). Never sent to the provider.
    ssl_verify: bool | str | None = None
    ssl_certificate: str | None = None
    ssl_certificate_key: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _typos(cls, data: Any) -> Any:
        return _reject_typos(set(cls.model_fields) | LITELLM_ONLY_PARAMS | OPENAI_PARAMS, data)

    @model_validator(mode="after")
    def _prices(self) -> LiteLLMParams:
        check_declared_prices(self.model_extra)
        return self

    @model_validator(mode="after")
    def _tls_files(self) -> LiteLLMParams:
        problems = tls_problems(self.ssl_verify, self.ssl_certificate, self.ssl_certificate_key)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def extra_params(self) -> dict[str, Any]:
        """The extra keys as written, LiteLLM's own and provider parameters alike; which of
        them reach the provider is decided by core/deployment_params.split_params."""
        return dict(self.model_extra or {})


# LiteLLM's model modes (its ModelInfo type and price map; tests/test_litellm_keys.py holds
# this list to them). The gateway serves chat and embeddings whatever the mode says.
ModelMode = Literal[
    "audio_speech",
    "audio_transcription",
    "chat",
    "completion",
    "decisions",
    "embedding",
    "evaluation",
    "extraction",
    "guardrail",
    "image_edit",
    "image_generation",
    "moderation",
    "ocr",
    "realtime",
    "rerank",
    "responses",
    "search",
    "vector_store",
    "video_generation",
]


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    id: str | None = None
    mode: ModelMode | None = None
    base_model: str | None = None
    input_cost_per_token: float | None = Field(default=None, ge=0)
    output_cost_per_token: float | None = Field(default=None, ge=0)
    cache_read_input_token_cost: float | None = Field(default=None, ge=0)
    cache_creation_input_token_cost: float | None = Field(default=None, ge=0)
    output_cost_per_reasoning_token: float | None = Field(default=None, ge=0)
    # The most prompt tokens it takes, for router_settings.enable_pre_call_checks (else the
    # price map's max_input_tokens for the model).
    max_input_tokens: int | None = Field(default=None, ge=1)
    # LiteLLM's last place for a deployment's limits (after the entry's and litellm_params').
    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)
    # Ours: "auto" sends OpenAI-compatible upstreams through the pooled fast path and the
    # rest through litellm; "litellm" forces litellm (e.g. to compare behaviour).
    transport: Literal["auto", "litellm"] = "auto"
    # LiteLLM's flag (else the price map's): the model continues a final assistant message
    # marked `prefix: true`, which mid-stream recovery (gateway.stream_recovery) uses.
    supports_assistant_prefill: bool | None = None
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
        return _reject_typos(set(cls.model_fields) | MODEL_INFO_KEYS, data)

    @model_validator(mode="after")
    def _prices(self) -> ModelInfo:
        check_declared_prices(self.model_extra)
        return self


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(min_length=1)
    litellm_params: LiteLLMParams
    model_info: ModelInfo = Field(default_factory=ModelInfo)
    # Some LiteLLM docs write a deployment's limits here, beside litellm_params; these win.
    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)


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


class ModelGroupAliasItem(TypedDict):
    """model_group_alias's long form: the group it routes to, and whether /v1/models hides it."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    model: str
    hidden: NotRequired[bool]


# Either form, told apart by its type, so a mistake in one is reported for that form alone.
GroupAlias = Annotated[
    Annotated[str, Tag("name")] | Annotated[ModelGroupAliasItem, Tag("long form")],
    Discriminator(
        lambda value: (
            "name" if isinstance(value, str) else "long form" if isinstance(value, dict) else None
        ),
        custom_error_type="model_group_alias",
        custom_error_message="should be a model group's name, or {model: NAME, hidden: true}",
    ),
]


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
    # Another name for a model group (LiteLLM's): "gpt-4": "gpt-4o", or the long form
    # {"model": "gpt-4o", "hidden": true} to keep it out of /v1/models.
    model_group_alias: dict[str, GroupAlias] = Field(default_factory=dict)
    # Tag-based routing: a request's tags pick the deployments whose litellm_params.tags
    # match (any one of them, or all of them when tag_filtering_match_any is false).
    enable_tag_filtering: bool = False
    tag_filtering_match_any: bool = True
    # LiteLLM's switch for mid-stream recovery on every model name: gateway.stream_recovery's
    # "*" when that leaves it unset.
    enable_mid_stream_fallback_continuation: bool = False

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

    def group_aliases(self) -> dict[str, str]:
        """model_group_alias as alias -> the model group it routes to."""
        return {
            alias: target if isinstance(target, str) else target["model"]
            for alias, target in self.model_group_alias.items()
        }

    def hidden_aliases(self) -> frozenset[str]:
        return frozenset(
            alias
            for alias, target in self.model_group_alias.items()
            if not isinstance(target, str) and target.get("hidden", False)
        )


class GatewaySection(BaseModel):
    """Our own settings beside LiteLLM's sections."""

    model_config = ConfigDict(extra="forbid")

    max_body_bytes: int | None = Field(default=None, ge=1024)
    # Completion tokens reserved against budgets and TPM limits when a request sets no
    # max_tokens; the reservation is settled to the real count after the call.
    default_max_tokens: int = Field(default=4096, ge=1)
    # Connections the OpenAI-compatible fast path keeps open to one upstream (host and port):
    # past it a call waits for one to come free, within its timeout. Unset: no bound.
    upstream_connections_per_host: int | None = Field(default=None, ge=1)
    # Seconds an idle upstream connection is kept for the next call, then closed.
    upstream_keepalive_seconds: float = Field(default=60.0, gt=0, le=3600)
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
    # Per model name (or "*" for every other): a stream cut or stalled after it began goes on
    # on the next deployment the router chooses, which continues the text the client has.
    stream_recovery: dict[str, bool] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, value: Any) -> Any:
        if isinstance(value, dict) and "prediction_sample_rate" in value:
            raise ValueError(
                "prediction_sample_rate moved to drift monitoring: a classic model's calls "
                "are sampled at its drift.subjects entry's sample_rate (e.g. drift: "
                "{subjects: [{model: iris, sample_rate: 0.1}]}); remove it here"
            )
        return value


class Credential(BaseModel):
    """LiteLLM's credential_list entry: values deployments take by `litellm_credential_name`."""

    model_config = ConfigDict(extra="forbid")

    credential_name: str = Field(min_length=1)
    credential_values: dict[str, Any] = Field(default_factory=dict)
    credential_info: dict[str, Any] | None = None


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_list: list[ModelEntry] = Field(default_factory=list)
    # LiteLLM's: set for the process when the gateway serves (see core/file_env.py).
    environment_variables: dict[str, str | int | float | bool] = Field(default_factory=dict)
    credential_list: list[Credential] = Field(default_factory=list)
    router_settings: RouterSettings = Field(default_factory=RouterSettings)
    # Accepted so LiteLLM files load; the keys we act on are documented in the README.
    litellm_settings: dict[str, Any] = Field(default_factory=dict)
    general_settings: dict[str, Any] = Field(default_factory=dict)
    gateway: GatewaySection = Field(default_factory=GatewaySection)
    # Drift monitoring (gateway/core/drift_config.py): sampling, references, tests, webhook.
    drift: DriftSection = Field(default_factory=DriftSection)
    indexes: IndexesSection = Field(default_factory=IndexesSection)  # vector index health

    @model_validator(mode="after")
    def _litellm_reliability(self) -> GatewayConfig:
        """litellm_settings' router keys, where router_settings leaves them unset, as LiteLLM's
        Router reads them (`router value or litellm.<key>`)."""
        origins = apply_litellm_router_keys(self.router_settings, self.litellm_settings)
        problems = fallback_problems(self, origins) + stream_recovery_problems(self)
        if problems:
            raise ConfigProblems(problems)
        return self

    def fallback_names(self) -> tuple[set[str], set[str]]:
        """The names fallbacks may start from (model_names, model_group_alias names, and "*"
        for all), and the names they may go to (the same, and model_info ids, which name one
        deployment). A name a wildcard model_name serves may be either too (see `routes`)."""
        names = {m.model_name for m in self.model_list} | set(
            self.router_settings.model_group_alias
        )
        ids = {m.model_info.id for m in self.model_list if m.model_info.id}
        return names | {"*"}, names | ids

    _report: LoadReport = PrivateAttr(default_factory=LoadReport)

    @model_validator(mode="after")
    def _credential_names_are_unique(self) -> GatewayConfig:
        seen: dict[str, int] = {}
        for index, credential in enumerate(self.credential_list):
            first = seen.setdefault(credential.credential_name, index)
            if first != index:
                raise ValueError(
                    f"credential_list[{index}] is named {credential.credential_name!r}, as "
                    f"credential_list[{first}] is (give each credential its own name)"
                )
        return self

    def aliases(self) -> list[str]:
        return list(dict.fromkeys(m.model_name for m in self.model_list))

    def routes(self, name: str) -> bool:
        """Whether a request for `name` reaches a deployment: a model_name, a
        model_group_alias, or a name a wildcard model_name matches."""
        if name in self.router_settings.model_group_alias:
            return True
        return self.model_group_exists(name)

    def model_group_exists(self, name: str) -> bool:
        names = self.aliases()
        if name in names:
            return not is_wildcard(name)
        return (
            not is_wildcard(name)
            and first_match(most_specific_first(filter(is_wildcard, names)), name) is not None
        )

    @property
    def report(self) -> LoadReport:
        """What loading found that the gateway does not apply as LiteLLM would."""
        return self._report


Loc = tuple[str | int, ...]


class ConfigProblems(ConfigError):
    """Problems found across sections, each at its key path; parse_config names their lines
    (a pydantic model validator can only place an error at the top of the file)."""

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{format_loc(loc)}: {text}" for loc, text in problems))


FALLBACK_KEYS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")


def apply_litellm_router_keys(router: RouterSettings, litellm: dict[str, Any]) -> dict[str, str]:
    """Sets each router key router_settings left unset (a list left empty counts as unset, as
    LiteLLM's `or` reads it) from litellm_settings; returns the section each fallback list
    came from. A value of the wrong type is an error at its litellm_settings line."""
    origins = {key: "router_settings" for key in (*FALLBACK_KEYS, "default_fallbacks")}
    problems: list[tuple[Loc, str]] = []
    for key, field in LITELLM_ROUTER_KEYS.items():  # from core/litellm_support.py's RULES
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
            if name not in targets and not config.routes(name):
                text = f"{name!r} is not a model_name or model_info.id in model_list {known}"
                problems.append(((*at, position), text))

    for field in FALLBACK_KEYS:
        for index, rule in enumerate(getattr(router, field)):
            for source, names in rule.items():
                at: Loc = (origins[field], field, index, source)
                if source not in sources and not config.routes(source):
                    problems.append((at, f"{source!r} is not a model_name in model_list {known}"))
                check_targets(at, names)
    check_targets((origins["default_fallbacks"], "default_fallbacks"), router.default_fallbacks)
    return problems


def stream_recovery_problems(config: GatewayConfig) -> list[tuple[Loc, str]]:
    """gateway.stream_recovery names a model name a request may ask for, or "*"."""
    sources, _ = config.fallback_names()
    known = f"(known: {', '.join(sorted(sources))})"
    return [
        (("gateway", "stream_recovery", name), f"{name!r} is not a model_name {known}")
        for name in config.gateway.stream_recovery
        if name not in sources and not config.routes(name)
    ]


def _without_empty_sections(data: dict[Any, Any]) -> dict[Any, Any]:
    """A section holding only comments (`general_settings:`) is YAML null: an empty section,
    as LiteLLM reads it; so is a deployment's empty `model_info:`."""
    data = {key: value for key, value in data.items() if value is not None}
    entries = data.get("model_list")
    if isinstance(entries, list):
        data["model_list"] = [
            {k: v for k, v in entry.items() if not (k == "model_info" and v is None)}
            if isinstance(entry, dict)
            else entry
            for entry in entries
        ]
    return data


def _with_credential(
    doc: YamlDocument, config: GatewayConfig, index: int, raw: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, tuple[str | int, ...]]]:
    """The deployment's params over its named credential's values (LiteLLM's precedence),
    and where each value taken from the credential was written."""
    loc: tuple[str | int, ...] = ("model_list", index, "litellm_params", CREDENTIAL_KEY)
    name = raw.pop(CREDENTIAL_KEY, None)
    if name is None:
        return raw, {}
    names = [c.credential_name for c in config.credential_list]
    if name not in names:
        known = ", ".join(names) or "none"
        raise ConfigError(
            one_line(
                f"{doc.where(loc)}: {format_loc(loc)}: names credential {name!r}, which is not "
                f"in credential_list (known: {known})"
            )
        )
    at = names.index(name)
    values = config.credential_list[at].credential_values
    origins: dict[str, tuple[str | int, ...]] = {
        key: ("credential_list", at, "credential_values", key) for key in values if key not in raw
    }
    return {**values, **raw}, origins


def _general(
    doc: YamlDocument, general: dict[str, Any], key: str, env: FileEnvironment, instead: str
) -> FromFile:
    """A general_settings value the gateway takes over, its variable resolved; the problem
    of an unset variable is said only if the value is used."""
    value = general.get(key)
    loc = ("general_settings", key)
    if value is None:
        return FromFile()
    if not isinstance(value, str):
        raise ConfigError(f"{doc.where(loc)}: {format_loc(loc)}: must be a string")
    name = referenced(value)
    if name is None:
        return FromFile(value)
    resolved = env.get(name)
    if resolved is None:
        problem = one_line(
            f"{doc.where(loc)}: {format_loc(loc)}: environment variable {name} is not set "
            f"(export it, or set {instead})"
        )
        return FromFile(problem=problem)
    return FromFile(resolved)


def parse_config(doc: YamlDocument, secrets: bool = True) -> GatewayConfig:
    """The validated config; with secrets=False, `os.environ/NAME` values stay unresolved, for
    tools that need the model names and not the keys (`prompts validate` in CI).

    LiteLLM's settings the gateway does not apply are noted on `config.report` (a refused
    feature is a ConfigError), and a deployment naming an unset variable is left out there."""
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{doc.where(())}: the top level must be a mapping of sections")
    data = _without_empty_sections(data)
    notes = review(doc, data)
    # LiteLLM sections the gateway accepts and reports without acting on (callback_settings).
    data = {k: v for k, v in data.items() if k in GatewayConfig.model_fields or k not in RULES}
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(doc, exc, GatewayConfig)) from None
    except ConfigProblems as exc:
        lines = [
            one_line(f"{doc.where(loc)}: {format_loc(loc)}: {text}") for loc, text in exc.problems
        ]
        raise ConfigError("\n".join(lines)) from None
    _check_group_aliases(config, doc)
    check_indexes(config.indexes, config.routes, config.aliases(), doc)
    report = config.report
    report.notes = notes
    if not secrets:
        return config
    env = FileEnvironment.read(doc, config.environment_variables, report.notes)
    report.environment = env
    general = config.general_settings
    report.master_key = _general(doc, general, "master_key", env, "GATEWAY_MASTER_KEY")
    report.database_url = _general(doc, general, "database_url", env, "GATEWAY_DATABASE_URL")
    _resolve_router_secrets(config.router_settings, doc, env)
    # Secrets are resolved after validation so an error never echoes a secret's value.
    kept: list[ModelEntry] = []
    for index, entry in enumerate(config.model_list):
        loc = ("model_list", index, "litellm_params")
        raw, origins = _with_credential(
            doc, config, index, entry.litellm_params.model_dump(exclude_none=True)
        )
        missing = missing_variable(raw, loc, env)
        if missing is not None:
            at, variable = missing
            origin = origins.get(str(at[3]), at) if len(at) > 3 else at
            path = format_loc(at)
            report.left_out.append(
                LeftOut(doc.where(origin), index, entry.model_name, path, variable)
            )
            continue
        resolved = resolve(raw, env)
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
        if report.left_out and entry.model_info.id is None:
            # Deployment ids default to name#position; the kept ones keep the id they have
            # when every deployment loads (limits, spend and the request log name them).
            entry.model_info.id = f"{entry.model_name}#{index}"
        kept.append(entry)
    config.model_list = kept
    return config


def _check_group_aliases(config: GatewayConfig, doc: YamlDocument) -> None:
    """A model_group_alias must name a model group (LiteLLM resolves an alias once, so not
    another alias); one that shadows a model_name wins over it, as in LiteLLM."""
    names = set(config.aliases())
    for alias, target in config.router_settings.group_aliases().items():
        loc = ("router_settings", "model_group_alias", alias)
        if not config.model_group_exists(target):
            raise ConfigError(
                one_line(
                    f"{doc.where(loc)}: {format_loc(loc)}: routes to {target!r}, which is not a "
                    f"model_name in model_list nor a name a wildcard model_name matches "
                    f"(known: {', '.join(sorted(names))})"
                )
            )
        if alias in names:
            log.warning(
                "%s: %s: the alias %r hides the model_name %r: requests for it go to %r",
                doc.where(loc),
                format_loc(loc),
                alias,
                alias,
                target,
            )


def _resolve_router_secrets(
    router: RouterSettings, doc: YamlDocument, env: FileEnvironment
) -> None:
    """router_settings' Redis keys may be os.environ/NAME, as LiteLLM allows (the file's
    environment_variables first). Without them budgets could not be shared: an unset variable
    fails the file."""
    for key in ("redis_url", "redis_host", "redis_port", "redis_password"):
        name = referenced(getattr(router, key))
        if name is None:
            continue
        loc = ("router_settings", key)
        resolved = env.get(name)
        if resolved is None:
            raise ConfigError(
                one_line(
                    f"{doc.where(loc)}: {format_loc(loc)}: environment variable {name} is not "
                    f"set (export it, or remove this key)"
                )
            )
        if key == "redis_port":
            if not resolved.isdigit():
                raise ConfigError(
                    f"{doc.where(loc)}: {format_loc(loc)}: environment variable {name} does not "
                    f"hold a port number"
                )
            setattr(router, key, int(resolved))
        else:
            setattr(router, key, resolved)


def load_config(path: Path, secrets: bool = True) -> GatewayConfig:
    return parse_config(read_config(path), secrets)


def config_json_schema() -> str:
    schema = GatewayConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "LLMOps gateway config (gateway.yaml)"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
