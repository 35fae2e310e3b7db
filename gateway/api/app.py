"""create_app(settings): the whole request path, top to bottom, in one place."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api import (
    admin,
    evals,
    health,
    indexes,
    inference,
    logs,
    monitoring,
    openai,
    prompts,
    proxied,
    registry,
)
from gateway.api.deps import invalid_request, unparsable
from gateway.api.docs import install_docs
from gateway.api.edge import Edge
from gateway.api.litellm_admin import routes as litellm_admin
from gateway.core.config import load_config
from gateway.core.errors import GatewayError, NotFound, error_response
from gateway.core.general_settings import settings_from_config
from gateway.core.settings import Settings
from gateway.identity.auth import resolve_master_key
from gateway.state import GatewayState
from gateway.store import errors as store_errors

log = logging.getLogger("gateway")
FASTAPI_UNPARSABLE = "There was an error parsing the body"  # its words when its parser fails


def _render(request: Request, error: GatewayError) -> Response:
    """The Open Inference Protocol's error shape under /v2, OpenAI's everywhere else."""
    if request.url.path.startswith("/v2"):
        return inference.v2_error(error)
    return error_response(error)


def install_error_handlers(app: FastAPI) -> None:
    async def gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return _render(request, exc)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _render(request, invalid_request(request, exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            path = request.url.path
            error: GatewayError = NotFound(f"No route {request.method} {path}.{_hint(request)}")
        elif exc.status_code == 400 and exc.detail == FASTAPI_UNPARSABLE:
            error = unparsable(await request.body())
        else:
            error = GatewayError(str(exc.detail))
            error.status = exc.status_code
            error.type = "invalid_request_error"
        return _render(request, error)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _render(request, GatewayError("The gateway hit an internal error; it is logged."))

    async def database_error(request: Request, exc: Exception) -> Response:
        log.warning(
            "database unavailable for %s %s: %s",
            request.method,
            request.url.path,
            store_errors.cause(exc),
        )
        return _render(request, store_errors.unavailable(exc))

    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    for unavailable in store_errors.UNAVAILABLE:
        app.add_exception_handler(unavailable, database_error)
    app.add_exception_handler(Exception, unexpected)


def _hint(request: Request) -> str:
    """Names the route the path meant when it only lacks or adds a trailing slash. Starlette
    would redirect instead, to an absolute URL built from the caller's Host header."""
    path = request.scope["path"]
    other = path.rstrip("/") if path.endswith("/") else path + "/"
    scope = {**request.scope, "path": other}
    for route in request.app.router.routes:
        if other and route.matches(scope)[0] is not Match.NONE:
            return f" Did you mean {other}?"
    return ""


class GatewayApp(FastAPI):
    """FastAPI with the edge in front of it: HTTP requests meet the edge (ids, body cap, the
    proxied routes' dispatch and request log), and only the rest reach FastAPI.

    Outside FastAPI rather than as its middleware, because Starlette's stack (error and
    telemetry middleware, body limits) cost a proxied call ~5% of its CPU for nothing it uses.
    """

    edge: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.edge is not None:
            scope["app"] = self
            await self.edge(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def serve_with_fastapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(_text_json_named_as_fastapi_knows_it(scope), receive, send)


def _text_json_named_as_fastapi_knows_it(scope: Scope) -> Scope:
    """Chat reads a `text/json` body as JSON (api/deps.py read_json); FastAPI reads only
    application/json and +json, and would hand the other routes bytes. Renamed, they agree."""
    headers = scope.get("headers", [])
    for index, (name, value) in enumerate(headers):
        media, semicolon, params = value.partition(b";")
        if name == b"content-type" and media.strip().lower() == b"text/json":
            renamed = (name, b"application/json" + semicolon + params)
            return {**scope, "headers": [*headers[:index], renamed, *headers[index + 1 :]]}
    return scope


def create_app(settings: Settings | None = None, *, freeze_after_start: bool = False) -> FastAPI:
    settings = settings or Settings()
    config = load_config(settings.config)
    settings = settings_from_config(settings, config)  # general_settings.master_key, ...
    # What a LiteLLM user's file asks for and the gateway does not do as LiteLLM would.
    config.report.log(logging.getLogger("gateway.config"))
    config.report.environment.export()
    state = GatewayState.build(settings, config, resolve_master_key(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        if freeze_after_start:
            # Everything that exists once started (modules, routes, config, price map) lives
            # as long as the process. Frozen, the collector stops rescanning it: under load,
            # calls in flight reach the oldest generation, and each full collection walked the
            # whole heap (~55 ms, twice a second at 64 clients). Only for the server's own
            # process: a test suite builds many apps in one.
            gc.freeze()
        try:
            yield
        finally:
            await state.stop()

    app = GatewayApp(
        title="LLMOps Gateway",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from install_docs, with assets served locally
        redoc_url=None,
        redirect_slashes=False,
        # A body without a Content-Type is read as JSON, as chat reads it. FastAPI's strict
        # default guards cookie sessions against cross-site posts; every route here wants a
        # bearer key, which a cross-site form cannot send.
        strict_content_type=False,
    )
    app.state.gateway = state
    install_error_handlers(app)
    install_docs(app)
    app.include_router(health.router)
    app.include_router(openai.router)
    proxied.document(app)
    app.include_router(admin.router)
    app.include_router(logs.router)
    app.include_router(prompts.router)
    app.include_router(evals.router)
    app.include_router(registry.router)
    app.include_router(registry.finetunes)
    app.include_router(monitoring.router)
    app.include_router(indexes.router)
    app.include_router(inference.router)
    app.include_router(litellm_admin.router)  # LiteLLM's admin routes, for its scripts
    max_body = config.gateway.max_body_bytes or settings.max_body_bytes
    app.edge = Edge(app.serve_with_fastapi, state, max_body_bytes=max_body)
    return app


def app_from_env() -> FastAPI:
    """Factory for servers that import the app by name (uvicorn --factory, workers)."""
    from gateway.api.server import configure_logging

    settings = Settings()
    configure_logging(settings.log_level)
    return create_app(settings, freeze_after_start=True)
