"""Eval runs: stored by the runner, read by people and by promotion gates."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from gateway.api.deps import CallerDep, MasterDep, StateDep, ValidInput, read_json
from gateway.api.visibility import Visibility
from gateway.core.errors import BadRequest, NotFound
from gateway.evals.models import RunDetail, RunList, RunStored
from gateway.identity.auth import Caller
from gateway.state import GatewayState

router = APIRouter(prefix="/v1/evals", dependencies=[ValidInput])

REPORT_KEYS = {"suite", "verdict", "candidate", "baseline"}


def _visibility(state: GatewayState, caller: Caller) -> Visibility:
    return Visibility(caller, state.registry, state.config.aliases())


@router.post("/runs")
async def store_run(request: Request, state: StateDep, caller: MasterDep) -> RunStored:
    report, _ = await read_json(request)
    missing = REPORT_KEYS - set(report)
    if missing:
        raise BadRequest(f"an eval report needs {sorted(missing)} (write it with --json)")
    try:
        run_id = await asyncio.to_thread(state.evals.record, report)
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRequest(f"malformed eval report: {exc}") from None
    return RunStored(id=run_id)


@router.get("/runs")
async def list_runs(
    state: StateDep,
    caller: CallerDep,
    suite: str | None = None,
    version: str | None = None,
    limit: int = 100,
) -> RunList:
    """The latest runs (of what the key may use: a key limited to some prompts or models
    sees the runs of those alone)."""
    seen = _visibility(state, caller)
    visible = None if seen.everything else seen.run
    limit = max(1, min(limit, 1000))
    runs = await asyncio.to_thread(state.evals.runs, suite, version, limit, visible)
    return RunList(data=runs)


@router.get("/runs/{run_id}")
async def get_run(run_id: str, state: StateDep, caller: CallerDep) -> RunDetail:
    seen = _visibility(state, caller)

    def visible_run() -> RunDetail:
        run = state.evals.run(run_id)
        if not seen.run(run):
            raise NotFound(f"No eval run {run_id!r}.", param="id")  # as if it did not exist
        return run

    return await asyncio.to_thread(visible_run)
