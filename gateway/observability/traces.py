"""Traces: one OpenTelemetry span per proxied call, exported as OTLP/HTTP JSON.

The request path only queues the request-log row it already built; a background task turns
queued rows into spans every 100 ms and posts them to the collector. Each span joins the
caller's trace (`traceparent`) or, without one, the trace id its request-log row carries, so
a trace and a row always find each other. Attributes follow the OpenTelemetry GenAI semantic
conventions (`gen_ai.*`), with the gateway's own under `gateway.*`.

Why not the OpenTelemetry SDK: measured here (`bench.ab`, all-on JSON at 32 clients), making
SDK spans and exporting them as protobuf took 0.146 ms of CPU per call, nearly doubling the
gateway's, and its export thread held the GIL long enough to push p99 past 100 ms. Spans are
written straight into OTLP's JSON encoding (part of the OTLP specification, accepted by the
OpenTelemetry Collector and the usual backends) at about 4 microseconds each.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson

from gateway.core.background import every, stop_task
from gateway.transport.http_client import HTTPClient, HTTPClientError

log = logging.getLogger("gateway.telemetry")

FLUSH_S = 0.1
EXPORT_TIMEOUT_S = 5.0
MAX_BATCH = 1024  # spans per export request (~1 MB), well under collectors' limits
ENCODE_CHUNK = 16  # spans encoded between two turns of the event loop
# Spans waiting while the collector is unreachable; beyond this the oldest are dropped.
MAX_QUEUED = 100_000
WARN_EVERY_S = 30.0
_ERROR = 2  # STATUS_CODE_ERROR


def traces_url(endpoint: str) -> str:
    """`GATEWAY_OTLP_ENDPOINT` is the collector's base URL, as in OTEL_EXPORTER_OTLP_ENDPOINT."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _ns(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND * 1000  # exact: a float would round


_HEX = frozenset("0123456789abcdef")


def parent_span_id(traceparent: bytes | None, trace_id: str) -> str | None:
    """The caller's span id from its W3C traceparent, when the row already joined that trace
    (calls.trace_id validated the trace id part)."""
    if traceparent is None or len(traceparent) < 55:
        return None
    if traceparent[3:35].decode("ascii", "replace").lower() != trace_id:
        return None
    span_id = traceparent[36:52].decode("ascii", "replace").lower()
    return span_id if span_id != "0" * 16 and _HEX.issuperset(span_id) else None


class AttemptSpan(NamedTuple):
    """One attempt of a call (a retry or a fallback makes several), a child of its span."""

    deployment: str
    provider: str
    offset_s: float  # from the call's start
    seconds: float
    error_type: str | None


class SpanEncoder:
    """Writes a finished call's span straight into OTLP/JSON bytes.

    No intermediate dicts: building ~15 small containers per span was most of tracing's
    cost and fed the garbage collector. Strings that repeat across calls (alias, deployment,
    key, team...) are escaped once and remembered.
    """

    MAX_REMEMBERED = 4096

    def __init__(self) -> None:
        self._quoted: dict[str, bytes] = {}

    def quoted(self, text: str) -> bytes:
        quoted = self._quoted.get(text)
        if quoted is None:
            quoted = orjson.dumps(text)
            if len(self._quoted) >= self.MAX_REMEMBERED:
                self._quoted.clear()
            self._quoted[text] = quoted
        return quoted

    def span(
        self,
        row: dict[str, Any],
        traceparent: bytes | None,
        attempts: list[AttemptSpan] | None = None,
    ) -> bytes:
        """The call's span and, after it, one child span per attempt."""
        quoted = self.quoted
        trace_id = row["trace_id"]
        status = row["status"]
        span_id = os.urandom(8).hex().encode()
        parts = [
            b'{"traceId":"%s","spanId":"%s","name":%s,"kind":2,'
            b'"startTimeUnixNano":"%d","endTimeUnixNano":"%d","attributes":['
            b'{"key":"gen_ai.operation.name","value":{"stringValue":%s}},'
            b'{"key":"gen_ai.usage.input_tokens","value":{"intValue":"%d"}},'
            b'{"key":"gen_ai.usage.output_tokens","value":{"intValue":"%d"}},'
            b'{"key":"http.response.status_code","value":{"intValue":"%d"}},'
            b'{"key":"gateway.request_id","value":{"stringValue":%s}},'
            b'{"key":"gateway.cost_usd","value":{"doubleValue":%s}},'
            b'{"key":"gateway.stream","value":{"boolValue":%s}},'
            b'{"key":"gateway.attempts","value":{"intValue":"%d"}}'
            % (
                trace_id.encode(),
                span_id,
                quoted(f"{row['route']} {row['alias'] or 'unknown'}"),
                _ns(row["created_at"]),
                _ns(row["finished_at"]),
                quoted(row["route"]),
                row["input_tokens"],
                row["output_tokens"],
                status,
                orjson.dumps(row["id"]),
                orjson.dumps(row["cost_usd"]),
                b"true" if row["stream"] else b"false",
                row["attempts"],
            )
        ]
        for key, name in _OPTIONAL_STRINGS:
            value = row[name]
            if value is not None:
                parts.append(b',{"key":"%s","value":{"stringValue":%s}}' % (key, quoted(value)))
        for key, name in _OPTIONAL_MS:
            value = row[name]
            if value is not None:
                parts.append(
                    b',{"key":"%s","value":{"doubleValue":%s}}' % (key, orjson.dumps(value))
                )
        error = row["error_type"] or (str(status) if status >= 400 else None)
        if error is not None:
            parts.append(b',{"key":"error.type","value":{"stringValue":%s}}' % quoted(error))
        if row["prompt_name"] is not None:
            prompt = quoted(f"{row['prompt_name']}@{row['prompt_version']}")
            parts.append(b',{"key":"gateway.prompt","value":{"stringValue":%s}}' % prompt)
        parts.append(b"]")
        parent = parent_span_id(traceparent, trace_id)
        if parent is not None:
            parts.append(b',"parentSpanId":"%s"' % parent.encode())
        if status >= 500:
            message = quoted(row["error_type"] or "")
            parts.append(b',"status":{"code":%d,"message":%s}' % (_ERROR, message))
        parts.append(b"}")
        if attempts:
            start = _ns(row["created_at"])
            for number, attempt in enumerate(attempts, 1):
                parts.append(self._attempt(trace_id, span_id, start, number, attempt))
        return b"".join(parts)

    def _attempt(
        self, trace_id: str, parent: bytes, call_start: int, number: int, attempt: AttemptSpan
    ) -> bytes:
        begin = call_start + int(attempt.offset_s * 1e9)
        quoted = self.quoted
        span = (
            b',{"traceId":"%s","spanId":"%s","parentSpanId":"%s","name":%s,"kind":3,'
            b'"startTimeUnixNano":"%d","endTimeUnixNano":"%d","attributes":['
            b'{"key":"gateway.deployment","value":{"stringValue":%s}},'
            b'{"key":"gen_ai.provider.name","value":{"stringValue":%s}},'
            b'{"key":"gateway.attempt","value":{"intValue":"%d"}}'
            % (
                trace_id.encode(),
                os.urandom(8).hex().encode(),
                parent,
                quoted(f"attempt {attempt.deployment}"),
                begin,
                begin + int(attempt.seconds * 1e9),
                quoted(attempt.deployment),
                quoted(attempt.provider),
                number,
            )
        )
        if attempt.error_type is None:
            return span + b"]}"
        error = quoted(attempt.error_type)
        return span + (
            b',{"key":"error.type","value":{"stringValue":%s}}],'
            b'"status":{"code":%d,"message":%s}}' % (error, _ERROR, error)
        )


