"""LiteLLM's admin requests and answers, declared once: field names and types as LiteLLM's
proxy has them (`litellm.proxy._types`), so its scripts read what they expect. Times are ISO
8601 strings. tests/test_litellm_admin.py validates these answers with LiteLLM's own types."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.core.answers import Answer


class LiteLLMRequest(BaseModel):
    """Fields LiteLLM takes that have no equivalent here are accepted only with a value that
    means nothing (null, [], {}, false: what its clients send by default); set, they are a
    400 naming the field, so no budget, limit or restriction is ever dropped unseen."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class KeyRequest(LiteLLMRequest):
    """POST /key/generate and /key/update (LiteLLM's GenerateKeyRequest, UpdateKeyRequest).
    Other LiteLLM fields are accepted only empty (null, [], {}, false)."""

    key: str | None = Field(
        default=None,
        description="generate: the key's own value (sk-..., 16+ characters: a LiteLLM key "
        "moved here); update: the key to change, itself or its SHA-256 (LiteLLM's token).",
    )
    key_alias: str | None = Field(default=None, description="Unique among live keys.")
    duration: str | None = Field(
        default=None, description='Expiry from now: "30s", "30m", "30h", "30d", "1w", "1mo".'
    )
    models: list[str] | None = Field(
        default=None, description='Aliases or globs; [] or ["all-proxy-models"]: every model.'
    )
    max_budget: float | None = None
    budget_duration: str | None = Field(
        default=None, description='"30s", "5m", "1h", "1d", "1w", "1mo", "daily", "monthly"...'
    )
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    metadata: dict[str, Any] | None = None
    team_id: str | None = None
    user_id: str | None = Field(default=None, description="Kept in metadata.litellm.user_id.")
    tags: list[str] | None = Field(default=None, description="Kept in metadata.tags.")
    prompts: list[str] | None = Field(default=None, description="Prompt names or globs.")
    blocked: bool | None = Field(default=None, description="true revokes the key for good.")
    spend: float | None = Field(default=None, description="Only 0: spend comes from the log.")
    key_type: Literal["default", "llm_api"] | None = None
    send_invite_email: bool | None = Field(default=None, description="Ignored: no users here.")


class KeyDeleteRequest(BaseModel):
    """POST /key/delete: the keys (themselves or their SHA-256), or their aliases."""

    model_config = ConfigDict(extra="forbid")

    keys: list[str] | None = None
    key_aliases: list[str] | None = None


class TeamDeleteRequest(BaseModel):
    """POST /team/delete."""

    model_config = ConfigDict(extra="forbid")

    team_ids: list[str] = Field(min_length=1, max_length=1000)


class TeamMember(Answer):
    """Kept with the team and shown back; the gateway has no users, so roles grant nothing."""

    role: Literal["admin", "user"]
    user_id: str | None = None
    user_email: str | None = None


class TeamRequest(LiteLLMRequest):
    """POST /team/new and /team/update (LiteLLM's NewTeamRequest, UpdateTeamRequest). Other
    LiteLLM fields are accepted only empty (null, [], {}, false)."""

    team_id: str | None = Field(default=None, description="Generated when left out.")
    team_alias: str | None = Field(default=None, max_length=200)
    max_budget: float | None = None
    budget_duration: str | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = Field(default=None, description="Kept in metadata.tags.")
    members_with_roles: list[TeamMember] | None = None
    members: list[str] | None = None
    admins: list[str] | None = None


# --- keys and teams, as LiteLLM shows them --------------------------------------------------


class LiteLLMKey(Answer):
    """A key as LiteLLM's /key/info shows it (its LiteLLM_VerificationToken, without the
    token), with the gateway's own id."""

    key_id: str = Field(description="The gateway's id of the key (GET /v1/keys/{id}).")
    key_name: str = Field(description="The key's first characters, for display.")
    key_alias: str | None
    spend: float = Field(description="USD in the current budget period (else in all time).")
    max_budget: float | None
    budget_duration: str | None
    budget_reset_at: str | None
    expires: str | None
    models: list[str]
    prompts: list[str]
    user_id: str | None
    team_id: str | None
    metadata: dict[str, Any]
    tpm_limit: int | None
    rpm_limit: int | None
    max_parallel_requests: None = None
    blocked: bool
    status: Literal["active", "expired", "revoked"]
    aliases: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    permissions: dict[str, Any] = Field(default_factory=dict)
    allowed_cache_controls: list[str] = Field(default_factory=list)
    model_spend: dict[str, Any] = Field(default_factory=dict)
    model_max_budget: dict[str, Any] = Field(default_factory=dict)
    soft_budget_cooldown: bool = False
    created_at: str | None
    updated_at: str | None


class KeyGenerated(LiteLLMKey):
    """POST /key/generate: the key itself (shown only here) and its SHA-256 (`token`)."""

    key: str
    token: str = Field(description="SHA-256 of the key: names it in /key/info, /key/delete.")
    token_id: str


class KeyInfoAnswer(Answer):
    key: str = Field(description="The key looked up, as it was given.")
    info: LiteLLMKey


class KeyUpdated(LiteLLMKey):
    key: str = Field(description="The key updated, as it was given.")


class KeysDeleted(Answer):
    deleted_keys: list[str] = Field(description="The keys or aliases given.")


class TeamsDeleted(Answer):
    deleted_teams: list[str]


class TeamKey(LiteLLMKey):
    token: str = Field(description="SHA-256 of the key.")


