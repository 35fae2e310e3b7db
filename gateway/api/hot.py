"""The proxied routes, dispatched without FastAPI's router and dependency solving.

Measured under load (py-spy, GIL samples), FastAPI's routing, dependency solving and
exception middleware took about a third of a proxied call's CPU. The handlers are the same
functions FastAPI serves (and documents); only the dispatch is direct.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api import openai
from gateway.api.deps import authenticate_with
from gateway.core.errors import GatewayError, error_response
from gateway.identity.auth import Caller
from gateway.state import GatewayState

log = logging.getLogger("gateway")

Handler = Callable[[Request, GatewayState, Caller], Awaitable[Response]]

HOT_ROUTES: dict[str, Handler] = {
    "/v1/chat/completions": openai.chat_completions,
    "/chat/completions": openai.chat_completions,
    "/v1/embeddings": openai.embeddings,
    "/embeddings": openai.embeddings,
}


class HotRoutes:
    def __init__(self, app: ASGIApp, state: GatewayState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = HOT_ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        response: Any
        try:
            caller = await authenticate_with(self.state, request)
            response = await handler(request, self.state, caller)
        except GatewayError as exc:
            response = record_error(scope, exc)
        except Exception:
            log.exception("unexpected error on POST %s", scope["path"])
            response = record_error(scope, GatewayError("The gateway hit an internal error."))
        await response(scope, receive, send)


def record_error(scope: Scope, error: GatewayError) -> Response:
    """The error response, noting the error type on the call's request-log record."""
    call = scope.get("state", {}).get("call")
    if call is not None:
        call.error_type = error.type
    return error_response(error)
