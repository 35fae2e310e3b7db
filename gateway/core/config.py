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
from typing import Annotated, Any, Literal, NotRequired

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from gateway.core.errors import ConfigError
from gateway.core.index_config import IndexesSection, check_indexes
from gateway.core.wildcards import first_match, is_wildcard, most_specific_first
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
    # Tag-based routing (router_settings.enable_tag_filtering): routing metadata, never sent.
    tags: list[str] | None = None

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
    # Another name for a model group (LiteLLM's): "gpt-4": "gpt-4o", or the long form
    # {"model": "gpt-4o", "hidden": true} to keep it out of /v1/models.
    model_group_alias: dict[str, GroupAlias] = Field(default_factory=dict)
    # Tag-based routing: a request's tags pick the deployments whose litellm_params.tags
    # match (any one of them, or all of them when tag_filtering_match_any is false).
    enable_tag_filtering: bool = False
    tag_filtering_match_any: bool = True

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
    indexes: IndexesSection = Field(default_factory=IndexesSection)  # vector index health

    @model_validator(mode="after")
    def _fallbacks_name_known_aliases(self) -> GatewayConfig:
        aliases = {m.model_name for m in self.model_list}
        for index, rule in enumerate(self.router_settings.fallbacks):
            for source, targets in rule.items():
                for name in [source, *targets]:
                    if name not in aliases and not self.routes(name):
                        raise ValueError(
                            f"router_settings.fallbacks[{index}] names {name!r}, which is not a "
                            f"model_name in model_list (known: {', '.join(sorted(aliases))})"
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
    _check_group_aliases(config, doc)
    check_indexes(config.indexes, config.routes, config.aliases(), doc)
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


def load_config(path: Path, secrets: bool = True) -> GatewayConfig:
    return parse_config(YamlDocument.read(path), secrets)


def config_json_schema() -> str:
    schema = GatewayConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "LLMOps gateway config (gateway.yaml)"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
