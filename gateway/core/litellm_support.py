"""What the gateway does with each LiteLLM proxy setting, in one table.

A LiteLLM user's file must either behave as it did or say early what it loses: never a
setting accepted and dropped. `RULES` names, per key path (a top-level section such as
`guardrails`, or `section.key` such as `litellm_settings.cache`), whether the gateway applies
it, applies it differently, ignores it (a warning at start and in `gateway config check`) or
refuses the file (a one-line error naming the feature and what to do instead). The README's
"Coming from LiteLLM" table is held to this one by tests/test_litellm_configs.py.

`model_list` and `router_settings` are validated by the config schema instead: their keys
either act or fail as unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from gateway.core.errors import ConfigError
from gateway.core.yamlfile import YamlDocument, one_line


class Status(Enum):
    # The values are the README table's words.
    APPLIED = "supported"
    DIFFERENTLY = "supported differently"
    IGNORED = "not supported (warned)"
    REFUSED = "not supported (refused)"


@dataclass(frozen=True)
class Rule:
    path: str
    status: Status
    note: str
    # Values that ask for what the gateway does anyway (`cache: false`): nothing to report.
    inert: tuple[Any, ...] = ()
    # For a litellm_settings key LiteLLM's Router falls back to when its own argument is unset:
    # the router_settings key it stands for (core/config.py applies it there).
    router_key: str | None = None

    def is_inert(self, value: Any) -> bool:
        # `type(...) is`: 0 and 1 are not false and true here.
        return any(type(value) is type(x) and value == x for x in self.inert)


@dataclass(frozen=True)
class Note:
    """One setting of a loaded file that the gateway does not apply as LiteLLM would."""

    where: str  # file:line
    path: str
    status: Status
    note: str

    def line(self) -> str:
        return one_line(f"{self.where}: {self.path}: {self.note}")


A = Status.APPLIED
D = Status.DIFFERENTLY
W = Status.IGNORED
R = Status.REFUSED

_CALLBACKS = (
    "callbacks are not run: the request log is built in (`gateway logs`), Prometheus metrics "
    "are served at /metrics and traces go to GATEWAY_OTLP_ENDPOINT"
)
_ROUTING = "applied as LiteLLM applies it (see router_settings)"
_KEY_BUDGETS = (
    "budgets are set per key or team (`max_budget` in POST /v1/keys, `gateway keys create`)"
)
_KEY_DEFAULTS = "keys take the limits given when they are made (POST /v1/keys)"
_ALERTS = "no Slack or email alerts: alert on the Prometheus series at /metrics"
_HEALTH = (
    "no background health checks: a failing deployment cools down "
    "(router_settings.allowed_fails, cooldown_time)"
)
_ROUTES = "routes are fixed: /v1 takes any gateway key, admin routes the master key"
_SECRETS = (
    "secret managers are not supported: pass secrets as environment variables "
    "(`os.environ/NAME`), then remove this key"
)
_JWT = "JWT auth is not supported: give clients gateway keys (POST /v1/keys), then remove this key"
_MCP = (
    "LiteLLM's MCP gateway is not supported: connect MCP clients to the servers directly, "
    "then remove this section"
)
_AGENTS = (
    "LiteLLM's agent gateway (A2A) is not supported: call the agents directly, "
    "then remove this section"
)
_GUARDRAILS = (
    "LiteLLM guardrails are not supported: filter content in your application (or keep "
    "LiteLLM in front of the models that need it), then remove this section"
)
_POLICIES = (
    "LiteLLM guardrail policies are not supported: filter content in your application, "
    "then remove this section"
)
_PASS_THROUGH = (
    "pass-through routes are not supported: add the upstream as a model_list deployment or "
    "call it directly, then remove this"
)

RULES: dict[str, Rule] = {
    rule.path: rule
    for rule in (
        # --- top-level sections --------------------------------------------------------------
        Rule(
            "environment_variables",
            A,
            "set in the gateway's environment when it serves, replacing values already set (as "
            "LiteLLM does, with a warning); the file's `os.environ/NAME` references see them first",
        ),
        Rule(
            "credential_list",
            A,
            "a deployment's `litellm_credential_name` takes that credential's values; values "
            "the deployment sets itself win",
        ),
        Rule("callback_settings", W, _CALLBACKS),
        Rule(
            "files_settings",
            W,
            "the gateway's /v1/files and /v1/batches keep files themselves; no provider is "
            "configured for them",
        ),
        Rule("guardrails", R, _GUARDRAILS),
        Rule("policies", R, _POLICIES),
        Rule("policy_attachments", R, _POLICIES),
        Rule("mcp_servers", R, _MCP),
        Rule("mcp_tools", R, _MCP),
        Rule("agents", R, _AGENTS),
        Rule("agent_list", R, _AGENTS),
        Rule(
            "search_tools",
            R,
            "LiteLLM's search tools are not supported: call the search API directly, then "
            "remove this section",
        ),
        Rule(
            "vector_store_registry",
            R,
            "LiteLLM's vector store registry is not supported: query the vector store directly, "
            "then remove this section",
        ),
        Rule(
            "prompts",
            R,
            "LiteLLM prompt management is not supported: write each prompt as a file in "
            "prompts/ (see Prompts in the README), then remove this section",
        ),
        Rule(
            "assistant_settings",
            R,
            "the Assistants API is not supported: remove this section",
        ),
        Rule(
            "finetune_settings",
            R,
            "the fine-tuning API is not supported: fine-tune with the provider and register "
            "the result (`gateway registry`), then remove this section",
        ),
        Rule("pass_through_endpoints", R, _PASS_THROUGH),
        Rule("default_vertex_config", R, _PASS_THROUGH),
        Rule(
            "include",
            A,
            "the files it names (relative to the file naming them) are merged in as LiteLLM "
            "merges them: lists such as model_list extended, other sections replaced",
        ),
        # --- litellm_settings -----------------------------------------------------------------
        Rule("litellm_settings.fallbacks", A, _ROUTING, router_key="fallbacks"),
        Rule("litellm_settings.num_retries", A, _ROUTING, router_key="num_retries"),
        Rule(
            "litellm_settings.request_timeout",
            A,
            "applied as LiteLLM applies it: the router's `timeout` (see router_settings)",
            router_key="timeout",
        ),
        Rule("litellm_settings.allowed_fails", A, _ROUTING, router_key="allowed_fails"),
        Rule("litellm_settings.cooldown_time", A, _ROUTING, router_key="cooldown_time"),
        Rule(
            "litellm_settings.context_window_fallbacks",
            A,
            _ROUTING,
            router_key="context_window_fallbacks",
        ),
        Rule(
            "litellm_settings.content_policy_fallbacks",
            A,
            _ROUTING,
            router_key="content_policy_fallbacks",
        ),
        Rule("litellm_settings.default_fallbacks", A, _ROUTING, router_key="default_fallbacks"),
        Rule("litellm_settings.max_fallbacks", A, _ROUTING, router_key="max_fallbacks"),
        Rule(
            "litellm_settings.cache",
            W,
            "response caching is not implemented yet: the gateway does not cache",
            inert=(False,),
        ),
        Rule(
            "litellm_settings.cache_params",
            W,
            "response caching is not implemented yet: the gateway does not cache",
        ),
        Rule("litellm_settings.success_callback", W, _CALLBACKS, inert=([],)),
        Rule("litellm_settings.failure_callback", W, _CALLBACKS, inert=([],)),
        Rule("litellm_settings.callbacks", W, _CALLBACKS, inert=([],)),
        Rule("litellm_settings.service_callback", W, _CALLBACKS, inert=([],)),
        Rule("litellm_settings.service_callbacks", W, _CALLBACKS, inert=([],)),
        Rule(
            "litellm_settings.drop_params",
            W,
            "not applied to every model: set `drop_params: true` in the litellm_params of the "
            "deployments that need it",
            inert=(False,),
        ),
        Rule(
            "litellm_settings.set_verbose",
            W,
            "use GATEWAY_LOG_LEVEL=debug",
            inert=(False,),
        ),
        Rule(
            "litellm_settings.json_logs",
            W,
            "the gateway's logs are text; GATEWAY_ACCESS_LOG=true adds one JSON line per request",
            inert=(False,),
        ),
        Rule(
            "litellm_settings.turn_off_message_logging",
            D,
            "messages are sent to no logging service; the request log keeps bodies only with "
            "`gateway.log_bodies: true` (off by default)",
            inert=(True,),
        ),
        Rule(
            "litellm_settings.redact_user_api_key_info",
            W,
            "the request log and traces name the key's id and team (never the key itself); "
            "nothing removes them",
            inert=(False,),
        ),
        Rule(
            "litellm_settings.max_budget",
            R,
            "a proxy-wide budget is not supported: give each key or team a `max_budget` "
            "(POST /v1/keys, `gateway teams`), then remove this key",
        ),
        Rule("litellm_settings.budget_duration", W, _KEY_BUDGETS),
        Rule("litellm_settings.max_internal_user_budget", W, _KEY_BUDGETS),
        Rule("litellm_settings.internal_user_budget_duration", W, _KEY_BUDGETS),
        Rule("litellm_settings.default_max_internal_user_budget", W, _KEY_BUDGETS),
        Rule("litellm_settings.max_end_user_budget", W, _KEY_BUDGETS),
        Rule("litellm_settings.default_team_settings", W, _KEY_DEFAULTS),
        Rule("litellm_settings.default_key_generate_params", W, _KEY_DEFAULTS),
        Rule("litellm_settings.upperbound_key_generate_params", W, _KEY_DEFAULTS),
        Rule("litellm_settings.key_generation_settings", W, _KEY_DEFAULTS),
        Rule("litellm_settings.default_internal_user_params", W, _KEY_DEFAULTS),
        Rule("litellm_settings.guardrails", R, _GUARDRAILS),
        Rule(
            "litellm_settings.ssl_verify",
            A,
            "the default of every deployment's `litellm_params.ssl_verify`: `false` turns "
            "upstream certificate checks off, a path trusts that CA bundle",
        ),
        Rule(
            "litellm_settings.ssl_certificate",
            A,
            "the default of every deployment's `litellm_params.ssl_certificate`: the client "
            "certificate (PEM with its key) upstreams that ask for one are shown",
        ),
        Rule("litellm_settings.telemetry", W, "the gateway sends no telemetry", inert=(False,)),
        # --- general_settings -----------------------------------------------------------------
        Rule(
            "general_settings.master_key",
            A,
            "the gateway's master key when GATEWAY_MASTER_KEY is unset (GATEWAY_MASTER_KEY "
            "wins when both are set)",
        ),
        Rule(
            "general_settings.database_url",
            D,
            "the gateway's database when GATEWAY_DATABASE_URL is unset: the gateway creates "
            "its own tables there and does not read LiteLLM's keys, teams or spend",
        ),
        Rule(
            "general_settings.proxy_batch_write_at",
            D,
            "request-log rows are written in batches by a background writer; the interval "
            "is not configurable",
        ),
        Rule(
            "general_settings.allow_requests_on_db_unavailable",
            D,
            "always on: keys are checked from memory and the request log spools to disk while "
            "the database is down",
        ),
        Rule("general_settings.alerting", W, _ALERTS, inert=([],)),
        Rule("general_settings.alert_types", W, _ALERTS),
        Rule("general_settings.alerting_threshold", W, _ALERTS),
        Rule("general_settings.alert_to_webhook_url", W, _ALERTS),
        Rule("general_settings.alerting_args", W, _ALERTS),
        Rule(
            "general_settings.store_model_in_db",
            W,
            "models come from this file only; nothing adds models from a database or the UI",
            inert=(False,),
        ),
        Rule(
            "general_settings.disable_spend_logs",
            W,
            "the request log is always written (it is the audit record)",
            inert=(False,),
        ),
        Rule("general_settings.ui_access_mode", W, "the dashboard (/ui) asks for a gateway key"),
        Rule("general_settings.allowed_routes", W, _ROUTES),
        Rule("general_settings.public_routes", W, _ROUTES),
        Rule("general_settings.admin_only_routes", W, _ROUTES),
        Rule(
            "general_settings.enforce_user_param",
            W,
            "requests without a `user` field are not refused",
            inert=(False,),
        ),
        Rule(
            "general_settings.max_parallel_requests",
            W,
            "limit calls with rpm/tpm on deployments (litellm_params) and on keys",
        ),
        Rule(
            "general_settings.global_max_parallel_requests",
            W,
            "GATEWAY_MAX_CONNECTIONS caps the open connections of each worker",
        ),
        Rule("general_settings.background_health_checks", W, _HEALTH, inert=(False,)),
        Rule("general_settings.health_check_interval", W, _HEALTH),
        Rule("general_settings.health_check_details", W, _HEALTH),
        Rule(
            "general_settings.database_connection_pool_limit",
            W,
            "the pool size is fixed; GATEWAY_DATABASE_TIMEOUT bounds each database call",
        ),
        Rule(
            "general_settings.database_connection_timeout",
            W,
            "GATEWAY_DATABASE_TIMEOUT bounds each database call",
        ),
        Rule(
            "general_settings.maximum_spend_logs_retention_period",
            W,
            "request-log rows are kept until you delete them",
        ),
        Rule("general_settings.completion_model", W, "every request must name its model"),
        Rule(
            "general_settings.forward_client_headers_to_llm_api",
            W,
            "client headers are not forwarded to providers (set `extra_headers` on deployments)",
            inert=(False,),
        ),
        Rule("general_settings.max_request_size_mb", W, "set `gateway.max_body_bytes` instead"),
        Rule(
            "general_settings.max_response_size_mb",
            W,
            "set `gateway.max_response_bytes` instead",
        ),
        Rule("general_settings.otel", W, "traces: set GATEWAY_OTLP_ENDPOINT", inert=(False,)),
        Rule(
            "general_settings.custom_auth",
            R,
            "custom auth code is not supported: give clients gateway keys (POST /v1/keys) or "
            "the master key, then remove this key",
        ),
        Rule("general_settings.enable_jwt_auth", R, _JWT, inert=(False,)),
        Rule("general_settings.litellm_jwtauth", R, _JWT),
        Rule("general_settings.key_management_system", R, _SECRETS),
        Rule("general_settings.key_management_settings", R, _SECRETS),
        Rule("general_settings.use_google_kms", R, _SECRETS, inert=(False,)),
        Rule("general_settings.use_azure_key_vault", R, _SECRETS, inert=(False,)),
        Rule("general_settings.pass_through_endpoints", R, _PASS_THROUGH, inert=([],)),
        # --- any other key of these sections ------------------------------------------------
        Rule("litellm_settings.*", W, "a LiteLLM setting the gateway has no equivalent for"),
        Rule("general_settings.*", W, "a LiteLLM setting the gateway has no equivalent for"),
    )
}

# litellm_settings keys LiteLLM's Router reads when router_settings leaves them unset, and the
# router_settings key each stands for.
LITELLM_ROUTER_KEYS: dict[str, str] = {
    rule.path.removeprefix("litellm_settings."): rule.router_key
    for rule in RULES.values()
    if rule.router_key is not None
}

# Sections whose keys are LiteLLM's own settings, reviewed key by key.
KEYED_SECTIONS = ("litellm_settings", "general_settings")


def rule_for(section: str, key: str | None = None) -> Rule | None:
    """The rule for a top-level section, or for a key of a keyed section (unknown keys there
    are LiteLLM settings the gateway does not apply)."""
    if key is None:
        return RULES.get(section)
    path = f"{section}.{key}"
    rule = RULES.get(path)
    if rule is None:
        other = RULES[f"{section}.*"]
        rule = Rule(path, other.status, other.note)
    return rule


def review(doc: YamlDocument, data: Mapping[str, Any]) -> list[Note]:
    """The notes for what the gateway does not apply as LiteLLM would; a ConfigError, one
    line per refused feature, when the file asks for something the gateway will not do."""
    notes: list[Note] = []
    for section, value in data.items():
        if not isinstance(section, str):
            continue
        rule = rule_for(section)
        if rule is not None and not rule.is_inert(value):
            notes.append(Note(doc.where((section,)), rule.path, rule.status, rule.note))
        if section in KEYED_SECTIONS and isinstance(value, Mapping):
            for key, setting in value.items():
                rule = rule_for(section, str(key))
                if rule is not None and not rule.is_inert(setting):
                    where = doc.where((section, key))
                    notes.append(Note(where, rule.path, rule.status, rule.note))
    refused = [note.line() for note in notes if note.status is Status.REFUSED]
    if refused:
        raise ConfigError("\n".join(refused))
    return [note for note in notes if note.status is not Status.APPLIED]
