"""Administration: virtual keys, teams and cost reports (master key only)."""

from __future__ import annotations

import asyncio
from typing import TypeVar

from fastapi import APIRouter, Query

from gateway.api.deps import MasterDep, StateDep, ValidInput
from gateway.core.times import parse_time
from gateway.identity.models import (
    KeyCreate,
    KeyCreated,
    KeyInfo,
    KeyList,
    KeyRevoked,
    KeyUpdate,
    TeamCreate,
    TeamDeleted,
    TeamInfo,
    TeamList,
    TeamUpdate,
)
from gateway.observability.models import CostReport, GroupBy
from gateway.observability.spend import cost_report
from gateway.state import GatewayState

router = APIRouter(dependencies=[ValidInput])

Shown = TypeVar("Shown", KeyInfo, TeamInfo)


async def _with_spend(state: GatewayState, shown: Shown, scope: str) -> Shown:
    if shown.max_budget is None:
        return shown
    spent = await state.meter.spent(scope, shown.max_budget, shown.budget_duration)
    return shown.model_copy(update={"spend": spent})


@router.post("/v1/keys", status_code=200)
async def create_key(fields: KeyCreate, state: StateDep, caller: MasterDep) -> KeyCreated:
    record, key = await asyncio.to_thread(state.keys.create, fields.model_dump(exclude_unset=True))
    state.key_cache.put(record)
    return record.with_secret(key)


@router.get("/v1/keys")
async def list_keys(state: StateDep, caller: MasterDep, team: str | None = None) -> KeyList:
    records = await asyncio.to_thread(state.keys.list_keys, team)
    shown = [_with_spend(state, r.public(), f"key:{r.id}") for r in records]
    return KeyList(data=list(await asyncio.gather(*shown)))


@router.get("/v1/keys/{key_id}")
async def get_key(key_id: str, state: StateDep, caller: MasterDep) -> KeyInfo:
    record = await asyncio.to_thread(state.keys.get, key_id)
    return await _with_spend(state, record.public(), f"key:{record.id}")


@router.patch("/v1/keys/{key_id}")
async def update_key(key_id: str, fields: KeyUpdate, state: StateDep, caller: MasterDep) -> KeyInfo:
    given = fields.model_dump(exclude_unset=True)
    record = await asyncio.to_thread(state.keys.update, key_id, given)
    state.key_cache.put(record)
    return record.public()


@router.delete("/v1/keys/{key_id}")
async def revoke_key(key_id: str, state: StateDep, caller: MasterDep) -> KeyRevoked:
    record = await asyncio.to_thread(state.keys.revoke, key_id)
    state.key_cache.put(record)
    return KeyRevoked(id=record.id, revoked=True)


@router.post("/v1/keys/{key_id}/rotate")
async def rotate_key(key_id: str, state: StateDep, caller: MasterDep) -> KeyCreated:
    record, key = await asyncio.to_thread(state.keys.rotate, key_id)
    state.key_cache.put(record)
    return record.with_secret(key)


@router.post("/v1/teams")
async def create_team(fields: TeamCreate, state: StateDep, caller: MasterDep) -> TeamInfo:
    given = fields.model_dump(exclude_unset=True)
    team = await asyncio.to_thread(state.keys.upsert_team, given.pop("id"), given)
    state.key_cache.put_team(team)
    return team.public()


@router.get("/v1/teams")
async def list_teams(state: StateDep, caller: MasterDep) -> TeamList:
    teams = await asyncio.to_thread(state.keys.list_teams)
    shown = [_with_spend(state, t.public(), f"team:{t.id}") for t in teams]
    return TeamList(data=list(await asyncio.gather(*shown)))


@router.get("/v1/teams/{team_id}")
async def get_team(team_id: str, state: StateDep, caller: MasterDep) -> TeamInfo:
    team = await asyncio.to_thread(state.keys.team, team_id)
    return await _with_spend(state, team.public(), f"team:{team.id}")


@router.patch("/v1/teams/{team_id}")
async def update_team(
    team_id: str, fields: TeamUpdate, state: StateDep, caller: MasterDep
) -> TeamInfo:
    given = fields.model_dump(exclude_unset=True)
    team = await asyncio.to_thread(state.keys.upsert_team, team_id, given)
    state.key_cache.put_team(team)
    return team.public()


@router.delete("/v1/teams/{team_id}")
async def delete_team(team_id: str, state: StateDep, caller: MasterDep) -> TeamDeleted:
    """Deletes the team and revokes its keys (their rows and spend stay in the log)."""
    revoked = await asyncio.to_thread(state.keys.delete_teams, [team_id])
    state.key_cache.drop_teams([team_id], revoked)
    return TeamDeleted(id=team_id, deleted=True, revoked_keys=[r.id for r in revoked])


@router.get("/v1/costs")
async def costs(
    state: StateDep,
    caller: MasterDep,
    group_by: GroupBy = "model",
    start: str | None = Query(default=None, alias="from"),
    end: str | None = Query(default=None, alias="to"),
) -> CostReport:
    await state.request_log.flush()  # a report right after a call must include it
    since, until = parse_time(start, "from"), parse_time(end, "to")
    rows = await asyncio.to_thread(cost_report, state.engine, group_by, since, until)
    return CostReport(
        group_by=group_by,
        since=since.isoformat() if since else None,
        until=until.isoformat() if until else None,
        total_cost_usd=round(sum(r.cost_usd for r in rows), 10),
        data=rows,
    )
