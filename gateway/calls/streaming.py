"""Relaying a stream: events pass through; the call is priced and settled when it ends,
however it ends (the last event, an upstream failure, the client leaving).

A stream that breaks after it began is continued on another deployment when its model name
has gateway.stream_recovery on (calls/recovery.py says how); the call then costs both
attempts: the broken one's prompt and the text it sent, and the continuation's prompt (the
prompt again, with that text) and answer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from gateway.calls.pipeline import Call, Pipeline
from gateway.calls.recovery import Continued, added_usage, continuation, tokens_in
from gateway.calls.usage import stream_usage
from gateway.core.errors import GatewayError, is_retryable
from gateway.providers import Stream, Usage
from gateway.routing.router import Routed

log = logging.getLogger("gateway")


@dataclass(frozen=True, slots=True)
class _Broken:
    """The attempt whose stream broke, as priced when it did."""

    usage: Usage
    cost: float
    seconds: float
    estimated: bool


async def relay(
    pipeline: Pipeline, call: Call, opened: Routed[Stream], strip_usage: bool
) -> AsyncGenerator[bytes, None]:
    """A failure after the first byte ends with an error event, never with a silent end that
    would look like a complete answer. The cost goes out as an SSE comment before [DONE]
    (clients ignore comments)."""
    record, stream = call.record, opened.value
    record.ttft_s = stream.first_event_seconds
    broken: _Broken | None = None
    sample = record.sample
    try:
        try:
            async for batch in stream.batches(strip_usage):
                if sample is not None:  # a call drift monitoring drew: its answer's text
                    sample.observe(batch)
                if stream.done:  # the batch ends with [DONE]
                    _price(pipeline, call, opened)
                    batch.insert(-1, f": x-gateway-cost-usd={record.cost:.10f}\n\n".encode())
                yield b"".join(batch)
        except GatewayError as exc:
            pipeline.router.stream_failed(opened.deployment, exc)
            if not call.recovers or not is_retryable(exc) or not stream.continuable:
                raise
            recovered = await _recover(pipeline, call, opened, exc)
            if recovered is None:
                raise
            opened, broken, continued = recovered
            stream = opened.value
            async for batch in continued.batches(strip_usage):
                if sample is not None:
                    sample.observe(batch)
                if stream.done:
                    _price(pipeline, call, opened, broken)
                    batch.insert(-1, f": x-gateway-cost-usd={record.cost:.10f}\n\n".encode())
                yield b"".join(batch)
    except GatewayError as exc:
        if broken is not None:  # the continuation broke too
            pipeline.router.stream_failed(opened.deployment, exc)
        record.error_type = exc.type
        log.warning("stream of model %r failed mid-answer: %s", record.alias, exc.detail or exc)
        yield b"data: " + exc.json_bytes() + b"\n\n"
    except (asyncio.CancelledError, GeneratorExit):
        record.error_type = "client_disconnected"
        raise
    finally:
        if record.usage is None:
            _price(pipeline, call, opened, broken)
        record.upstream_s = _seconds(opened) + (broken.seconds if broken else 0.0)
        await pipeline.settle(call)
        await stream.aclose()


async def _recover(
    pipeline: Pipeline, call: Call, cut: Routed[Stream], error: GatewayError
) -> tuple[Routed[Stream], _Broken, Continued] | None:
    """The continuation of a stream that broke, opened; None when it cannot be (the call is
    then priced as the broken attempt alone, and fails as it would without recovery)."""
    record, stream = call.record, cut.value
    _price(pipeline, call, cut)
    assert record.usage is not None
    broken = _Broken(record.usage, record.cost, _seconds(cut), record.estimated)
    await stream.aclose()  # stop the upstream (a stalled one holds its connection)
    text = "".join(stream.text or ())
    assert pipeline.recovery is not None  # call.recovers says it is on
    made = continuation(call.body, text, pipeline.recovery.prefill)
    cap = call.cap_per_attempt
    if made is None or (cap is not None and cap - tokens_in(text) < 1):
        log.warning(
            "stream of model %r not recovered: its completion limit is used up", record.alias
        )
        return None
    sent, call.body = call.body, made[0]
    call.continuation = made[1]
    if cap is not None:
        call.cap_per_attempt = cap - tokens_in(text)
    log.warning(
        "stream of model %r broke after %d characters on %s (%s): continuing elsewhere",
        record.alias,
        len(text),
        cut.deployment.id,
        error.detail or error,
    )
    try:
        opened = await pipeline.continue_stream(call, cut.deployment)
    except GatewayError as failed:
        log.warning("stream of model %r not recovered: %s", record.alias, failed.detail or failed)
        call.body = sent  # the row's body and deployment are the broken attempt's
        record.deployment = cut.deployment
        return None
    record.recovered_from, record.deployment = cut.deployment, opened.deployment
    record.usage = None  # priced again, with the continuation, when it ends
    return opened, broken, Continued(opened.value, stream.head, text, broken.usage)


def _seconds(opened: Routed[Stream]) -> float:
    return opened.upstream_seconds + (time.perf_counter() - opened.value.opened_at)


def _price(
    pipeline: Pipeline, call: Call, opened: Routed[Stream], broken: _Broken | None = None
) -> None:
    stream = opened.value
    usage = stream.usage
    if usage is None:
        usage = stream_usage(call.body, stream)
        call.record.estimated = True
    # A deployment priced per second (LiteLLM's) is billed until the stream's end.
    pipeline.price(call, opened.deployment, usage, _seconds(opened))
    if broken is not None:
        record = call.record
        record.usage = added_usage(usage, broken.usage)
        record.cost += broken.cost
        record.estimated = record.estimated or broken.estimated
