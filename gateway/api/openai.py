"""The OpenAI-compatible surface: chat completions (JSON and SSE), embeddings, models."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.api.deps import CallerDep, StateDep, read_json, require_model
from gateway.api.event_stream import EventStreamResponse
from gateway.calls.chat_body import check_chat, check_embeddings
from gateway.calls.record import CallRecord
from gateway.core.errors import GatewayError
from gateway.identity.auth import Caller
from gateway.metering.meter import Admission, prompt_tokens_sent
from gateway.observability.redact import redacted_body, redacted_json
from gateway.prompts.calling import PromptRef, apply_prompt, prompt_ref
from gateway.providers import Deployment, Reply, Stream, Usage
from gateway.routing.router import Routed
from gateway.state import GatewayState

router = APIRouter()
log = logging.getLogger("gateway")


def _call(request: Request) -> CallRecord:
    call: CallRecord = request.scope["state"]["call"]
    return call


def _logs_bodies(state: GatewayState, caller: Caller) -> bool:
    return state.config.gateway.log_bodies or (caller.key is not None and caller.key.log_bodies)


async def _admit(
    request: Request, state: GatewayState, caller: Caller, completion: bool
) -> tuple[dict[str, Any], list[str], Admission]:
    """The body, the aliases the call may be served by (the model and the fallbacks the
    caller may use) and the admission that reserved its worst case against them."""
    call = _call(request)
    body, size = await read_json(request)
    if completion:
        ref = prompt_ref(body, request.headers)
        if ref is not None:
            body, size = await _use_prompt(state, caller, call, ref, body, size)
    alias = require_model(body)
    call.alias = alias
    # Before anything is reserved: a bad body costs the caller nothing.
    if completion:
        check_chat(body)
    else:
        check_embeddings(body)
    key = caller.key
    allowed = key.allows_model if key is not None and key.models else None
    # 404 for an unknown alias, before anything is reserved.
    chain = state.router.chain(alias, allowed)
    caller.check_model(alias)
    if _logs_bodies(state, caller):
        call.request_body = redacted_json(body)
    admission = await state.meter.admit(caller, chain, body, size, completion=completion)
    return body, chain, admission


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
    body, chain, admission = await _admit(request, state, caller, completion=True)
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
                # So a failed call's row names the last deployment tried and how many were.
                call.deployment = deployment
                call.attempts += 1
                await meter.admit_deployment(admission, deployment)
                stream: Stream = await provider.open_stream(deployment, upstream_body)
                return stream

            opened = await state.router.call(chain, open_stream)
            headers = _finish(request, state, opened, admission, None)
            headers["cache-control"] = "no-cache"
            relay = _relay(state, call, opened, admission, upstream_body, not wants_usage)
            return EventStreamResponse(relay, headers)

        async def chat(provider: Any, deployment: Deployment) -> Reply:
            call.deployment = deployment
            call.attempts += 1
            await meter.admit_deployment(admission, deployment)
            reply: Reply = await provider.chat(deployment, body)
            return reply

        routed = await state.router.call(chain, chat)
    except BaseException:
        await meter.settle(admission, None, 0.0)
        raise
    reply = routed.value
    usage = reply.usage
    if usage is None:
        # An upstream that reports no usage is still billed: counted, and marked an estimate.
        usage = Usage(prompt_tokens_sent(body), _completion_tokens_in(reply.body))
        call.estimated = True
    headers = _finish(request, state, routed, admission, usage)
    if call.request_body is not None:
        call.response_body = redacted_body(reply.body)
    await meter.settle(admission, usage, call.cost)
    return Response(reply.body, media_type="application/json", headers=headers)


async def _relay(
    state: GatewayState,
    call: CallRecord,
    opened: Routed[Stream],
    admission: Admission,
    sent: dict[str, Any],
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
                _settle_usage(state, call, opened.deployment, stream, sent)
                batch.insert(-1, f": x-gateway-cost-usd={call.cost:.10f}\n\n".encode())
            yield b"".join(batch)
    except GatewayError as exc:
        call.error_type = exc.type
        log.warning("stream of model %r failed mid-answer: %s", call.alias, exc.detail or exc)
        yield b"data: " + exc.json_bytes() + b"\n\n"
    except (asyncio.CancelledError, GeneratorExit):
        call.error_type = "client_disconnected"
        raise
    finally:
        if call.usage is None:
            _settle_usage(state, call, opened.deployment, stream, sent)
        call.upstream_s = opened.upstream_seconds + (time.perf_counter() - stream.opened_at)
        await state.meter.settle(admission, call.usage, call.cost)
        await stream.aclose()


def _completion_tokens_in(reply: bytes) -> int:
    """What a JSON reply's choices say, counted as streamed text is (characters / 4)."""
    try:
        data = orjson.loads(reply)
    except orjson.JSONDecodeError:
        return 0
    choices = data.get("choices") if isinstance(data, dict) else None
    chars = 0
    for choice in choices if isinstance(choices, list) else ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            content = message.get("content")
            chars += len(content) if isinstance(content, str) else 0
            calls = message.get("tool_calls")
            chars += len(orjson.dumps(calls)) if calls else 0
    return (chars + 3) // 4


def _settle_usage(
    state: GatewayState,
    call: CallRecord,
    deployment: Deployment,
    stream: Stream,
    sent: dict[str, Any],
) -> None:
    usage = stream.usage
    if usage is None:
        # No usage (the upstream sent none, or the client left before it came): count the
        # prompt that was sent and what streamed up to the cut, and mark the row an estimate.
        usage = Usage(
            prompt_tokens=prompt_tokens_sent(sent),
            completion_tokens=(stream.content_chars + 3) // 4,
        )
        call.estimated = True
    call.usage = usage
    call.cost = state.prices.cost(deployment, usage)


@router.post("/v1/embeddings")
@router.post("/embeddings", include_in_schema=False)
async def embeddings(request: Request, state: StateDep, caller: CallerDep) -> Response:
    body, chain, admission = await _admit(request, state, caller, completion=False)
    meter = state.meter
    call = _call(request)

    async def embed(provider: Any, deployment: Deployment) -> Reply:
        call.deployment = deployment
        call.attempts += 1
        await meter.admit_deployment(admission, deployment)
        reply: Reply = await provider.embeddings(deployment, body)
        return reply

    try:
        routed = await state.router.call(chain, embed)
    except BaseException:
        await meter.settle(admission, None, 0.0)
        raise
    headers = _finish(request, state, routed, admission, routed.value.usage)
    await meter.settle(admission, routed.value.usage, call.cost)
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
