"""Cost reports and health answers, as the API returns them and the CLI prints them."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from gateway.core.answers import Answer

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
        description='{"database": "ok" or what is wrong, "embeddings": the local model\'s state}'
    )
    request_log: RequestLogHealth
