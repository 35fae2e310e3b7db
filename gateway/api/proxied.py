"""The proxied routes, declared once: the edge dispatches them (see api/edge.py) and the
OpenAPI document lists them from this table."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path

from gateway.api import inference, openai
from gateway.calls.record import CallRecord
from gateway.classic.models import InferAnswer
from gateway.core.errors import GatewayError, error_response
from gateway.identity.auth import Caller
from gateway.state import GatewayState

Handler = Callable[[Request, GatewayState, Caller, CallRecord], Awaitable[Response]]
Renderer = Callable[[GatewayError], Response]


@dataclass(frozen=True, slots=True)
class ProxiedRoute:
    kind: str  # the request-log row's `route`
    handler: Handler
    # The first is documented, the others are OpenAI-SDK aliases; paths with {parameters}
    # are all documented, and matched in this order.
    paths: tuple[str, ...]
    summary: str
    required: tuple[str, ...]  # body fields, for the OpenAPI document
    errors: Renderer = error_response  # the protocol's error shape
    answer: type[BaseModel] | None = None  # the documented answer, when it is the gateway's


PROXIED = (
    ProxiedRoute(
        "chat",
        openai.chat_completions,
        ("/v1/chat/completions", "/chat/completions"),
        "Chat completion (JSON, or SSE with stream: true)",
        ("model", "messages"),
    ),
    ProxiedRoute(
        "embeddings",
        openai.embeddings,
        ("/v1/embeddings", "/embeddings"),
        "Embeddings",
        ("model", "input"),
    ),
    ProxiedRoute(
        "infer",
        inference.infer,
        (
            "/v2/models/{model_name:path}/versions/{model_version}/infer",
            "/v2/models/{model_name:path}/infer",
        ),
        "Inference on a classic model (Open Inference Protocol v2; JSON or binary tensors)",
        ("inputs",),
        errors=inference.v2_error,
        answer=InferAnswer,
    ),
)


def by_path() -> dict[str, ProxiedRoute]:
    """The routes at fixed paths (a dict lookup per request)."""
    return {path: route for route in PROXIED for path in route.paths if "{" not in path}


Match = tuple[ProxiedRoute, dict[str, str]]


def templated() -> list[tuple[re.Pattern[str], ProxiedRoute]]:
    """The routes whose paths have parameters, in the order they are tried."""
    return [
        (compile_path(path)[0], route) for route in PROXIED for path in route.paths if "{" in path
    ]


def match(patterns: list[tuple[re.Pattern[str], ProxiedRoute]], path: str) -> Match | None:
    for pattern, route in patterns:
        found = pattern.match(path)
        if found is not None:
            return route, found.groupdict()
    return None


async def _served_by_the_edge() -> None:
    raise AssertionError("proxied routes are dispatched by the edge, never by FastAPI")


def document(app: FastAPI) -> None:
    """Lists the proxied routes in /openapi.json (and so gives other methods a 405)."""
    for route in PROXIED:
        body: dict[str, Any] = {"type": "object", "required": list(route.required)}
        extra = {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body}},
            }
        }
        for index, path in enumerate(route.paths):
            app.add_api_route(
                path,
                _served_by_the_edge,
                methods=["POST"],
                summary=route.summary,
                include_in_schema=index == 0 or "{" in path,
                openapi_extra=extra,
                response_model=route.answer,
            )
