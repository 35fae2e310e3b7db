"""The proxied routes, declared once: the edge dispatches them (see api/edge.py) and the
OpenAPI document lists them from this table."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from gateway.api import openai
from gateway.calls.record import CallRecord
from gateway.identity.auth import Caller
from gateway.state import GatewayState

Handler = Callable[[Request, GatewayState, Caller, CallRecord], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class ProxiedRoute:
    kind: str  # the request-log row's `route`
    handler: Handler
    paths: tuple[str, ...]  # the first is documented; the others are OpenAI-SDK aliases
    summary: str
    required: tuple[str, ...]  # body fields, for the OpenAPI document


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
)


def by_path() -> dict[str, ProxiedRoute]:
    return {path: route for route in PROXIED for path in route.paths}


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
                include_in_schema=index == 0,
                openapi_extra=extra,
            )
