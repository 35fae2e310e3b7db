"""Vector index health (`/v1/monitoring/indexes`) and search over the configured collections
(`/v1/indexes/{name}/search`, for retrieval-augmented prompts and their eval suites).

A virtual key sees the collections whose embedding model it may use; the others answer as if
they did not exist (404), as prompts and the registry answer what a key may not use. A fresh
check (`refresh=true`) takes seconds and the master key.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from gateway.api.deps import CallerDep, StateDep, ValidInput, read_json
from gateway.calls.internal import embed
from gateway.core.errors import BadRequest, NotFound, UpstreamUnavailable
from gateway.core.validation import dotted, first_problem
from gateway.identity.auth import Caller
from gateway.indexes.engine import Missing, Unavailable
from gateway.indexes.models import (
    CollectionHealth,
    IndexesHealth,
    SearchAnswer,
    SearchRequest,
    worst,
)
from gateway.state import GatewayState

router = APIRouter(dependencies=[ValidInput])
HTML: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {"schema": {"type": "string"}}}}
}


def _sees(caller: Caller, alias: str) -> bool:
    key = caller.key
    return key is None or not key.models or key.allows_model(alias)


def _named(state: GatewayState, caller: Caller, name: str) -> str:
    collections = state.indexes.collections
    found = collections.get(name)
    if found is None or not _sees(caller, found.model):
        visible = sorted(n for n, c in collections.items() if _sees(caller, c.model))
        raise NotFound(
            f"No collection {name!r} in the config's indexes (known: "
            f"{', '.join(visible) or 'none'}).",
            param="name",
        )
    return name


async def _health(
    state: GatewayState, caller: Caller, name: str, refresh: bool
) -> CollectionHealth:
    if refresh:
        state.auth.require_master(caller)
        return await state.indexes.check(name)
    return await state.indexes.current(name)


@router.get("/v1/monitoring/indexes")
async def list_index_health(
    state: StateDep, caller: CallerDep, refresh: bool = False
) -> IndexesHealth:
    """Every configured collection's latest health check (run now when there is none yet,
    or with refresh=true, master key only)."""
    names = [name for name, c in state.indexes.collections.items() if _sees(caller, c.model)]
    found = [await _health(state, caller, name, refresh) for name in names]
    return IndexesHealth(status=worst([h.status for h in found]), data=found)


@router.get("/v1/monitoring/indexes/{name}")
async def get_index_health(
    name: str, state: StateDep, caller: CallerDep, refresh: bool = False
) -> CollectionHealth:
    """One collection's latest health check, every check with its status and value."""
    return await _health(state, caller, _named(state, caller, name), refresh)


@router.get("/v1/monitoring/indexes/{name}/report", response_class=HTMLResponse, responses=HTML)
async def index_health_report(
    name: str, state: StateDep, caller: CallerDep, refresh: bool = False
) -> HTMLResponse:
    """The check as a page: every check, and recall and latency per hnsw_ef as a chart
    (self-contained: inline SVG, no scripts, nothing fetched)."""
    from gateway.indexes.report import html_page

    health = await _health(state, caller, _named(state, caller, name), refresh)
    return HTMLResponse(html_page(health))


@router.post("/v1/indexes/{name}/search")
async def search_index(
    name: str, request: Request, state: StateDep, caller: CallerDep
) -> SearchAnswer:
    """The points nearest a text: embedded by the collection's model through the gateway
    (admitted, priced and logged under the caller's key), then searched."""
    collection = state.indexes.collection(_named(state, caller, name))
    body, _ = await read_json(request)
    try:
        asked = SearchRequest.model_validate(body)
    except ValidationError as exc:
        # The first problem, named by its field, as every other route's 400; never the value.
        loc, message = first_problem(exc)
        field = dotted(loc)
        raise BadRequest(f"{field or 'search body'}: {message}", param=field or None) from None
    (vector,) = await embed(state.calls, caller, collection.model, [asked.query])
    from gateway.indexes.search import nearest

    place = state.indexes.places[name]
    async with state.indexes.lock(name):
        try:
            hits = await asyncio.to_thread(
                nearest, place, name, vector, asked.limit, dict(asked.filter)
            )
        except Missing as exc:
            hint = "; `gateway index build-example` builds it" if name == "gateway-docs" else ""
            raise NotFound(f"{exc}{hint}", code="collection_not_found") from None
        except Unavailable as exc:
            raise UpstreamUnavailable(str(exc)) from None
    return SearchAnswer(collection=name, model=collection.model, data=hits)
