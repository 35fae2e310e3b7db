"""Liveness, readiness and Prometheus metrics, for load balancers, orchestrators and
scrapers (no auth: keep the port off the public internet, metrics name keys and teams)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import Response

from gateway.api.deps import StateDep
from gateway.core.probes import Probe
from gateway.observability.metrics import CONTENT_TYPE
from gateway.observability.models import Health, Readiness, RequestLogHealth

router = APIRouter()


@router.get("/healthz")
async def healthz() -> Health:
    return Health()


@router.get("/readyz", responses={503: {"model": Readiness, "description": "Not ready."}})
async def readyz(state: StateDep, response: Response) -> Readiness:
    """Ready when the database answers (within a short timeout, checked at most once a
    second), Redis too when configured (unless GATEWAY_REDIS_FAIL_OPEN lets calls through
    without it) and, with GATEWAY_PRELOAD_EMBEDDINGS, the embedding model has loaded; a
    configured Qdrant server is reported, not held against readiness (no call needs it); the
    request log's backlog is reported either way."""
    probes: dict[str, Probe | None] = {
        "database": state.database_probe,
        "redis": state.redis_probe,
        "qdrant": state.qdrant_probe,
    }
    configured = {name: probe for name, probe in probes.items() if probe is not None}
    # Together: the slowest bound is the wait, not the sum of them.
    answers = await asyncio.gather(*(probe.problem() for probe in configured.values()))
    found = dict(zip(configured, answers, strict=True))
    checks = {name: answer or "ok" for name, answer in found.items()}
    problem = found["database"]
    if found.get("redis") and not state.settings.redis_fail_open:
        problem = problem or f"redis: {found['redis']}"
    providers = state.providers
    if providers.serves_local_embeddings(state.deployments):
        checks["embeddings"] = providers.local.embedding_status()
        # Asked to load at start: not ready until it has (a failure is reported, not held
        # against readiness: chat still works, and each embeddings call tries again).
        loading = providers.local.embedding_state in ("not loaded", "loading")
        if state.settings.preload_embeddings and loading:
            problem = problem or "the embedding model is loading"
    writer = state.request_log
    if problem is not None:
        response.status_code = 503
    return Readiness(
        status="ready" if problem is None else "not ready",
        models=len(state.config.aliases()),  # model_names, wildcards included
        checks=checks,
        request_log=RequestLogHealth(
            database="ok" if writer.healthy else "spooling",
            held_in_memory=writer.held,
            dropped=writer.dropped,
            quarantined=writer.quarantined,
        ),
    )


PROMETHEUS_TEXT = {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}


@router.get("/metrics", response_class=Response, responses={200: PROMETHEUS_TEXT})
async def metrics(state: StateDep) -> Response:
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE)
