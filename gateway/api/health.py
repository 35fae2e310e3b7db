"""Liveness, readiness and Prometheus metrics, for load balancers, orchestrators and
scrapers (no auth: keep the port off the public internet, metrics name keys and teams)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from gateway.api.deps import StateDep
from gateway.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: StateDep) -> dict[str, Any]:
    return {"status": "ready", "models": len(state.router.aliases())}


@router.get("/metrics")
async def metrics(state: StateDep) -> Response:
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE)
