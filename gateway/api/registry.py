"""The model registry over HTTP: register versions, move labels (master key), read lineage."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.deps import CallerDep, MasterDep, StateDep, ValidInput
from gateway.api.visibility import Visibility
from gateway.core.model_refs import LATEST, check_name, model_ref
from gateway.identity.auth import Caller
from gateway.registry.promotion import promote
from gateway.registry.spec import VersionSpec
from gateway.registry.store import no_model
from gateway.state import GatewayState

router = APIRouter(prefix="/v1/registry/models", dependencies=[ValidInput])

ACTOR = "api:master"  # who made a change over HTTP (only the master key may)


def _visibility(state: GatewayState, caller: Caller) -> Visibility:
    """A key limited to some models sees the versions served by those alone."""
    return Visibility(caller, state.registry, state.config.aliases())


@router.get("")
async def list_models(state: StateDep, caller: CallerDep) -> dict[str, Any]:
    seen = _visibility(state, caller)

    def visible() -> list[dict[str, Any]]:
        shown = (seen.model_shown(m) for m in state.registry.models())
        return [m for m in shown if m is not None]

    return {"object": "list", "data": await asyncio.to_thread(visible)}


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
    seen = _visibility(state, caller)

    def visible() -> dict[str, Any]:
        shown = seen.model_shown(state.registry.model(name))
        if shown is None:
            raise no_model(name)
        return shown

    return await asyncio.to_thread(visible)


@router.get("/{name}/versions/{ref}")
async def get_version(name: str, ref: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    seen = _visibility(state, caller)

    def visible() -> dict[str, Any]:
        version = state.registry.version(model_ref(name, ref))
        seen.require_version(name, version["version"])
        return version

    return await asyncio.to_thread(visible)


class LabelMove(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    version: int = Field(ge=1, le=999_999_999)
    approver: str = Field(min_length=1, max_length=200)
    # A suite that must have passed.
    require_eval: str | None = Field(default=None, min_length=1, max_length=200)
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
    seen = _visibility(state, caller)

    def visible() -> list[dict[str, Any]]:
        moves = state.registry.history(name, label)
        versions = seen.versions(name)
        if versions is None:
            return moves
        if not versions:
            raise no_model(name)
        return [
            {**m, "from": m["from"] if m["from"] in versions else None}
            for m in moves
            if m["to"] in versions
        ]

    return {"object": "list", "data": await asyncio.to_thread(visible)}


@router.get("/{name}/lineage")
async def get_lineage(
    name: str, state: StateDep, caller: CallerDep, ref: str = LATEST
) -> dict[str, Any]:
    seen = _visibility(state, caller)

    def visible() -> dict[str, Any]:
        found = state.registry.lineage(model_ref(name, ref))
        seen.require_version(name, found["version"]["version"])
        if seen.everything:
            return found

        def shown(version: dict[str, Any]) -> bool:
            return seen.registry_version(version["name"], version["version"])

        return {
            **found,
            "ancestors": [v for v in found["ancestors"] if shown(v)],
            "descendants": [v for v in found["descendants"] if shown(v)],
        }

    return await asyncio.to_thread(visible)