_OPTIONAL_STRINGS = (
    (b"gen_ai.request.model", "alias"),
    (b"gen_ai.provider.name", "provider"),
    (b"gateway.deployment", "deployment"),
    (b"gateway.key_id", "key_id"),
    (b"gateway.team", "team"),
    (b"gateway.price_version", "price_version"),
)
_OPTIONAL_MS = ((b"gateway.overhead_ms", "overhead_ms"), (b"gateway.ttft_ms", "ttft_ms"))


class Tracing:
    """Queues finished calls; a background task turns them into spans and exports them."""

    def __init__(self, endpoint: str, service_name: str = "llmops-gateway") -> None:
        self.endpoint = traces_url(endpoint)
        resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service_name}}]}
        self._head = (
            b'{"resourceSpans":[{"resource":%s,"scopeSpans":[{"scope":{"name":"gateway"},"spans":['
            % orjson.dumps(resource)
        )
        self._encoder = SpanEncoder()
        self._queue: deque[tuple[dict[str, Any], bytes | None, list[AttemptSpan] | None]] = deque(
            maxlen=MAX_QUEUED
        )
        self._task: asyncio.Task[None] | None = None
        self._client: HTTPClient | None = None
        self._warned_at = float("-inf")
        self.exported = 0

    def record(
        self,
        row: dict[str, Any],
        traceparent: bytes | None,
        attempts: list[AttemptSpan] | None = None,
    ) -> None:
        self._queue.append((row, traceparent, attempts))

    def start(self) -> None:
        # The fast path's lean client: httpx spent ~0.8 ms of event-loop time per export.
        self._client = HTTPClient()
        self._task = asyncio.create_task(self._run(), name="trace-exporter")

    async def _run(self) -> None:
        await every(FLUSH_S, self.flush, log, "exporting spans failed")

    async def flush(self) -> None:
        """Exports the calls queued when the flush began, in batches.

        Spans are encoded on the event loop a chunk at a time: a worker thread would hold
        the GIL in 5 ms slices against the calls being served (measured: p99 x3)."""
        pending = len(self._queue)
        while pending:
            batch: list[bytes] = []
            while pending and len(batch) < MAX_BATCH:
                for _ in range(min(ENCODE_CHUNK, pending, MAX_BATCH - len(batch))):
                    row, traceparent, attempts = self._queue.popleft()
                    batch.append(self._encoder.span(row, traceparent, attempts))
                    pending -= 1
                await asyncio.sleep(0)
            await self._export(batch)

    async def _export(self, spans: list[bytes]) -> None:
        assert self._client is not None
        body = b"".join((self._head, b",".join(spans), b"]}]}]}"))
        try:
            response = await self._client.post(
                self.endpoint, {"content-type": "application/json"}, body, total=EXPORT_TIMEOUT_S
            )
            reply = await response.read()
            if response.status >= 300:
                raise HTTPClientError(f"the collector answered {response.status}: {reply[:200]!r}")
            self.exported += len(spans)
        except (HTTPClientError, TimeoutError) as exc:
            # Traces are best effort: the request log keeps every call; say so now and then.
            now = time.monotonic()
            if now - self._warned_at >= WARN_EVERY_S:
                self._warned_at = now
                reason = str(exc) or type(exc).__name__
                log.warning(
                    "could not export %d spans to %s: %s", len(spans), self.endpoint, reason
                )

    async def aclose(self) -> None:
        await stop_task(self._task)
        self._task = None
        if self._client is not None:
            await self.flush()
            await self._client.aclose()
            self._client = None
