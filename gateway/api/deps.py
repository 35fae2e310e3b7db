"""What routes need, declared once (route signatures read like a contract)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Request

from gateway.auth import Caller
from gateway.errors import BadRequest
from gateway.state import GatewayState


def get_state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


def authenticate(request: Request) -> Caller:
    return get_state(request).auth.authenticate(request.headers.get("authorization"))


StateDep = Annotated[GatewayState, Depends(get_state)]
CallerDep = Annotated[Caller, Depends(authenticate)]


async def json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        raise BadRequest("Request body is empty: send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object.")
    return body


def require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string.", param="model")
    return model
