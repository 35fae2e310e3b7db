"""The LiteLLM admin routes: thin adapters over litellm_admin's modules.

Keys are taken where LiteLLM looks for them (identity/auth.py `presented_key`, as on every
route). Errors keep the
gateway's shape, which is LiteLLM's, with LiteLLM's `code`: the HTTP status as a string.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute

from gateway.api import access_log
from gateway.api.deps import StateDep, invalid_request, valid_input
from gateway.api.litellm_admin import catalog, keys, spend
from gateway.api.litellm_admin.models import (
    DeploymentList,
    HealthReport,
    KeyDeleteRequest,
    KeyGenerated,
    KeyInfoAnswer,
    KeyRequest,
    KeysDeleted,
    KeyUpdated,
    ListedTeam,
    LiteLLMReadiness,
    LiteLLMTeam,
    ModelGroupList,
    SpendDay,
    SpendLog,
    TeamDeleteRequest,
    TeamInfoAnswer,
    TeamRequest,
    TeamsDeleted,
    TeamUpdated,
)
from gateway.core.errors import GatewayError
from gateway.identity.auth import Caller, presented_key
from gateway.state import GatewayState
from gateway.store import errors as store_errors

TRUNCATED = "x-litellm-spend-logs-truncated"


def litellm_error(error: GatewayError) -> Response:
    body = error.body()
    body["error"]["code"] = str(error.status)
    return Response(
        orjson.dumps(body),
        status_code=error.status,
        media_type="application/json",
        headers=error.headers,
    )


class LiteLLMRoute(APIRoute):
    """Every failure of these routes (authentication, validation, the database) rendered
    as LiteLLM renders its errors."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except GatewayError as exc:
                return litellm_error(exc)
            except RequestValidationError as exc:
                return litellm_error(invalid_request(request, exc))
            except store_errors.UNAVAILABLE as exc:
                return litellm_error(store_errors.unavailable(exc))

        return handle


async def litellm_caller(request: Request) -> Caller:
    state: GatewayState = request.app.state.gateway
    caller = await state.auth.authenticate(
        presented_key(request.headers), request.scope.get("client")
    )
    request.scope[access_log.KEY_ID] = caller.key_id
    await valid_input(request, caller)  # storable values only, as every admin route
    return caller


async def litellm_master(
    caller: Annotated[Caller, Depends(litellm_caller)], request: Request
) -> Caller:
    request.app.state.gateway.auth.require_master(caller)
    return caller


CallerDep = Annotated[Caller, Depends(litellm_caller)]
MasterDep = Annotated[Caller, Depends(litellm_master)]

router = APIRouter(tags=["LiteLLM"], route_class=LiteLLMRoute)


@router.post("/key/generate")
async def generate_key(body: KeyRequest, state: StateDep, caller: MasterDep) -> KeyGenerated:
    """A virtual key from LiteLLM's fields; `key` brings a LiteLLM key's own value."""
    return await keys.generate(state, body)


@router.get("/key/info")
async def key_info(state: StateDep, caller: CallerDep, key: str | None = None) -> KeyInfoAnswer:
    """A key (itself or its SHA-256); without `key`, the caller's own."""
    return await keys.info(state, caller, key)


@router.post("/key/update")
async def update_key(body: KeyRequest, state: StateDep, caller: MasterDep) -> KeyUpdated:
    """The fields given change (null clears; metadata is replaced as a whole)."""
    return await keys.update(state, body)


@router.post("/key/delete")
async def delete_keys(body: KeyDeleteRequest, state: StateDep, caller: MasterDep) -> KeysDeleted:
    """Revokes the keys (their rows and spend stay in the log)."""
    return await keys.delete(state, body.keys or [], body.key_aliases or [])


@router.post("/team/new")
async def new_team(body: TeamRequest, state: StateDep, caller: MasterDep) -> LiteLLMTeam:
    return await keys.new_team(state, body)


@router.post("/team/update")
async def update_team(body: TeamRequest, state: StateDep, caller: MasterDep) -> TeamUpdated:
    """The fields given change (null clears; metadata is replaced as a whole)."""
    return await keys.update_team(state, body)


@router.post("/team/delete")
async def delete_teams(body: TeamDeleteRequest, state: StateDep, caller: MasterDep) -> TeamsDeleted:
    """Deletes the teams and revokes their keys (their rows and spend stay in the log)."""
    return await keys.delete_teams(state, body.team_ids)


@router.get("/team/list")
async def team_list(state: StateDep, caller: CallerDep) -> list[ListedTeam]:
    """Every team with its live keys (a virtual key: its own team only)."""
    return await keys.team_list(state, caller)


@router.get("/team/info")
async def team_info(
    state: StateDep, caller: CallerDep, team_id: str | None = None
) -> TeamInfoAnswer:
    return await keys.team_info(state, caller, team_id)


@router.get("/spend/logs")
async def spend_logs(
    response: Response,
    state: StateDep,
    caller: CallerDep,
    api_key: str | None = None,
    user_id: str | None = None,
    request_id: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    summarize: bool = True,
) -> list[SpendLog] | list[SpendDay]:
    """Calls, newest first (at most 10,000); with start_date and end_date (YYYY-MM-DD) and
    summarize=true, LiteLLM's default, spend per day instead. A virtual key sees its own."""
    query = spend.SpendQuery(api_key, user_id, request_id, start_date, end_date, summarize)
    found = await spend.read(state, caller, query)
    if found.truncated:
        response.headers[TRUNCATED] = "true"
    return found.rows


@router.get("/model/info")
@router.get("/v1/model/info")
async def model_info(
    state: StateDep, caller: CallerDep, litellm_model_id: str | None = None
) -> DeploymentList:
    return catalog.model_info(state, caller, litellm_model_id)


@router.get("/model_group/info")
async def model_group_info(
    state: StateDep, caller: CallerDep, model_group: str | None = None
) -> ModelGroupList:
    return catalog.model_groups(state, caller, model_group)


UNHEALTHY: dict[int | str, dict[str, Any]] = {
    503: {"model": HealthReport, "description": "The model asked for has no healthy deployment."}
}


@router.get("/health", responses=UNHEALTHY)
async def health(
    response: Response,
    state: StateDep,
    caller: CallerDep,
    model: str | None = None,
    model_id: str | None = None,
) -> HealthReport:
    """Deployments by the router's state in this process: unhealthy while cooling down after
    repeated failures. No upstream is called (a health call costs money and rate limit)."""
    report = catalog.health(state, caller, model, model_id)
    if (model or model_id) and report.healthy_count == 0:
        response.status_code = 503
    return report


@router.get("/health/liveliness")
@router.get("/health/liveness")
async def liveliness() -> Literal["I'm alive!"]:
    return "I'm alive!"


NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": LiteLLMReadiness, "description": "The database does not answer."}
}


@router.get("/health/readiness", responses=NOT_READY)
async def readiness(state: StateDep, response: Response) -> LiteLLMReadiness:
    """LiteLLM's readiness: 503 (with its body) when the database does not answer."""
    problem = await state.database_probe.problem()
    if problem is not None:
        response.status_code = 503
    return LiteLLMReadiness(db="connected" if problem is None else "disconnected")
