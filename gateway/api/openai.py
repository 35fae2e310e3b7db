"""The OpenAI-compatible surface: chat completions (JSON and SSE), embeddings, models."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.api.deps import CallerDep, StateDep, read_json, require_model
from gateway.api.event_stream import EventStreamResponse
from gateway.auth import Caller
from gateway.errors import BadRequest, GatewayError
from gateway.metering.calls import CallRecord
from gateway.metering.meter import Admission
from gateway.metering.redact import redacted_body, redacted_json
from gateway.prompts.calling import PromptRef, apply_prompt, prompt_ref
from gateway.providers import Deployment, Reply, Stream, Usage
from gateway.routing import Routed
from gateway.state import GatewayState

router = APIRouter()

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def _check_chat(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array of messages.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or str(message.get("role")) not in ROLES:
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


def _call(request: Request) -> CallRecord:
    call: CallRecord = request.scope["state"]["call"]
    return call


def _logs_bodies(state: GatewayState, caller: Caller) -> bool:
    return state.config.gateway.log_bodies or (caller.key is not None and caller.key.log_bodies)


async def _admit(
    request: Request, state: GatewayState, caller: Caller, completion: bool
) -> tuple[dict[str, Any], str, Admission]:
    call = _call(request)
    body, size = await read_json(request)
    if completion:
        ref = prompt_ref(body, request.headers)
        if ref is not None:
            body, size = await _use_prompt(state, caller, call, ref, body, size)
    alias = require_model(body)
    call.alias = alias
    if completion:
        _check_chat(body)
    chain = state.router.chain(alias)  # 404 for an unknown alias, before anything is reserved
    caller.check_model(alias)
    if _logs_bodies(state, caller):
        call.request_body = redacted_json(body)
    admission = await state.meter.admit(caller, chain, body, size, completion=completion)
    return body, alias, admission


async def _use_prompt(
    state: GatewayState,
    caller: Caller,
    call: CallRecord,
    ref: PromptRef,
    body: dict[str, Any],
    size: int,
) -> tuple[dict[str, Any], int]:
    caller.check_prompt(ref.name)
    prompt = state.prompts.resolve(ref.name, ref.label, ref.version, ref.user)
    call.prompt_name, call.prompt_version = prompt.name, prompt.version
    messages = await state.prompt_renderer.render(prompt, ref.variables)
    # Rendered text counts toward the worst-case token estimate like the caller's own.
    size += sum(len(str(m.get("content", ""))) for m in messages)
    return apply_prompt(body, prompt, messages), size


def _finish(
    request: Request,
    state: GatewayState,
    routed: Routed[Any],
    admission: Admission,
    usage: Usage | None,
) -> dict[str, str]:
    """Fills the call record and returns the response headers."""
    call = _call(request)
    deployment = routed.deployment
    call.deployment = deployment
    call.attempts = routed.attempts
    call.upstream_s = routed.upstream_seconds
    call.price_version = state.prices.version
    call.usage = usage
    call.cost = state.prices.cost(deployment, usage)
    total = time.perf_counter() - call.started
    headers = {
        "x-gateway-model": deployment.id,
        "x-gateway-overhead-ms": f"{max(0.0, total - routed.upstream_seconds) * 1000:.3f}",
        **admission.headers(),
    }
    if not call.stream:
        headers["x-gateway-cost-usd"] = f"{call.cost:.10f}"
    if call.prompt_name is not None:
        headers["x-gateway-prompt"] = f"{call.prompt_name}@{call.prompt_version}"
    return headers


@router.post("/v1/chat/completions")
@router.post("/chat/completions", include_in_schema=False)
async def chat_completions(request: Request, state: StateDep, caller: CallerDep) -> Response:
    body, alias, admission = await _admit(request, state, caller, completion=True)
    meter = state.meter
    call = _call(request)
    try:
        if body.get("stream"):
            call.stream = True
            options = body.get("stream_options") or {}
            wants_usage = options.get("include_usage") is True
            # Always ask for usage so streamed calls are priced from real counts.
            upstream_body = {**body, "stream_options": {**options, "include_usage": True}}

            async def open_stream(provider: Any, deployment: Deployment) -> Stream:
                await meter.admit_deployment(admission, deployment)
                stream: Stream = await provider.open_stream(deployment, upstream_body)
                return stream

            opened = await state.router.call(alias, open_stream)
            headers = _finish(request, state, opened, admission, None)
            headers["cache-control"] = "no-cache"
            relay = _relay(state, call, opened, admission, strip_usage=not wants_usage)
            return EventStreamResponse(relay, headers)

        async def chat(provider: Any, deployment: Deployment) -> Reply:
            await meter.admit_deployment(admission, deployment)
            reply: Reply = await provider.chat(deployment, body)
            return reply

        routed = await state.router.call(alias, chat)
    except BaseException:
        await meter.settle(admission, None, 0.0)
        raise
    reply = routed.value
    headers = _finish(request, state, routed, admission, reply.usage)
    if call.request_body is not None:
        call.response_body = redacted_body(reply.body)
    await meter.settle(admission, reply.usage, call.cost)
    return Response(reply.body, media_type="application/json", headers=headers)


async def _relay(
    state: GatewayState,
    call: CallRecord,
    opened: Routed[Stream],
    admission: Admission,
    strip_usage: bool,
) -> AsyncGenerator[bytes, None]:
    """Passes events through; a failure after the first byte ends with an error event, never
    with a silent end that would look like a complete answer. The cost goes out as an SSE
    comment before [DONE] (clients ignore comments)."""
    stream = opened.value
    call.ttft_s = stream.first_event_seconds
    try:
        async for batch in stream.batches(strip_usage):
            if stream.done:  # the batch ends with [DONE]
                _settle_usage(state, call, opened.deployment, stream)
                batch.insert(-1, f": x-gateway-cost-usd={call.cost:.10f}\n\n".encode())
            yield b"".join(batch)
    except GatewayError as exc:
        call.error_type = exc.type
        yield b"data: " + exc.json_bytes() + b"\n\n"
    except (asyncio.CancelledError, GeneratorExit):
        call.error_type = "client_disconnected"
        raise
    finally:
        if call.usage is None:
            _settle_usage(state, call, opened.deployment, stream)
        call.upstream_s = opened.upstream_seconds + (time.perf_counter() - stream.opened_at)
        await state.meter.settle(admission, call.usage, call.cost)
        await stream.aclose()


def _settle_usage(
    state: GatewayState, call: CallRecord, deployment: Deployment, stream: Stream
) -> None:
    usage = stream.usage
    if usage is None:
        # The upstream sent no usage: count what we saw, and say the row is an estimate.
        usage = Usage(
            prompt_tokens=max(1, len(call.request_body or "") // 4),
            completion_tokens=(stream.content_chars + 3) // 4,
        )
        call.estimated = True
    call.usage = usage
    call.cost = state.prices.cost(deployment, usage)


@router.post("/v1/embeddings")
@router.post("/embeddings", include_in_schema=False)
async def embeddings(request: Request, state: StateDep, caller: CallerDep) -> Response:
    body, alias, admission = await _admit(request, state, caller, completion=False)
    if "input" not in body:
        await state.meter.settle(admission, None, 0.0)
        raise BadRequest("'input' is required: a string or an array of strings.", param="input")
    meter = state.meter

    async def embed(provider: Any, deployment: Deployment) -> Reply:
        await meter.admit_deployment(admission, deployment)
        reply: Reply = await provider.embeddings(deployment, body)
        return reply

    try:
        routed = await state.router.call(alias, embed)
    except BaseException:
        await meter.settle(admission, None, 0.0)
        raise
    headers = _finish(request, state, routed, admission, routed.value.usage)
    await meter.settle(admission, routed.value.usage, _call(request).cost)
    return Response(routed.value.body, media_type="application/json", headers=headers)


@router.get("/v1/models")
@router.get("/models", include_in_schema=False)
async def list_models(state: StateDep, caller: CallerDep) -> dict[str, Any]:
    key = caller.key
    aliases = [a for a in state.router.aliases() if key is None or key.allows_model(a)]
    return {
        "object": "list",
        "data": [
            {"id": alias, "object": "model", "created": 0, "owned_by": "gateway"}
            for alias in aliases
        ],
    }


@router.get("/v1/models/{model:path}")
async def get_model(model: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    state.router.states(model)  # raises the 404 for unknown aliases
    caller.check_model(model)
    return {"id": model, "object": "model", "created": 0, "owned_by": "gateway"}
