"""The edge: every HTTP request meets it first. It stamps the request id, caps the body, and
dispatches the proxied routes itself (so they skip FastAPI's routing and dependency solving,
measured at about a third of a proxied call's CPU); everything else goes on to FastAPI.

A proxied call gets its CallRecord here, is authenticated, runs its handler, and becomes one
request-log row once its response has ended (streams included). Raw ASGI: Starlette's
HTTP-middleware base class costs milliseconds per request.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Coroutine

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api import access_log
from gateway.api.proxied import ProxiedRoute, by_path, match, templated
from gateway.calls.record import CallRecord
from gateway.core.errors import GatewayError, PayloadTooLarge
from gateway.identity.auth import presented_key
from gateway.state import GatewayState
from gateway.store import errors as store_errors

log = logging.getLogger("gateway")


class Edge:
    """The body cap is enforced on the declared length and again on the bytes actually
    received, so a chunked upload cannot get around it."""

    def __init__(self, app: ASGIApp, state: GatewayState, max_body_bytes: int) -> None:
        self.app = app
        self.state = state
        self.routes = by_path()
        self.templated = templated()
        self.max_body_bytes = max_body_bytes
        self.access_log = state.settings.access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter() if self.access_log else 0.0
        request_id = os.urandom(12).hex()
        route = self.routes.get(scope["path"]) if scope["method"] == "POST" else None
        if route is None and scope["method"] == "POST" and scope["path"].startswith("/v2/"):
            found = match(self.templated, scope["path"])
            if found is not None:
                route, scope["path_params"] = found
        record = None
        if route is not None:
            traceparent = next((v for k, v in scope["headers"] if k == b"traceparent"), None)
            record = CallRecord.begin(request_id, route.kind, traceparent)
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
                if record is not None:
                    record.error_type = too_large.type
                rendered = route.errors(too_large) if route is not None else None
                await _reject(send, too_large, request_id, rendered)
            elif route is None:
                await self.app(scope, self._capped(receive), send_with_id)
            else:
                assert record is not None
                await self._serve(route, record, scope, self._capped(receive), send_with_id)
        finally:
            if record is not None:
                self.state.calls.finish(record, status)
            if self.access_log:
                key_id = record.key_id if record is not None else None
                access_log.write(scope, status, started, request_id, key_id)

    async def _serve(
        self, route: ProxiedRoute, record: CallRecord, scope: Scope, receive: Receive, send: Send
    ) -> None:
        request = Request(scope, receive)
        response: Response
        try:
            caller = await self.state.auth.authenticate(
                presented_key(request.headers), scope.get("client")
            )
            record.identify(caller)
            response = await route.handler(request, self.state, caller, record)
            if record.error_type is None and not record.stream and _gone(receive):
                # Answered, priced and charged, but nobody is there to read it (a client
                # timeout, most often): the row says so, as a stream's does.
                record.error_type = "client_disconnected"
        except GatewayError as exc:
            record.error_type = exc.type
            response = route.errors(exc)
        except store_errors.UNAVAILABLE as exc:
            log.warning(
                "database unavailable for POST %s: %s", scope["path"], store_errors.cause(exc)
            )
            error = store_errors.unavailable(exc)
            record.error_type = error.type
            response = route.errors(error)
        except Exception:
            log.exception("unexpected error on POST %s", scope["path"])
            internal = GatewayError("The gateway hit an internal error.")
            record.error_type = internal.type
            response = route.errors(internal)
        await response(scope, receive, send)

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


def _gone(receive: Receive) -> bool:
    """Whether the client has hung up, without waiting: the server answers `receive()` at
    once with http.disconnect when it has. Otherwise, the body having been read whole,
    `receive()` would wait for the client to go, and the probe stops it at that first wait
    (~1.6 us, no task; Starlette's `is_disconnected` costs a cancel scope, ~18 us)."""
    probe = receive()
    if not isinstance(probe, Coroutine):
        return False
    try:
        probe.send(None)
    except StopIteration as done:
        message: Message = done.value
        return bool(message["type"] == "http.disconnect")
    except Exception:  # a server's own error here must not fail an answered call
        return False
    finally:
        probe.close()
    return False


async def _reject(
    send: Send, error: PayloadTooLarge, request_id: str, rendered: Response | None
) -> None:
    body = rendered.body if rendered is not None else error.json_bytes()
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
