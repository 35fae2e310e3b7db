"""The OpenAI-compatible surface: chat completions (JSON and SSE), embeddings, models."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from gateway.api.deps import CallerDep, StateDep, json_object, require_model
from gateway.errors import BadRequest, GatewayError
from gateway.providers import Deployment, Provider, Reply, Stream
from gateway.routing import Routed
from gateway.state import GatewayState

router = APIRouter()

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def _check_chat(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array of messages.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise BadRequest(
                f"messages[{index}] must be an object whose 'role' is one of "
                f"{', '.join(sorted(ROLES))}.",
                param=f"messages[{index}]",
            )
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest("'stream' must be true or false.", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("'stream_options' must be an object.", param="stream_options")


def _headers(
    request: Request, state: GatewayState, routed: Routed[Any], usage_reply: Reply | None
) -> dict[str, str]:
    deployment = routed.deployment
    started: float = request.scope["state"]["started"]
    total = time.perf_counter() - started
    headers = {
        "x-gateway-model": deployment.id,
        "x-gateway-overhead-ms": f"{max(0.0, total - routed.upstream_seconds) * 1000:.3f}",
    }
    if usage_reply is not None:
        cost = state.prices.cost(deployment, usage_reply.usage)
        headers["x-gateway-cost-usd"] = f"{cost:.8f}"
    return headers


async def _chat(provider: Provider, deployment: Deployment, body: dict[str, Any]) -> Reply:
    return await provider.chat(deployment, body)


@router.post("/v1/chat/completions")
@router.post("/chat/completions", include_in_schema=False)
async def chat_completions(request: Request, state: StateDep, caller: CallerDep) -> Response:
    body = await json_object(request)
    alias = require_model(body)
    _check_chat(body)
    if body.get("stream"):
        opened = await state.router.call(alias, lambda p, d: p.open_stream(d, body))
        headers = _headers(request, state, opened, None)
        headers["cache-control"] = "no-cache"
        return StreamingResponse(
            _relay(opened.value), media_type="text/event-stream", headers=headers
        )
    routed = await state.router.call(alias, lambda p, d: p.chat(d, body))
    return Response(
        routed.value.body,
        media_type="application/json",
        headers=_headers(request, state, routed, routed.value),
    )


async def _relay(stream: Stream) -> AsyncIterator[bytes]:
    """Passes events through; a failure after the first byte ends with an error event, never
    with a silent end that would look like a complete answer."""
    try:
        async for event in stream.events():
            yield event
    except GatewayError as exc:
        yield b"data: " + exc.json_bytes() + b"\n\n"
    finally:
        await stream.aclose()


@router.post("/v1/embeddings")
@router.post("/embeddings", include_in_schema=False)
async def embeddings(request: Request, state: StateDep, caller: CallerDep) -> Response:
    body = await json_object(request)
    alias = require_model(body)
    if "input" not in body:
        raise BadRequest("'input' is required: a string or an array of strings.", param="input")
    routed = await state.router.call(alias, lambda p, d: p.embeddings(d, body))
    return Response(
        routed.value.body,
        media_type="application/json",
        headers=_headers(request, state, routed, routed.value),
    )


@router.get("/v1/models")
@router.get("/models", include_in_schema=False)
async def list_models(state: StateDep, caller: CallerDep) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": alias, "object": "model", "created": 0, "owned_by": "gateway"}
            for alias in state.router.aliases()
        ],
    }


@router.get("/v1/models/{model:path}")
async def get_model(model: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    state.router.states(model)  # raises the 404 for unknown aliases
    return {"id": model, "object": "model", "created": 0, "owned_by": "gateway"}
