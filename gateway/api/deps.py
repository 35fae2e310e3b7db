"""What routes need, declared once (route signatures read like a contract)."""

from __future__ import annotations

import json
import math
import sys
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError

from gateway.api import access_log
from gateway.core.errors import BadRequest
from gateway.identity.auth import Caller, presented_key
from gateway.state import GatewayState


async def get_state(request: Request) -> GatewayState:
    # async on purpose: FastAPI runs plain `def` dependencies in a worker thread, which cost
    # a thread hop on every request (measured: ~7% of CPU and milliseconds of latency).
    state: GatewayState = request.app.state.gateway
    return state


async def authenticate(request: Request) -> Caller:
    state: GatewayState = request.app.state.gateway
    caller = await state.auth.authenticate(
        presented_key(request.headers), request.scope.get("client")
    )
    request.scope[access_log.KEY_ID] = caller.key_id  # the edge's access log names it
    return caller


async def master(request: Request, caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
    request.app.state.gateway.auth.require_master(caller)
    return caller


StateDep = Annotated[GatewayState, Depends(get_state)]
CallerDep = Annotated[Caller, Depends(authenticate)]
MasterDep = Annotated[Caller, Depends(master)]


# Stored values (metadata, hyperparameters, reports) nest at most this deep: no real one does.
MAX_DEPTH = 64
# What orjson can serialize; it parses deeper, so a proxied body nested deeper than this would
# be accepted and then fail when forwarded or logged.
SERIALIZABLE_DEPTH = 254
JSON_TYPES = ("application/json", "text/json")


class UnsupportedMediaType(BadRequest):
    status = 415
    code = "unsupported_media_type"


def require_json_content(content_type: str | None) -> None:
    """JSON bodies only. A missing header is taken as JSON (nothing says otherwise, and some
    minimal clients omit it); form posts, e.g. curl -d without -H, are refused."""
    if content_type is None:
        return
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    charset = params.partition("charset=")[2].strip().strip('"').lower()
    if (media in JSON_TYPES or media.endswith("+json")) and charset in ("", "utf-8", "utf8"):
        return
    raise UnsupportedMediaType(
        f"Content-Type must be application/json (UTF-8), not {content_type!r}: send the body "
        f"as JSON with the header 'Content-Type: application/json' (curl: -H "
        f"'Content-Type: application/json').",
        param="content-type",
    )


async def read_json(request: Request) -> tuple[dict[str, Any], int]:
    """The body as a JSON object, and its size in bytes."""
    require_json_content(request.headers.get("content-type"))
    raw = await request.body()
    if not raw:
        raise BadRequest("Request body is empty: send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise not_json(raw, exc) from None
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object.")
    # Nesting needs at least as many brackets as levels: a C-speed count spares ordinary
    # bodies any check, and for the others serializing is the check (in C, several times
    # faster than walking the body in Python); only a failure pays for naming the field.
    if raw.count(b"{") + raw.count(b"[") > SERIALIZABLE_DEPTH:
        try:
            orjson.dumps(body)
        except orjson.JSONEncodeError as exc:
            check_json(body, max_depth=SERIALIZABLE_DEPTH)
            raise BadRequest(f"Request body cannot be forwarded: {exc}") from None
    return body, len(raw)


def not_json(raw: bytes, exc: Exception) -> BadRequest:
    """Why a body does not parse, naming the field when it is a non-finite number (which the
    standard library's parser accepts and so can locate)."""
    try:
        lenient = json.loads(raw)
    except (ValueError, RecursionError):
        return BadRequest(f"Request body is not valid JSON: {exc}")
    try:
        check_json(lenient)
    except BadRequest as located:
        return located
    return BadRequest(f"Request body is not valid JSON: {exc}")


def check_json(value: Any, *, text: bool = False, max_depth: int = MAX_DEPTH) -> None:
    """Refuses what JSON parsers let through but storage or serialization cannot take:
    non-finite numbers, nesting deeper than max_depth and, with text=True (values that are
    stored), NUL characters, which PostgreSQL refuses in text. The error names the field."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if len(path) >= max_depth and isinstance(item, dict | list):  # a level too many
            raise BadRequest(
                f"{field_path(path[:5])}...: nested deeper than {max_depth} levels; flatten it.",
                param=field_path(path[:1]),
            )
        if isinstance(item, dict):
            for key, child in item.items():
                if text and "\x00" in key:
                    where = field_path(path) or "body"
                    raise BadRequest(f"{where}: key {key!r} contains a NUL character.", param=where)
                stack.append((child, (*path, key)))
        elif isinstance(item, list):
            stack.extend((child, (*path, i)) for i, child in enumerate(item))
        elif (isinstance(item, float) and not math.isfinite(item)) or (
            isinstance(item, int) and abs(item) > sys.float_info.max
        ):
            where = field_path(path) or "body"
            raise BadRequest(
                f"{where}: must be a finite number (NaN, Infinity and numbers beyond "
                f"±1.8e308 are not allowed).",
                param=where,
            )
        elif text and isinstance(item, str) and "\x00" in item:
            where = field_path(path) or "body"
            raise BadRequest(
                f"{where}: contains a NUL character (\\u0000); remove it.", param=where
            )


def field_path(path: tuple[str | int, ...]) -> str:
    """metadata.tags[2] style."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def invalid_request(request: Request, exc: RequestValidationError) -> BadRequest:
    """FastAPI's validation failure as a 400 naming the field (not FastAPI's 422)."""
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    if not where and first.get("loc", ())[:1] == ("body",):
        content_type = request.headers.get("content-type", "none")
        message = (
            f"Request body must be a JSON object with Content-Type: application/json "
            f"(got {content_type}): {first.get('msg', 'invalid body')}"
        )
        return BadRequest(message)
    message = f"{where}: {first.get('msg', 'invalid request')}"
    param = ".".join(str(p) for p in first.get("loc", ())[1:])  # without body/query/path
    return BadRequest(message, param=param or None)


async def valid_input(request: Request, caller: Annotated[Caller, Depends(authenticate)]) -> None:
    """For the admin, prompt, eval and registry routes (not the proxied ones): path and query
    values and JSON bodies must be storable, before pydantic or the database sees them.
    Authentication comes first, so strangers get their 401 whatever they sent."""
    for where, values in (
        ("path", request.path_params.items()),
        ("query", request.query_params.multi_items()),
    ):
        for name, given in values:
            if isinstance(given, str) and "\x00" in given:
                raise BadRequest(
                    f"{where} parameter {name!r} contains a NUL character.", param=name
                )
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    raw = await request.body()
    if not raw:
        return
    # What chat takes, and the same 415 for the rest: FastAPI would read a form post as
    # bytes and answer with a puzzling "should be a valid dictionary".
    require_json_content(request.headers.get("content-type"))
    try:
        # The standard parser, as FastAPI's: it accepts NaN and Infinity, which we refuse here
        # with the field's name.
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return  # not JSON at all: FastAPI's own validation says so (see unparsable)
    check_json(body, text=True)


def unparsable(raw: bytes) -> BadRequest:
    """Why FastAPI could not parse a body: it says only "There was an error parsing the
    body" when its parser gives up (a body nested beyond Python's recursion limit)."""
    try:
        json.loads(raw)
    except RecursionError:
        return BadRequest(f"Request body nests deeper than {MAX_DEPTH} levels; flatten it.")
    except ValueError as exc:
        return not_json(raw, exc)
    return BadRequest("Request body could not be parsed: send a JSON object.")


ValidInput = Depends(valid_input)
