"""Prompts: list, inspect, diff and preview; promote and roll back labels (master key)."""

from __future__ import annotations

import asyncio
import difflib
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.deps import CallerDep, MasterDep, StateDep, ValidInput
from gateway.core.errors import NotFound, PermissionDenied
from gateway.identity.auth import Caller
from gateway.prompts.gates import missing_evals
from gateway.prompts.store import LATEST, hide_root, target_versions
from gateway.state import GatewayState

router = APIRouter(prefix="/v1/prompts", dependencies=[ValidInput])


def _visible(caller: Caller, name: str) -> None:
    if caller.key is not None and not caller.key.allows_prompt(name):
        raise NotFound(f"No prompt named {name!r}.", param="name")


def _summary(state: GatewayState, name: str) -> dict[str, Any]:
    catalog = state.prompts
    labels = catalog.labels.get(name, {})
    latest = labels.get(LATEST, {}).get("version")
    prompt = catalog.versions.get(name, {}).get(str(latest)) if latest else None
    return {
        "name": name,
        "labels": labels,
        "versions": len(catalog.versions.get(name, {})),
        "latest": latest,
        "description": prompt.front.get("description") if prompt else None,
        "model": prompt.model if prompt else None,
        "file_removed": name in catalog.removed,  # latest stays on the file's last version
    }


def _problems(state: GatewayState, caller: Caller) -> list[str]:
    """Files that failed validation at the last sync, relative to the prompts folder. A key
    limited to some prompts sees none: a broken file may be one it may not see."""
    if caller.key is not None and caller.key.prompts:
        return []
    return [hide_root(p, state.settings.prompts_dir) for p in state.prompts.errors]


@router.get("")
async def list_prompts(state: StateDep, caller: CallerDep) -> dict[str, Any]:
    names = sorted(state.prompts.versions)
    visible = [n for n in names if caller.key is None or caller.key.allows_prompt(n)]
    return {
        "object": "list",
        "data": [_summary(state, n) for n in visible],
        "errors": _problems(state, caller),
    }


@router.post("/sync")
async def sync_prompts(state: StateDep, caller: MasterDep) -> dict[str, Any]:
    report = await asyncio.to_thread(
        state.prompt_store.sync, state.settings.prompts_dir, "api:master"
    )
    state.prompts.errors = report.problems()
    state.prompts.removed = {name for name, _ in report.removed}
    await asyncio.to_thread(state.prompts.refresh)
    return {
        "registered": [f"{n}@{v}" for n, v in report.registered],
        "unchanged": [f"{n}@{v}" for n, v in report.unchanged],
        "latest_moved": [f"{n}@{v}" for n, v, _ in report.latest_moved],
        "removed": [name for name, _ in report.removed],
        "errors": _problems(state, caller),
    }


@router.get("/{name}")
async def get_prompt(name: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    _visible(caller, name)
    if name not in state.prompts.versions:
        raise NotFound(f"No prompt named {name!r}.", param="name")
    summary = _summary(state, name)
    production = state.prompts.resolve(name)
    summary["production"] = {
        "version": production.version,
        "front_matter": production.front,
        "template": production.template,
    }
    return summary


@router.get("/{name}/versions")
async def list_versions(name: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    _visible(caller, name)
    versions = await asyncio.to_thread(state.prompt_store.versions, name)
    return {"object": "list", "data": versions}


@router.get("/{name}/versions/{version}")
async def get_version(
    name: str, version: str, state: StateDep, caller: CallerDep
) -> dict[str, Any]:
    _visible(caller, name)
    return await asyncio.to_thread(state.prompt_store.version, name, version)


def _as_version(state: GatewayState, name: str, ref: str) -> str:
    """A version id, or the version a (single-target) label points at."""
    target = state.prompts.labels.get(name, {}).get(ref)
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
) -> dict[str, Any]:
    _visible(caller, name)
    old_v, new_v = _as_version(state, name, start), _as_version(state, name, end)
    old = await asyncio.to_thread(state.prompt_store.version, name, old_v)
    new = await asyncio.to_thread(state.prompt_store.version, name, new_v)
    lines = difflib.unified_diff(
        old["content"].splitlines(keepends=True),
        new["content"].splitlines(keepends=True),
        fromfile=f"{name}@{old_v}",
        tofile=f"{name}@{new_v}",
    )
    return {"from": old_v, "to": new_v, "diff": "".join(lines)}


class RenderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    label: str | None = None
    version: str | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    user: str | None = None


@router.post("/{name}/render")
async def render(
    name: str, request: RenderRequest, state: StateDep, caller: CallerDep
) -> dict[str, Any]:
    """A preview of what a call would send: messages, model and config. No model call."""
    _visible(caller, name)
    prompt = state.prompts.resolve(name, request.label, request.version, request.user)
    messages = await state.prompt_renderer.render(prompt, request.variables)
    return {
        "name": name,
        "version": prompt.version,
        "model": prompt.model,
        "config": prompt.config,
        "messages": messages,
    }


class LabelMove(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # pydantic matches with Rust's regex, where `$` is the end of the text ("prod\n" fails).
    label: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    version: str | None = Field(default=None, max_length=64)
    weights: dict[str, float] | None = Field(default=None, max_length=100)
    reason: str | None = Field(default=None, max_length=2000)
    actor: str | None = Field(default=None, max_length=200)
    # A suite that must have a passing run of the target.
    require_eval: str | None = Field(default=None, max_length=200)


@router.post("/{name}/labels")
async def promote(name: str, move: LabelMove, state: StateDep, caller: MasterDep) -> dict[str, Any]:
    target: dict[str, Any] = (
        {"weights": move.weights} if move.weights is not None else {"version": move.version}
    )
    actor = move.actor or "api:master"
    if move.require_eval:
        missing = await asyncio.to_thread(
            missing_evals, state.evals, move.require_eval, name, target
        )
        if missing:
            raise PermissionDenied(missing, code="eval_required")
    result = await asyncio.to_thread(
        state.prompt_store.promote, name, move.label, target, actor, move.reason
    )
    await asyncio.to_thread(state.prompts.refresh)
    return result


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=2000)
    actor: str | None = Field(default=None, max_length=200)


@router.post("/{name}/labels/{label}/rollback")
async def rollback(
    name: str, label: str, body: Rollback, state: StateDep, caller: MasterDep
) -> dict[str, Any]:
    actor = body.actor or "api:master"
    result = await asyncio.to_thread(state.prompt_store.rollback, name, label, actor, body.reason)
    await asyncio.to_thread(state.prompts.refresh)
    return result


@router.get("/{name}/history")
async def history(
    name: str, state: StateDep, caller: CallerDep, label: str | None = None
) -> dict[str, Any]:
    _visible(caller, name)
    return {
        "object": "list",
        "data": await asyncio.to_thread(state.prompt_store.history, name, label),
    }
