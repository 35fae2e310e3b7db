"""The model registry over HTTP: register versions, move labels (master key), read lineage."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.deps import CallerDep, MasterDep, StateDep
from gateway.registry.promotion import promote
from gateway.registry.refs import LATEST, check_name, model_ref
from gateway.registry.spec import VersionSpec

router = APIRouter(prefix="/v1/registry/models")

ACTOR = "api:master"  # who made a change over HTTP (only the master key may)


@router.get("")
async def list_models(state: StateDep, caller: CallerDep) -> dict[str, Any]:
    return {"object": "list", "data": await asyncio.to_thread(state.registry.models)}


@router.post("/{name}/versions")
async def register(
    name: str, spec: VersionSpec, state: StateDep, caller: MasterDep
) -> dict[str, Any]:
    aliases = state.config.aliases()
    return await asyncio.to_thread(
        state.registry.register, name, spec, aliases=aliases, actor=ACTOR
    )


@router.get("/{name}")
async def get_model(name: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    return await asyncio.to_thread(state.registry.model, name)


@router.get("/{name}/versions/{ref}")
async def get_version(name: str, ref: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    return await asyncio.to_thread(state.registry.version, model_ref(name, ref))


class LabelMove(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    approver: str = Field(min_length=1, max_length=200)
    require_eval: str | None = Field(default=None, min_length=1)  # a suite that must have passed
    reason: str | None = Field(default=None, max_length=2000)


@router.put("/{name}/labels/{label}")
async def move_label(
    name: str, label: str, move: LabelMove, state: StateDep, caller: MasterDep
) -> dict[str, Any]:
    return await asyncio.to_thread(
        promote,
        state.registry,
        state.evals,
        model_ref(name, str(move.version)),
        label,
        approver=move.approver,
        actor=ACTOR,
        require_eval=move.require_eval,
        reason=move.reason,
    )


@router.get("/{name}/history")
async def label_history(
    name: str, state: StateDep, caller: CallerDep, label: str | None = None
) -> dict[str, Any]:
    check_name(name)
    moves = await asyncio.to_thread(state.registry.history, name, label)
    return {"object": "list", "data": moves}


@router.get("/{name}/lineage")
async def get_lineage(
    name: str, state: StateDep, caller: CallerDep, ref: str = LATEST
) -> dict[str, Any]:
    return await asyncio.to_thread(state.registry.lineage, model_ref(name, ref))
