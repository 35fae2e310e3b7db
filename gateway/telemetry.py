"""Traces: one OpenTelemetry span per proxied call, exported as OTLP/HTTP JSON.

Spans are made from the finished call's request-log row, after the response, in a worker
thread: the request path only queues the row it already built. Each span joins the caller's
trace (`traceparent`) or, without one, the trace id its request-log row carries, so a trace
and a row always find each other. Attributes follow the OpenTelemetry GenAI semantic
conventions (`gen_ai.*`), with the gateway's own under `gateway.*`.

Why not the OpenTelemetry SDK: measured here (`bench.ab`, all-on JSON at 32 clients), making
SDK spans and exporting them as protobuf took 0.146 ms of CPU per call, nearly doubling the
gateway's, and its export batches held the GIL long enough to push p99 past 100 ms. Spans
written straight into OTLP's JSON encoding (part of the OTLP specification, accepted by the
OpenTelemetry Collector and the usual backends) cost a few microseconds each.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from datetime import datetime
from typing import Any

import httpx
import orjson

from gateway.background import stop_task

log = logging.getLogger("gateway.telemetry")

FLUSH_S = 0.1
# Spans waiting while the collector is unreachable; beyond this the oldest are dropped.
MAX_QUEUED = 100_000
WARN_EVERY_S = 30.0
_SERVER = 2  # SPAN_KIND_SERVER
_ERROR = 2  # STATUS_CODE_ERROR


def traces_url(endpoint: str) -> str:
    """`GATEWAY_OTLP_ENDPOINT` is the collector's base URL, as in OTEL_EXPORTER_OTLP_ENDPOINT."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


def _ns(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1e9))


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


def _str(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


def _int(key: str, value: int) -> dict[str, Any]:
    return {"key": key, "value": {"intValue": str(value)}}


def attributes(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The span's attributes in OTLP/JSON form (built directly: this runs once per call)."""
    status = row["status"]
    out = [
        _str("gen_ai.operation.name", row["route"]),
        _int("gen_ai.usage.input_tokens", row["input_tokens"]),
        _int("gen_ai.usage.output_tokens", row["output_tokens"]),
        _int("http.response.status_code", status),
        _str("gateway.request_id", row["id"]),
        {"key": "gateway.cost_usd", "value": {"doubleValue": row["cost_usd"]}},
        {"key": "gateway.stream", "value": {"boolValue": row["stream"]}},
        _int("gateway.attempts", row["attempts"]),
    ]
    for key, name in _OPTIONAL_STRINGS:
        value = row[name]
        if value is not None:
            out.append(_str(key, value))
    for key, name in _OPTIONAL_MS:
        value = row[name]
        if value is not None:
            out.append({"key": key, "value": {"doubleValue": value}})
    error = row["error_type"] or (str(status) if status >= 400 else None)
    if error is not None:
        out.append(_str("error.type", error))
    if row["prompt_name"] is not None:
        out.append(_str("gateway.prompt", f"{row['prompt_name']}@{row['prompt_version']}"))
    return out


_OPTIONAL_STRINGS = (
    ("gen_ai.request.model", "alias"),
    ("gen_ai.provider.name", "provider"),
    ("gateway.deployment", "deployment"),
    ("gateway.key_id", "key_id"),
    ("gateway.team", "team"),
    ("gateway.price_version", "price_version"),
)
_OPTIONAL_MS = (("gateway.overhead_ms", "overhead_ms"), ("gateway.ttft_ms", "ttft_ms"))


def span(row: dict[str, Any], traceparent: bytes | None) -> dict[str, Any]:
    """A finished call's span in OTLP's JSON encoding."""
    out: dict[str, Any] = {
        "traceId": row["trace_id"],
        "spanId": os.urandom(8).hex(),
        "name": f"{row['route']} {row['alias'] or 'unknown'}",
        "kind": _SERVER,
        "startTimeUnixNano": _ns(row["created_at"]),
        "endTimeUnixNano": _ns(row["finished_at"]),
        "attributes": attributes(row),
    }
    parent = parent_span_id(traceparent, row["trace_id"])
    if parent is not None:
        out["parentSpanId"] = parent
    if row["status"] >= 500:
        out["status"] = {"code": _ERROR, "message": row["error_type"] or ""}
    return out


class Tracing:
    """Queues finished calls; a background task turns them into spans and exports them."""

    def __init__(self, endpoint: str, service_name: str = "llmops-gateway") -> None:
        self.endpoint = traces_url(endpoint)
        self.resource = {
            "attributes": [{"key": "service.name", "value": {"stringValue": service_name}}]
        }
        self._queue: deque[tuple[dict[str, Any], bytes | None]] = deque(maxlen=MAX_QUEUED)
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.Client | None = None
        self._warned_at = float("-inf")
        self.exported = 0

    def record(self, row: dict[str, Any], traceparent: bytes | None) -> None:
        self._queue.append((row, traceparent))

    def start(self) -> None:
        self._client = httpx.Client(timeout=5.0)
        self._task = asyncio.create_task(self._run(), name="trace-exporter")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            try:
                await self.flush()
            except Exception:  # never let the exporter die: spans would pile up unseen
                log.exception("exporting spans failed")

    async def flush(self) -> None:
        if self._queue:
            batch = [self._queue.popleft() for _ in range(len(self._queue))]
            await asyncio.to_thread(self._export, batch)

    def _export(self, batch: list[tuple[dict[str, Any], bytes | None]]) -> None:
        body = {
            "resourceSpans": [
                {
                    "resource": self.resource,
                    "scopeSpans": [
                        {
                            "scope": {"name": "gateway"},
                            "spans": [span(row, parent) for row, parent in batch],
                        }
                    ],
                }
            ]
        }
        assert self._client is not None
        try:
            response = self._client.post(
                self.endpoint,
                content=orjson.dumps(body),
                headers={"content-type": "application/json"},
            )
            response.raise_for_status()
            self.exported += len(batch)
        except httpx.HTTPError as exc:
            # Traces are best effort: the request log keeps every call; say so now and then.
            now = time.monotonic()
            if now - self._warned_at >= WARN_EVERY_S:
                self._warned_at = now
                log.warning("could not export %d spans to %s: %s", len(batch), self.endpoint, exc)

    async def aclose(self) -> None:
        await stop_task(self._task)
        self._task = None
        await self.flush()
        if self._client is not None:
            self._client.close()