class LiteLLMTeam(Answer):
    """A team as LiteLLM shows it (its LiteLLM_TeamTable)."""

    team_id: str
    team_alias: str | None
    spend: float = Field(description="USD in the current budget period (else in all time).")
    max_budget: float | None
    budget_duration: str | None
    budget_reset_at: str | None
    rpm_limit: int | None
    tpm_limit: int | None
    metadata: dict[str, Any]
    members_with_roles: list[TeamMember]
    members: list[str]
    admins: list[str]
    models: list[str] = Field(default_factory=list, description="Always []: every model.")
    blocked: bool = False
    updated_at: str | None


class TeamInfoAnswer(Answer):
    team_id: str
    team_info: LiteLLMTeam
    keys: list[TeamKey] = Field(description="The team's live keys.")
    team_memberships: list[dict[str, Any]] = Field(
        default_factory=list, description="Always []: the gateway has no users."
    )


class TeamUpdated(Answer):
    """POST /team/update's answer, as LiteLLM's."""

    team_id: str
    data: LiteLLMTeam


class ListedTeam(LiteLLMTeam):
    """A team as LiteLLM's GET /team/list shows it (its TeamListResponseObject)."""

    keys: list[TeamKey] = Field(description="The team's live keys.")
    team_memberships: list[dict[str, Any]] = Field(
        default_factory=list, description="Always []: the gateway has no users."
    )


# --- spend logs -----------------------------------------------------------------------------


class SpendLogMetadata(Answer):
    """LiteLLM's names for the caller, and what the gateway's request log adds."""

    user_api_key: str
    user_api_key_alias: str | None
    user_api_key_team_id: str | None
    user_api_key_user_id: str | None
    status: Literal["success", "failure"]
    http_status: int
    error_type: str | None
    stream: bool
    attempts: int
    deployment: str | None
    prompt: str | None = Field(description="NAME@VERSION when the call used a prompt.")
    cached_tokens: int
    reasoning_tokens: int
    usage_estimated: bool
    price_version: str | None
    trace_id: str | None


class SpendLog(Answer):
    """One call, as a row of LiteLLM's LiteLLM_SpendLogs table."""

    request_id: str = Field(description="The call's x-gateway-request-id.")
    call_type: str = Field(description='"acompletion", "aembedding", or the gateway\'s route.')
    api_key: str = Field(description='SHA-256 of the key; "master" for the master key.')
    spend: float
    total_tokens: int
    prompt_tokens: int
    completion_tokens: int
    startTime: str
    endTime: str
    completionStartTime: str | None
    model: str = Field(description="The upstream model that answered.")
    model_id: str | None = Field(description="The deployment's id.")
    model_group: str | None = Field(description="The alias the caller asked for.")
    custom_llm_provider: str | None
    api_base: str | None
    user: str = Field(description="The key's user_id, or empty.")
    end_user: str = ""
    team_id: str | None
    metadata: SpendLogMetadata
    cache_hit: str = "False"
    cache_key: str | None = None
    request_tags: list[str] = Field(default_factory=list)
    requester_ip_address: str | None = None
    messages: None = None
    response: None = None
    session_id: str | None = None
    request_duration_ms: int
    status: Literal["success", "failure"]


class SpendDay(Answer):
    """A day of LiteLLM's summary (/spend/logs with start_date and end_date): besides these
    fields, one per key that spent, named by the key's SHA-256, with its USD."""

    model_config = ConfigDict(extra="allow", serialize_by_alias=True, validate_by_name=True)

    startTime: str
    spend: float
    users: dict[str, float]
    models: dict[str, float]


# --- models and health ----------------------------------------------------------------------


class DeploymentParams(Answer):
    """A deployment's litellm_params, without credentials (and without api_base for keys
    other than the master key)."""

    model: str
    api_base: str | None = Field(default=None, exclude_if=lambda v: v is None)
    api_version: str | None = Field(default=None, exclude_if=lambda v: v is None)
    organization: str | None = Field(default=None, exclude_if=lambda v: v is None)
    rpm: int | None = None
    tpm: int | None = None
    timeout: float
    stream_timeout: float
    max_retries: int
    weight: float


class DeploymentModelInfo(Answer):
    id: str
    mode: str
    db_model: bool = False
    base_model: str | None
    litellm_provider: str
    input_cost_per_token: float | None
    output_cost_per_token: float | None
    cache_read_input_token_cost: float | None


class DeploymentInfo(Answer):
    model_name: str
    litellm_params: DeploymentParams
    model_info: DeploymentModelInfo


class DeploymentList(Answer):
    data: list[DeploymentInfo]


class ModelGroup(Answer):
    """LiteLLM's ModelGroupInfo: an alias and what its deployments share."""

    model_group: str
    providers: list[str]
    max_input_tokens: float | None = None
    max_output_tokens: float | None = None
    input_cost_per_token: float | None
    output_cost_per_token: float | None
    mode: str
    tpm: int | None
    rpm: int | None
    supports_parallel_function_calling: bool = False
    supports_vision: bool = False
    supports_function_calling: bool = False
    supported_openai_params: list[str] | None = None


class ModelGroupList(Answer):
    data: list[ModelGroup]


class HealthEndpoint(Answer):
    model: str = Field(description="The deployment's litellm_params.model.")
    model_id: str
    model_name: str = Field(description="The alias it serves.")
    api_base: str | None = Field(default=None, exclude_if=lambda v: v is None)
    custom_llm_provider: str
    mode: str
    rpm: int | None
    tpm: int | None
    error: str | None = Field(default=None, exclude_if=lambda v: v is None)


class HealthReport(Answer):
    """From the router's state in this process, without calling any upstream: a deployment
    is unhealthy while it cools down after repeated failures."""

    healthy_endpoints: list[HealthEndpoint]
    unhealthy_endpoints: list[HealthEndpoint]
    healthy_count: int
    unhealthy_count: int


class LiteLLMReadiness(Answer):
    status: Literal["healthy"] = "healthy"
    db: Literal["connected", "disconnected"]
