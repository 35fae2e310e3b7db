"""The model registry over HTTP: register versions, move labels (master key), read lineage."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from gateway.api.deps import CallerDep, MasterDep, StateDep, ValidInput
from gateway.api.visibility import Visibility
from gateway.core.errors import BadRequest
from gateway.core.model_refs import LATEST, VERSION, check_name, model_ref
from gateway.evals.gates import LabelMove
from gateway.identity.auth import Caller
from gateway.registry.finetunes import import_job
from gateway.registry.models import (
    Lineage,
    RegistryHistory,
    RegistryLabelMove,
    RegistryLabelSet,
    RegistryModel,
    RegistryModelList,
    RegistryModelSummary,
    RegistryVersion,
    RegistryVersionDetail,
)
from gateway.registry.promotion import promote
from gateway.registry.spec import VersionSpec
from gateway.registry.store import no_model
from gateway.state import GatewayState

router = APIRouter(prefix="/v1/registry/models", dependencies=[ValidInput])
finetunes = APIRouter(prefix="/v1/registry/finetunes", dependencies=[ValidInput])

ACTOR = "api:master"  # who made a change over HTTP (only the master key may)


def _visibility(state: GatewayState, caller: Caller) -> Visibility:
    """A key limited to some models sees the versions served by those alone."""
    return Visibility(caller, state.registry, state.config.aliases())


@router.get("")
async def list_models(state: StateDep, caller: CallerDep) -> RegistryModelList:
    seen = _visibility(state, caller)

    def visible() -> list[RegistryModelSummary]:
        shown = (seen.model_shown(m) for m in state.registry.models())
        return [m for m in shown if m is not None]

    return RegistryModelList(data=await asyncio.to_thread(visible))


@router.post("/{name}/versions")
async def register(
    name: str, spec: VersionSpec, state: StateDep, caller: MasterDep
) -> RegistryVersionDetail:
    aliases = state.config.aliases()
    version = await asyncio.to_thread(
        state.registry.register, name, spec, aliases=aliases, actor=ACTOR
    )
    if version.kind == "llm":
        await asyncio.to_thread(state.llm_versions.refresh)  # this replica routes it at once
    return version


@router.get("/{name}")
async def get_model(name: str, state: StateDep, caller: CallerDep) -> RegistryModel:
    seen = _visibility(state, caller)

    def visible() -> RegistryModel:
        shown = seen.model_shown(state.registry.model(name))
        if shown is None:
            raise no_model(name)
        return shown

    return await asyncio.to_thread(visible)


@router.get("/{name}/versions/{ref}")
async def get_version(
    name: str, ref: str, state: StateDep, caller: CallerDep
) -> RegistryVersionDetail:
    seen = _visibility(state, caller)

    def visible() -> RegistryVersionDetail:
        version = state.registry.version(model_ref(name, ref))
        seen.require_version(name, version.version)
        return version

    return await asyncio.to_thread(visible)


def _version_number(move: LabelMove) -> int:
    version = move.version
    if isinstance(version, str) and VERSION.fullmatch(version):
        return int(version)
    if isinstance(version, int) and 1 <= version <= 999_999_999:
        return version
    raise BadRequest(
        f"version: a registry label points at a version number from 1 to 999999999, "
        f"not {version!r}.",
        param="version",
    )


@router.put("/{name}/labels/{label}")
async def move_label(
    name: str, label: str, move: LabelMove, state: StateDep, caller: MasterDep
) -> RegistryLabelSet:
    move.takes_only("registry", "version", "approver", "reason", "require_eval")
    number = _version_number(move)
    moved = await asyncio.to_thread(
        promote,
        state.registry,
        state.evals,
        model_ref(name, str(number)),
        label,
        approver=move.approver or "",
        actor=ACTOR,
        require_eval=move.require_eval,
        reason=move.reason,
    )
    if state.llm_versions.knows(name):
        await asyncio.to_thread(state.llm_versions.refresh)  # this replica routes it at once
    return moved


@router.get("/{name}/history")
async def label_history(
    name: str, state: StateDep, caller: CallerDep, label: str | None = None
) -> RegistryHistory:
    check_name(name)
    seen = _visibility(state, caller)

    def visible() -> list[RegistryLabelMove]:
        moves = state.registry.history(name, label)
        versions = seen.versions(name)
        if versions is None:
            return moves
        if not versions:
            raise no_model(name)
        return [
            m.model_copy(update={"since": m.since if m.since in versions else None})
            for m in moves
            if m.to in versions
        ]

    return RegistryHistory(data=await asyncio.to_thread(visible))


@router.get("/{name}/lineage")
async def get_lineage(name: str, state: StateDep, caller: CallerDep, ref: str = LATEST) -> Lineage:
    seen = _visibility(state, caller)

    def visible() -> Lineage:
        found = state.registry.lineage(model_ref(name, ref))
        seen.require_version(name, found.version.version)
        if seen.everything:
            return found

        def shown(version: RegistryVersion) -> bool:
            return seen.registry_version(version.name, version.version)

        return found.model_copy(
            update={
                "ancestors": [v for v in found.ancestors if shown(v)],
                "descendants": [v for v in found.descendants if shown(v)],
            }
        )

    return await asyncio.to_thread(visible)


@finetunes.post("")
async def import_finetune(
    job: Annotated[dict[str, Any], Body(description="An OpenAI fine-tuning job object.")],
    state: StateDep,
    caller: MasterDep,
    name: Annotated[str | None, Query(description="Registry model (default: the suffix).")] = None,
    alias: Annotated[
        str | None, Query(description="The model_name serving it (default: found in config).")
    ] = None,
) -> RegistryVersionDetail:
    """Registers a succeeded OpenAI fine-tuning job as the next `llm` version of `name`; a job
    imported before is a 409 naming its version."""
    config = state.config
    deployments = [(m.model_name, m.litellm_params.model) for m in config.model_list]

    def imported() -> RegistryVersionDetail:
        version = import_job(
            state.registry,
            job,
            name=name,
            alias=alias,
            deployments=deployments,
            aliases=config.aliases(),
            source=state.settings.config.name,
            actor=ACTOR,
            given_as="the body",
        )
        state.llm_versions.refresh()
        return version

    return await asyncio.to_thread(imported)
