"""Liveness and readiness, for load balancers and orchestrators (no auth)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.api.deps import StateDep

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: StateDep) -> dict[str, Any]:
    return {"status": "ready", "models": len(state.router.aliases())}
