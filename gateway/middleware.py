"""Raw ASGI middleware (no BaseHTTPMiddleware: it costs milliseconds per request)."""

from __future__ import annotations

import os
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import PayloadTooLarge


class EdgeMiddleware:
    """Stamps each request with an id and start time, and caps the body size.

    The cap is enforced on the declared length and again on the bytes actually received,
    so a chunked upload cannot get around it.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = os.urandom(12).hex()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["started"] = time.perf_counter()
        limit = self.max_body_bytes
        too_large = PayloadTooLarge(
            f"Request body exceeds the gateway's limit of {limit} bytes; send less "
            f"(or raise GATEWAY_MAX_BODY_BYTES)."
        )
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await _reject(send, too_large, request_id)
                    return

        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large
            return message

        header = (b"x-gateway-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, capped_receive, send_with_id)


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
