"""Administration: virtual keys, teams and cost reports (master key only)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.api.deps import MasterDep, StateDep, ValidInput
from gateway.core.errors import BadRequest
from gateway.identity.keys import MAX_BUDGET_USD
from gateway.metering.budgets import Budget, parse_duration
from gateway.observability.spend import GroupBy, cost_report

router = APIRouter(dependencies=[ValidInput])


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_budget: float | None = Field(default=None, ge=0, le=MAX_BUDGET_USD)
    budget_duration: str | None = Field(default=None, max_length=16)
    # Stored as 32-bit integers; larger limits are effectively unlimited anyway.
    rpm_limit: int | None = Field(default=None, ge=1, le=2**31 - 1)
    tpm_limit: int | None = Field(default=None, ge=1, le=2**31 - 1)
    metadata: dict[str, Any] | None = None

    @field_validator("budget_duration")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        parse_duration(value)
        return value


class KeyFields(Limits):
    name: str | None = Field(default=None, max_length=200)
    team: str | None = Field(default=None, max_length=64)
    models: list[str] | None = None
    prompts: list[str] | None = None
    expires_at: datetime | None = None
    log_bodies: bool | None = None

    @field_validator("expires_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class TeamFields(Limits):
    id: str = Field(min_length=1, max_length=64)


def _given(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(exclude_unset=True)


async def _with_spend(state: Any, public: dict[str, Any], scope: str) -> dict[str, Any]:
    if public.get("max_budget") is not None:
        budget = Budget(scope, public["max_budget"], public.get("budget_duration"))
        public["spend"] = await state.meter.store.spent(budget)
    return public


@router.post("/v1/keys", status_code=200)
async def create_key(fields: KeyFields, state: StateDep, caller: MasterDep) -> dict[str, Any]:
    record, key = await asyncio.to_thread(state.keys.create, _given(fields))
    state.key_cache.put(record)
    return {"key": key, **record.public()}


@router.get("/v1/keys")
async def list_keys(state: StateDep, caller: MasterDep, team: str | None = None) -> dict[str, Any]:
    records = await asyncio.to_thread(state.keys.list_keys, team)
    return {"object": "list", "data": [r.public() for r in records]}


@router.get("/v1/keys/{key_id}")
async def get_key(key_id: str, state: StateDep, caller: MasterDep) -> dict[str, Any]:
    record = await asyncio.to_thread(state.keys.get, key_id)
    return await _with_spend(state, record.public(), f"key:{record.id}")


@router.patch("/v1/keys/{key_id}")
async def update_key(
    key_id: str, fields: KeyFields, state: StateDep, caller: MasterDep
) -> dict[str, Any]:
    record = await asyncio.to_thread(state.keys.update, key_id, _given(fields))
    state.key_cache.put(record)
    return record.public()


@router.delete("/v1/keys/{key_id}")
async def revoke_key(key_id: str, state: StateDep, caller: MasterDep) -> dict[str, Any]:
    record = await asyncio.to_thread(state.keys.revoke, key_id)
    state.key_cache.put(record)
    return {"id": record.id, "revoked": True}


@router.post("/v1/keys/{key_id}/rotate")
async def rotate_key(key_id: str, state: StateDep, caller: MasterDep) -> dict[str, Any]:
    record, key = await asyncio.to_thread(state.keys.rotate, key_id)
    state.key_cache.put(record)
    return {"key": key, **record.public()}


@router.post("/v1/teams")
async def create_team(fields: TeamFields, state: StateDep, caller: MasterDep) -> dict[str, Any]:
    given = _given(fields)
    team = await asyncio.to_thread(state.keys.upsert_team, given.pop("id"), given)
    state.key_cache.put_team(team)
    return team.public()


@router.get("/v1/teams")
async def list_teams(state: StateDep, caller: MasterDep) -> dict[str, Any]:
    teams = await asyncio.to_thread(state.keys.list_teams)
    return {"object": "list", "data": [t.public() for t in teams]}


@router.get("/v1/teams/{team_id}")
async def get_team(team_id: str, state: StateDep, caller: MasterDep) -> dict[str, Any]:
    team = await asyncio.to_thread(state.keys.team, team_id)
    return await _with_spend(state, team.public(), f"team:{team.id}")


@router.patch("/v1/teams/{team_id}")
async def update_team(
    team_id: str, fields: Limits, state: StateDep, caller: MasterDep
) -> dict[str, Any]:
    team = await asyncio.to_thread(state.keys.upsert_team, team_id, _given(fields))
    state.key_cache.put_team(team)
    return team.public()


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f"'{name}' must be an ISO 8601 date or time, e.g. 2026-11-01 or "
            f"2026-11-01T00:00:00Z, not {value!r}.",
            param=name,
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@router.get("/v1/costs")
async def costs(
    state: StateDep,
    caller: MasterDep,
    group_by: GroupBy = "model",
    start: str | None = Query(default=None, alias="from"),
    end: str | None = Query(default=None, alias="to"),
) -> dict[str, Any]:
    await state.request_log.flush()  # a report right after a call must include it
    since, until = _parse_time(start, "from"), _parse_time(end, "to")
    rows = await asyncio.to_thread(cost_report, state.engine, group_by, since, until)
    return {
        "object": "list",
        "group_by": group_by,
        "from": since.isoformat() if since else None,
        "to": until.isoformat() if until else None,
        "total_cost_usd": round(sum(r["cost_usd"] for r in rows), 10),
        "data": rows,
    }
