"""Drift results: `GET /v1/monitoring/drift` (every subject's latest report) and
`GET /v1/monitoring/drift/{subject}` (one subject's history, newest first). Master key only:
the reports aggregate every key's calls. The drift job computes them (`drift.interval`), and
so does `gateway drift report`; these routes only read what was stored."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from gateway.api.deps import MasterDep, StateDep, ValidInput
from gateway.core.errors import BadRequest, NotFound
from gateway.drift import subjects
from gateway.drift.models import DriftHistory, DriftReport, DriftReportList

router = APIRouter(dependencies=[ValidInput])
MAX_HISTORY = 1000


@router.get("/v1/monitoring/drift")
async def latest_drift(
    state: StateDep, caller: MasterDep, model: str | None = None, prompt: str | None = None
) -> DriftReportList:
    """The latest report of every subject (filtered by `model`: an alias or classic model,
    its prompts' subjects included; `prompt`: NAME or NAME@VERSION)."""
    problem = subjects.prompt_filter_problem(prompt) if prompt is not None else None
    if problem is not None:
        raise BadRequest(f"'prompt' {problem}.", param="prompt")
    reports = await asyncio.to_thread(state.drift.store.latest_runs)
    found = [DriftReport.model_validate(r) for r in reports]
    chosen = [r for r in found if subjects.selected(subjects.parse(r.subject), model, prompt)]
    return DriftReportList(data=chosen)


@router.get("/v1/monitoring/drift/{subject:path}")
async def drift_history(
    subject: str, state: StateDep, caller: MasterDep, limit: int = 50
) -> DriftHistory:
    """A subject's reports, newest first (`limit`: 1 to 1000)."""
    try:
        named = subjects.parse(subject)
    except ValueError as exc:
        raise BadRequest(str(exc), param="subject") from None
    if not 1 <= limit <= MAX_HISTORY:
        raise BadRequest(f"'limit' must be from 1 to {MAX_HISTORY}.", param="limit")
    reports = await asyncio.to_thread(state.drift.store.history, named.id, limit)
    if not reports:
        raise NotFound(
            f"No drift report for {named.id!r} yet: GET /v1/monitoring/drift lists the subjects "
            f"compared so far."
        )
    return DriftHistory(subject=named.id, data=[DriftReport.model_validate(r) for r in reports])
