"""Liveness, readiness and Prometheus metrics, for load balancers, orchestrators and
scrapers (no auth: keep the port off the public internet, metrics name keys and teams)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.responses import Response

from gateway.api.deps import StateDep
from gateway.observability.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: StateDep) -> Response:
    """Ready when the database answers (within a short timeout, checked at most once a
    second); the request log's backlog is reported either way."""
    problem = await state.database_probe.problem()
    writer = state.request_log
    body: dict[str, Any] = {
        "status": "ready" if problem is None else "not ready",
        "models": len(state.router.aliases()),
        "checks": {"database": problem or "ok"},
        "request_log": {
            "database": "ok" if writer.healthy else "spooling",
            "held_in_memory": writer.held,
            "dropped": writer.dropped,
            "quarantined": writer.quarantined,
        },
    }
    status = 200 if problem is None else 503
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


@router.get("/metrics")
async def metrics(state: StateDep) -> Response:
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE)
