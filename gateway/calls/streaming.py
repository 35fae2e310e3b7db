"""Relaying a stream: events pass through; the call is priced and settled when it ends,
however it ends (the last event, an upstream failure, the client leaving)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator

from gateway.calls.pipeline import Call, Pipeline
from gateway.calls.usage import stream_usage
from gateway.core.errors import GatewayError
from gateway.providers import Stream
from gateway.routing.router import Routed

log = logging.getLogger("gateway")


async def relay(
    pipeline: Pipeline, call: Call, opened: Routed[Stream], strip_usage: bool
) -> AsyncGenerator[bytes, None]:
    """A failure after the first byte ends with an error event, never with a silent end that
    would look like a complete answer. The cost goes out as an SSE comment before [DONE]
    (clients ignore comments)."""
    record, stream = call.record, opened.value
    record.ttft_s = stream.first_event_seconds
    try:
        async for batch in stream.batches(strip_usage):
            if stream.done:  # the batch ends with [DONE]
                _price(pipeline, call, opened)
                batch.insert(-1, f": x-gateway-cost-usd={record.cost:.10f}\n\n".encode())
            yield b"".join(batch)
    except GatewayError as exc:
        record.error_type = exc.type
        log.warning("stream of model %r failed mid-answer: %s", record.alias, exc.detail or exc)
        yield b"data: " + exc.json_bytes() + b"\n\n"
    except (asyncio.CancelledError, GeneratorExit):
        record.error_type = "client_disconnected"
        raise
    finally:
        if record.usage is None:
            _price(pipeline, call, opened)
        record.upstream_s = opened.upstream_seconds + (time.perf_counter() - stream.opened_at)
        await pipeline.settle(call)
        await stream.aclose()


def _price(pipeline: Pipeline, call: Call, opened: Routed[Stream]) -> None:
    stream = opened.value
    usage = stream.usage
    if usage is None:
        usage = stream_usage(call.body, stream)
        call.record.estimated = True
    # A deployment priced per second (LiteLLM's) is billed until the stream's end.
    seconds = opened.upstream_seconds + (time.perf_counter() - stream.opened_at)
    pipeline.price(call, opened.deployment, usage, seconds)
