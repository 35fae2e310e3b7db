"""Prompts: list, inspect, diff and preview; promote and roll back labels (master key)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query

from gateway.api.deps import CallerDep, MasterDep, StateDep, ValidInput
from gateway.calls.pipeline import caller_auth
from gateway.core.errors import BadRequest, NotFound
from gateway.evals.gates import LabelMove
from gateway.identity.auth import Caller
from gateway.prompts.models import (
    ProductionVersion,
    PromptDetail,
    PromptDiff,
    PromptHistory,
    PromptLabelMoved,
    PromptList,
    PromptSummary,
    PromptVersionList,
    PromptVersionText,
    RenderedPrompt,
    RenderRequest,
    Rollback,
    SyncResult,
    as_target,
)
from gateway.prompts.promotion import promote as move_label
from gateway.prompts.store import LATEST, hide_root, target_versions, version_diff
from gateway.state import GatewayState

router = APIRouter(prefix="/v1/prompts", dependencies=[ValidInput])


def _visible(caller: Caller, name: str) -> None:
    if caller.key is not None and not caller.key.allows_prompt(name):
        raise NotFound(f"No prompt named {name!r}.", param="name")


def _summary(state: GatewayState, name: str) -> PromptSummary:
    catalog = state.prompts
    labels = catalog.labels.get(name, {})
    latest = labels.get(LATEST, {}).get("version")
    prompt = catalog.versions.get(name, {}).get(str(latest)) if latest else None
    return PromptSummary(
        name=name,
        labels={label: as_target(target) for label, target in labels.items()},
        versions=len(catalog.versions.get(name, {})),
        latest=latest,
        description=prompt.front.get("description") if prompt else None,
        model=prompt.model if prompt else None,
        file_removed=name in catalog.removed,  # latest stays on the file's last version
    )


def _problems(state: GatewayState, caller: Caller) -> list[str]:
    """Files that failed validation at the last sync, relative to the prompts folder. A key
    limited to some prompts sees none: a broken file may be one it may not see."""
    if caller.key is not None and caller.key.prompts:
        return []
    return [hide_root(p, state.settings.prompts_dir) for p in state.prompts.errors]


@router.get("")
async def list_prompts(state: StateDep, caller: CallerDep) -> PromptList:
    names = sorted(state.prompts.versions)
    visible = [n for n in names if caller.key is None or caller.key.allows_prompt(n)]
    return PromptList(
        data=[_summary(state, n) for n in visible],
        errors=_problems(state, caller),
    )


@router.post("/sync")
async def sync_prompts(state: StateDep, caller: MasterDep) -> SyncResult:
    report = await asyncio.to_thread(
        state.prompt_store.sync, state.settings.prompts_dir, "api:master"
    )
    state.prompts.errors = report.problems()
    state.prompts.removed = {name for name, _ in report.removed}
    await asyncio.to_thread(state.prompts.refresh)
    return SyncResult(
        registered=[f"{n}@{v}" for n, v in report.registered],
        unchanged=[f"{n}@{v}" for n, v in report.unchanged],
        latest_moved=[f"{n}@{v}" for n, v, _ in report.latest_moved],
        removed=[name for name, _ in report.removed],
        errors=_problems(state, caller),
    )


@router.get("/{name}")
async def get_prompt(name: str, state: StateDep, caller: CallerDep) -> PromptDetail:
    _visible(caller, name)
    if name not in state.prompts.versions:
        raise NotFound(f"No prompt named {name!r}.", param="name")
    production = state.prompts.resolve(name)
    shown = ProductionVersion(
        version=production.version, front_matter=production.front, template=production.template
    )
    return PromptDetail(**dict(_summary(state, name)), production=shown)


@router.get("/{name}/versions")
async def list_versions(name: str, state: StateDep, caller: CallerDep) -> PromptVersionList:
    _visible(caller, name)
    versions = await asyncio.to_thread(state.prompt_store.versions, name)
    return PromptVersionList(data=versions)


@router.get("/{name}/versions/{version}")
async def get_version(
    name: str, version: str, state: StateDep, caller: CallerDep
) -> PromptVersionText:
    _visible(caller, name)
    return await asyncio.to_thread(state.prompt_store.version, name, version)


def _as_version(state: GatewayState, name: str, ref: str) -> str:
    """A version id, or the version a (single-target) label points at."""
    target = state.prompts.label_target(name, ref)
    if target is not None:
        return target_versions(target)[0]
    return ref


@router.get("/{name}/diff")
async def diff(
    name: str,
    state: StateDep,
    caller: CallerDep,
    start: str = Query(alias="from"),
    end: str = Query(default="latest", alias="to"),
) -> PromptDiff:
    _visible(caller, name)
    old_v, new_v = _as_version(state, name, start), _as_version(state, name, end)
    old = await asyncio.to_thread(state.prompt_store.version, name, old_v)
    new = await asyncio.to_thread(state.prompt_store.version, name, new_v)
    return PromptDiff(since=old_v, to=new_v, diff="".join(version_diff(name, old, new)))


@router.post("/{name}/render")
async def render(
    name: str, request: RenderRequest, state: StateDep, caller: CallerDep
) -> RenderedPrompt:
    """A preview of what a call would send: messages, model and config. No model call."""
    _visible(caller, name)
    prompt = state.prompts.resolve(name, request.label, request.version, request.user)
    auth = caller_auth(caller) if "auth" in prompt.data_names else None
    messages = await state.prompt_renderer.render(
        prompt, request.variables, request.context, request.messages, auth
    )
    return RenderedPrompt(
        name=name,
        version=prompt.version,
        model=prompt.model,
        config=prompt.config,
        messages=messages,
        ext=prompt.ext,
    )


@router.post("/{name}/labels")
async def promote(
    name: str, move: LabelMove, state: StateDep, caller: MasterDep
) -> PromptLabelMoved:
    move.takes_only("prompt", "label", "version", "weights", "actor", "reason", "require_eval")
    if move.label is None:
        raise BadRequest("label: required: the label to move, e.g. production.", param="label")
    if isinstance(move.version, int):
        raise BadRequest(
            f"version: a prompt version is its id (a string such as 3f2a9c1b7d4e), "
            f"not {move.version!r}.",
            param="version",
        )
    target: dict[str, Any] = (
        {"weights": move.weights} if move.weights is not None else {"version": move.version}
    )
    result = await asyncio.to_thread(
        move_label,
        state.prompt_store,
        state.evals,
        name,
        move.label,
        target,
        actor=move.actor or "api:master",
        reason=move.reason,
        require_eval=move.require_eval,
    )
    await asyncio.to_thread(state.prompts.refresh)
    return result


@router.post("/{name}/labels/{label}/rollback")
async def rollback(
    name: str, label: str, body: Rollback, state: StateDep, caller: MasterDep
) -> PromptLabelMoved:
    actor = body.actor or "api:master"
    result = await asyncio.to_thread(state.prompt_store.rollback, name, label, actor, body.reason)
    await asyncio.to_thread(state.prompts.refresh)
    return result


@router.get("/{name}/history")
async def history(
    name: str, state: StateDep, caller: CallerDep, label: str | None = None
) -> PromptHistory:
    _visible(caller, name)
    return PromptHistory(data=await asyncio.to_thread(state.prompt_store.history, name, label))
