"""Keys and teams as the API takes them, and as the API and the CLI show them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.core.answers import Answer, ObjectList
from gateway.core.durations import parse_duration

# Budgets become integer nano-USD, in Redis as 64-bit integers: a billion dollars fits.
MAX_BUDGET_USD = 1e9
TEAM_ID_MAX = 64  # the column's width
INT32_MAX = 2**31 - 1  # limits are stored as 32-bit integers; larger ones mean unlimited anyway


class Limits(BaseModel):
    """What a key or a team may spend and send."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_budget: float | None = Field(default=None, ge=0, le=MAX_BUDGET_USD)
    budget_duration: str | None = Field(default=None, max_length=16)
    rpm_limit: int | None = Field(default=None, ge=1, le=INT32_MAX)
    tpm_limit: int | None = Field(default=None, ge=1, le=INT32_MAX)
    metadata: dict[str, Any] | None = None

    @field_validator("budget_duration")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        parse_duration(value)
        return value


class KeyCreate(Limits):
    """POST /v1/keys (LiteLLM's field names where they exist) and `gateway keys create`."""

    name: str | None = Field(default=None, max_length=200)
    team: str | None = Field(default=None, max_length=TEAM_ID_MAX)
    models: list[str] | None = None  # alias globs
    prompts: list[str] | None = None  # prompt name globs
    expires_at: datetime | None = None
    log_bodies: bool | None = None

    @field_validator("expires_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class KeyUpdate(KeyCreate):
    """PATCH /v1/keys/{id}: the fields given change, the others stay."""


class TeamCreate(Limits):
    id: str = Field(min_length=1, max_length=TEAM_ID_MAX)


class TeamUpdate(Limits):
    """PATCH /v1/teams/{id}: the fields given change, the others stay."""


# What the stores accept from the API and the CLI (anything else is dropped).
KEY_FIELDS = set(KeyCreate.model_fields)
TEAM_FIELDS = set(Limits.model_fields)


def _absent(value: Any) -> bool:
    return value is None


def _spend() -> Any:
    """Shown by GET /v1/{keys,teams}/{id} for what has a budget: spend in its period."""
    return Field(
        default=None,
        exclude_if=_absent,
        description="USD spent in the current budget period; only where max_budget is set.",
    )


class TeamInfo(Answer):
    id: str
    max_budget: float | None
    budget_duration: str | None
    rpm_limit: int | None
    tpm_limit: int | None
    metadata: dict[str, Any]
    spend: float | None = _spend()


class KeyInfo(Answer):
    """A key as shown everywhere after its creation: everything but the secret and its hash.
    Times are ISO 8601 strings."""

    id: str
    key_prefix: str
    name: str | None
    team: str | None
    models: list[str]
    prompts: list[str]
    max_budget: float | None
    budget_duration: str | None
    rpm_limit: int | None
    tpm_limit: int | None
    expires_at: str | None
    revoked: bool
    log_bodies: bool
    metadata: dict[str, Any]
    created_at: str | None
    updated_at: str | None
    spend: float | None = _spend()


class KeySecret(Answer):
    key: str = Field(description="The key itself: shown only in this answer, store it now.")


class KeyCreated(KeyInfo, KeySecret):
    """The answer to creating or rotating a key: the secret first, then the key's fields."""


class KeyRevoked(Answer):
    id: str
    revoked: bool


class KeyList(ObjectList[KeyInfo]):
    pass


class TeamDeleted(Answer):
    id: str
    deleted: bool
    revoked_keys: list[str] = Field(description="The ids of the team's keys, revoked with it.")


class TeamList(ObjectList[TeamInfo]):
    pass
