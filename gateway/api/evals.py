"""Eval runs: stored by the runner, read by people and by promotion gates."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from gateway.api.deps import CallerDep, MasterDep, StateDep, read_json
from gateway.errors import BadRequest

router = APIRouter(prefix="/v1/evals")

REPORT_KEYS = {"suite", "verdict", "candidate", "baseline"}


@router.post("/runs")
async def store_run(request: Request, state: StateDep, caller: MasterDep) -> dict[str, Any]:
    report, _ = await read_json(request)
    missing = REPORT_KEYS - set(report)
    if missing:
        raise BadRequest(f"an eval report needs {sorted(missing)} (write it with --json)")
    try:
        run_id = await asyncio.to_thread(state.evals.record, report)
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRequest(f"malformed eval report: {exc}") from None
    return {"id": run_id}


@router.get("/runs")
async def list_runs(
    state: StateDep,
    caller: CallerDep,
    suite: str | None = None,
    version: str | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    runs = await asyncio.to_thread(state.evals.runs, suite, version, max(1, min(limit, 1000)))
    return {"object": "list", "data": runs}


@router.get("/runs/{run_id}")
async def get_run(run_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    return await asyncio.to_thread(state.evals.run, run_id)
