"""Raw ASGI middleware (Starlette's HTTP-middleware base class costs milliseconds per request)."""

from __future__ import annotations

import os
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.calls.record import METERED_PATHS, CallRecord
from gateway.core.errors import PayloadTooLarge
from gateway.observability.metrics import Metrics
from gateway.observability.request_log import RequestLogWriter
from gateway.observability.traces import Tracing


class EdgeMiddleware:
    """Stamps each request with an id and start time, caps the body size, and turns every
    metered call into one request-log row once its response has ended (streams included).

    The body cap is enforced on the declared length and again on the bytes actually
    received, so a chunked upload cannot get around it.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        request_log: RequestLogWriter,
        metrics: Metrics,
        tracing: Tracing | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.request_log = request_log
        self.metrics = metrics
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = os.urandom(12).hex()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["started"] = time.perf_counter()
        route = METERED_PATHS.get(scope["path"])
        call = None
        traceparent = None
        if route is not None:
            traceparent = next((v for k, v in scope["headers"] if k == b"traceparent"), None)
            call = CallRecord.begin(request_id, route, traceparent)
        state["call"] = call
        status = 500
        header = (b"x-gateway-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            too_large = self._declared_too_large(scope)
            if too_large is not None:
                status = too_large.status
                if call is not None:
                    call.error_type = too_large.type
                await _reject(send, too_large, request_id)
                return
            await self.app(scope, self._capped(receive), send_with_id)
        finally:
            if call is not None:
                row = call.row(status)
                self.request_log.record(row)
                self.metrics.record(row)
                if self.tracing is not None:
                    self.tracing.record(row, traceparent)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"Request body exceeds the gateway's limit of {self.max_body_bytes} bytes; send "
            f"less (or raise GATEWAY_MAX_BODY_BYTES)."
        )

    def _declared_too_large(self, scope: Scope) -> PayloadTooLarge | None:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return None
                return self._too_large() if declared > self.max_body_bytes else None
        return None

    def _capped(self, receive: Receive) -> Receive:
        received = 0
        limit = self.max_body_bytes

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise self._too_large()
            return message

        return capped_receive


async def _reject(send: Send, error: PayloadTooLarge, request_id: str) -> None:
    body = error.json_bytes()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-gateway-request-id", request_id.encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
