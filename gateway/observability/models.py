"""Cost reports, request-log rows and health answers, as the API returns them and the CLI
prints them."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from gateway.core.answers import Answer, ObjectList

GroupBy = Literal["key", "team", "model", "prompt", "day"]
GROUPS: tuple[str, ...] = get_args(GroupBy)


class CostRow(Answer):
    """One group's totals. The row names its group by the report's group_by field alone
    (`{"model": "gpt-4o", ...}`); a group may be null (calls made without a team)."""

    key: str | None = None
    team: str | None = None
    model: str | None = None
    prompt: str | None = None
    day: str | None = None
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float

    @model_serializer(mode="wrap")
    def _its_group_only(self, handler: SerializerFunctionWrapHandler) -> Any:
        shown: dict[str, Any] = handler(self)
        given = self.model_fields_set
        return {k: v for k, v in shown.items() if k not in GROUPS or k in given}


class CostReport(Answer):
    object: Literal["list"] = "list"
    group_by: GroupBy
    since: str | None = Field(alias="from", description="ISO 8601; null: from the start.")
    until: str | None = Field(alias="to", description="ISO 8601, excluded; null: until now.")
    total_cost_usd: float
    data: list[CostRow]


class LogRow(Answer):
    """One call as the request log keeps it (GET /v1/logs, `gateway logs`). Times are ISO 8601
    with their offset (UTC); `model` is the alias the caller asked for."""

    id: str = Field(description="The call's x-gateway-request-id.")
    created_at: str
    finished_at: str
    key_id: str | None = Field(description='"master", a key id, or null when unauthenticated.')
    team: str | None
    route: str = Field(description="chat, embeddings, infer, ...")
    model: str | None
    deployment: str | None = Field(description="The deployment that answered (alias#n).")
    provider: str | None
    recovered: bool = Field(
        default=False,
        description="A stream that broke mid-answer and was continued on `deployment`.",
    )
    recovered_from: str | None = Field(
        default=None, description="The deployment whose stream broke, when recovered."
    )
    prompt_name: str | None
    prompt_version: str | None
    status: int
    error_type: str | None
    stream: bool
    attempts: int
    latency_ms: float
    upstream_ms: float | None
    overhead_ms: float | None
    ttft_ms: float | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: float
    estimated: bool = Field(description="Usage estimated (the upstream reported none).")
    price_version: str | None
    trace_id: str | None
    model_version: str | None = Field(description="The registry version that answered (NAME@N).")
    predictions: int = Field(description="Rows predicted (classic models, /v2 infer).")
    feature_violations: dict[str, int] | None = Field(
        default=None,
        description="Classic models: values that broke the version's expectations, by feature.",
    )


class LogDetail(LogRow):
    """One row in full: with the bodies, when the key logs them (redacted, as stored)."""

    request_body: str | None
    response_body: str | None


class LogPage(ObjectList[LogRow]):
    """Newest first. `next` is the cursor of the following page (pass it as `after`)."""

    has_more: bool
    next: str | None


class Health(Answer):
    status: Literal["ok"] = "ok"


class RequestLogHealth(Answer):
    database: Literal["ok", "spooling"]
    held_in_memory: int
    dropped: int
    quarantined: int


class Readiness(Answer):
    status: Literal["ready", "not ready"]
    models: int = Field(description="Model aliases served.")
    checks: dict[str, str] = Field(
        description='{"database": "ok" or what is wrong, and when configured "redis", "qdrant" '
        '(the same), "embeddings": the local model\'s state}'
    )
    request_log: RequestLogHealth
