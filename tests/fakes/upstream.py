"""A fake OpenAI-compatible upstream: a real HTTP server on loopback, steered by the model name.

The gateway is tested and benchmarked against it without patching anything: every failure
mode an upstream can show is asked for by writing it into the request's ``model`` string.

Endpoints (each also without the ``/v1`` prefix)::

    POST /v1/chat/completions   JSON reply, or SSE when "stream": true
    POST /v1/embeddings         float vectors, or base64 float32 with "encoding_format": "base64"
    GET  /v1/models             a fixed list of ids
    GET  /_fake/calls?model=M   {"model": M, "calls": n}; without ?model: {"total", "by_model"}
    POST /_fake/reset           zeroes the call counters (and so restarts every fail_first)
    POST /openai/deployments/{name}/chat/completions?api-version=V   Azure OpenAI's layout
    POST /openai/deployments/{name}/embeddings?api-version=V         (as litellm's azure/ sends it)

Azure's layout answers like the others; without ``api-version`` it is a 404, as Azure's is.
``FakeUpstream.last_request(model)`` tells what the latest chat or embeddings request for a
model string carried (path, query, headers), and ``last_body(model)`` its JSON body, so a test
can see a configured value arrive (or not).

Anything else is a 404 with an OpenAI error body.

Every path may start with ``/_with/<directives>`` (an ``api_base`` of ``.../_with/cached=4/v1``):
those directives apply besides the model string's, so a deployment can ask for a behaviour and
still name a real model (whose price the price map knows).

Replies are deterministic. Chat answers ``"echo: " + <text of the last user message>`` (text
parts of a list content are joined with spaces). Token counts are whitespace-split word
counts: prompt = words over all messages (at least 1), completion = words of the answer. A
stream carries a role chunk, ``chunks`` content chunks that concatenate to exactly the JSON
answer, a finish chunk, a usage chunk (``choices: []``) only when
``stream_options.include_usage`` is true, then ``data: [DONE]``. Embedding vectors are a hash
of the text, L2-normalised.

A conversation whose last message is an assistant message marked ``"prefix": true`` (DeepSeek's
and Mistral's way to have a model continue a text) is continued: the answer is the rest of the
echo of the last user message after that text (the whole echo when it does not start with it).

Directive grammar of the model string::

    model      := directive ("," directive)*
    directive  := [prefix "/"] name ["=" value]       surrounding whitespace is ignored

Names are case-insensitive and anything before the last ``/`` of a name is dropped, so
``openai/hang`` means ``hang``. Unknown names are ignored, so ordinary names such as
``gpt-4o-mini`` behave normally, and a tag like ``id=retry-test`` makes a model string unique
so its call count is not shared with other tests. A known name with a bad value is answered
with a 400 naming it. The whole string is always echoed back as ``model``.

==================  ===========================================================================
``latency=MS``      wait MS milliseconds before the response headers (every chat/embeddings
                    request, including failures)
``status=CODE``     answer every request with HTTP CODE (400-599) and an OpenAI error body;
                    type ``rate_limit_error`` for 429, ``server_error`` for 5xx, else
                    ``invalid_request_error``
``quota``           with a 429, the code ``insufficient_quota`` (the account is out of
                    credit, as OpenAI says it) instead of ``rate_limit_exceeded``
``code=CODE``       with a failure, the error body's ``code`` (``content_filter`` is Azure's
                    content filter refusing a prompt, as a 400)
``context=N``       a context window of N tokens: a chat request whose prompt counts more
                    words than N is refused with OpenAI's 400 ``context_length_exceeded``
``retry_after=S``   with a failure, add ``retry-after: S`` and ``retry-after-ms: S*1000``
                    (S may be fractional)
``fail_first=N``    the first N requests for this exact model string fail (with ``status=``,
                    else 500); later ones succeed. ``status=`` without it always fails
``hang``            never send response headers (until the client or the server goes away)
``first_byte=MS``   send a chat reply's head at once, then wait MS milliseconds before the
                    first byte of its body (JSON or stream)
``chunks=N``        content chunks in a stream, N >= 1 (default 5); short answers give some
                    empty chunks
``chunk_delay=MS``  in a stream, wait MS milliseconds before each content chunk and before
                    the finish chunk
``cut=N``           in a stream, close the connection after N content chunks: no finish
                    chunk, no [DONE], no chunked-encoding terminator (N >= chunks: after the
                    last content chunk)
``cut_mid=N``       like ``cut=N``, but first send part of the next content chunk's event:
                    up to the middle of its first multi-byte UTF-8 character (half the
                    event when it has none)
``stall=N``         in a stream, send nothing more after N content chunks, keeping the
                    connection open
``malformed``       200 with a body that is not JSON; a stream sends one valid chunk, then
                    ``data: {not json``, then [DONE]
``no_usage``        chat replies carry no ``usage``: none in the JSON, no usage chunk in a
                    stream even when ``include_usage`` asks for it
``pad=N``           append a space and N ``x`` characters to the chat answer (one more
                    completion token), for oversized replies
``dim=N``           embedding dimension, 1-4096 (default 8)
``echo_headers``    non-streaming replies carry ``x_received_headers``: the request headers,
                    names lower-cased
``fill``            answer each choice with exactly ``max_completion_tokens`` (else
                    ``max_tokens``) words ``"tok"``, finish_reason ``length``: the longest
                    answer the request allows (without a limit: the normal answer)
``reasoning``       refuse ``max_tokens`` with a 400 naming it, as OpenAI's reasoning models
                    (o-series, gpt-5) do: they take ``max_completion_tokens`` only
``prompt_tokens=N`` report N prompt tokens instead of the word count (long-context prices)
``cached=N``        report ``prompt_tokens_details.cached_tokens: N`` (among the prompt's)
``cache_write=N``   report ``prompt_tokens_details.cache_creation_tokens: N`` (among the
                    prompt's, as litellm reports Anthropic's cache writes)
``reasoning_tokens=N``  report ``completion_tokens_details.reasoning_tokens: N``, N more
                    completion tokens (reasoning is among the completion's, as OpenAI counts)
==================  ===========================================================================

Like OpenAI, chat honours ``n`` (that many choices, each with the same answer; completion
tokens count all of them) and refuses a bad request with a 400 naming the field: ``n`` not an
integer from 1 to 128, ``temperature`` not a number from 0 to 2, or ``reasoning_effort`` not
one of minimal, low, medium, high (a field the gateway passes on unread). These depend on the
request, not the model string, so one caller's bad request and another's good one can share a
deployment.

Order within a request: count the call, ``latency``, ``hang``, failure (``status`` /
``fail_first``), then ``malformed`` or the normal answer (``first_byte`` after its head).
``FakeUpstream.in_flight(model)`` counts the chat requests still being answered (waits such
as ``latency`` and ``hang`` included), so a test can see that an abandoned call stopped at
the upstream too.

Run it on its own with ``python -m tests.fakes.upstream --port 9100``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import math
import signal
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import orjson
from aiohttp import web

__all__ = [
    "DirectiveError",
    "Directives",
    "FakeUpstream",
    "ReceivedRequest",
    "main",
    "parse_directives",
    "running_upstream",
]

# Graceful-shutdown window for in-flight handlers; aiohttp waits up to twice this before it
# cancels them, and 0 would mean "wait forever", so keep it small but positive.
_SHUTDOWN_GRACE: Final = 0.1
_MAX_DIM: Final = 4096
_AZURE_PREFIX: Final = "/openai/deployments/"
_WITH_PREFIX: Final = "/_with/"
_ADDRESS_DIRECTIVES: Final = web.RequestKey("directives", str)

_JSON_HEADERS: Final = {"Content-Type": "application/json"}
_SSE_HEADERS: Final = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_DONE: Final = b"data: [DONE]\n\n"
_MALFORMED_JSON: Final = b'{"id": "chatcmpl-broken", "choices": ['
_MALFORMED_EVENT: Final = b"data: {not json\n\n"
_MODEL_IDS: Final = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "fake-echo")
_MODELS_BODY: Final = orjson.dumps(
    {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "fake-upstream"}
            for name in _MODEL_IDS
        ],
    }
)


class DirectiveError(ValueError):
    """A known directive with a value it cannot take."""


@dataclass(frozen=True, slots=True)
class Directives:
    """The behaviour a model string asks for; durations are in seconds."""

    latency: float = 0.0
    status: int | None = None
    retry_after: tuple[str, str] | None = None  # (seconds, milliseconds) as header values
    fail_first: int | None = None
    hang: bool = False
    chunks: int = 5
    chunk_delay: float = 0.0
    cut: int | None = None
    cut_mid: int | None = None
    stall: int | None = None
    malformed: bool = False
    dim: int = 8
    echo_headers: bool = False
    first_byte: float = 0.0
    no_usage: bool = False
    pad: int = 0
    fill: bool = False
    reasoning: bool = False
    quota: bool = False
    code: str | None = None
    context: int | None = None
    prompt_tokens: int | None = None
    cached: int = 0
    cache_write: int = 0
    reasoning_tokens: int = 0


def _flag(value: str | None) -> bool:
    if value is not None:
        raise DirectiveError("takes no value")
    return True


def _required(value: str | None) -> str:
    if value is None or not value:
        raise DirectiveError("needs a value")
    return value


def _seconds(value: str) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise DirectiveError("must be a finite number >= 0")
    return number


def _millis(value: str | None) -> float:
    return _seconds(_required(value)) / 1000


def _retry_after(value: str | None) -> tuple[str, str]:
    text = _required(value)
    millis = round(_seconds(text) * 1000, 3)
    # str() of a whole float would read "50.0" and large ones are fine as ints ("3600000").
    return text, str(int(millis)) if millis.is_integer() else str(millis)


def _int_between(low: int, high: int) -> Callable[[str | None], int]:
    def convert(value: str | None) -> int:
        number = int(_required(value))
        if not low <= number <= high:
            raise DirectiveError(f"must be between {low} and {high}")
        return number

    return convert


_NO_LIMIT: Final = 1 << 62

# directive name -> (Directives field, converter of the raw value; None when there was no "=")
_DIRECTIVES: Final[dict[str, tuple[str, Callable[[str | None], object]]]] = {
    "latency": ("latency", _millis),
    "status": ("status", _int_between(400, 599)),
    "retry_after": ("retry_after", _retry_after),
    "fail_first": ("fail_first", _int_between(0, _NO_LIMIT)),
    "hang": ("hang", _flag),
    "chunks": ("chunks", _int_between(1, 10_000)),
    "chunk_delay": ("chunk_delay", _millis),
    "cut": ("cut", _int_between(0, _NO_LIMIT)),
    "cut_mid": ("cut_mid", _int_between(0, _NO_LIMIT)),
    "stall": ("stall", _int_between(0, _NO_LIMIT)),
    "malformed": ("malformed", _flag),
    "dim": ("dim", _int_between(1, _MAX_DIM)),
    "echo_headers": ("echo_headers", _flag),
    "first_byte": ("first_byte", _millis),
    "no_usage": ("no_usage", _flag),
    "pad": ("pad", _int_between(0, 1 << 30)),
    "fill": ("fill", _flag),
    "reasoning": ("reasoning", _flag),
    "quota": ("quota", _flag),
    "code": ("code", _required),
    "context": ("context", _int_between(1, _NO_LIMIT)),
    "prompt_tokens": ("prompt_tokens", _int_between(0, _NO_LIMIT)),
    "cached": ("cached", _int_between(0, _NO_LIMIT)),
    "cache_write": ("cache_write", _int_between(0, _NO_LIMIT)),
    "reasoning_tokens": ("reasoning_tokens", _int_between(0, _NO_LIMIT)),
}


@lru_cache(maxsize=4096)
def parse_directives(model: str) -> Directives:
    """Read the directives out of a model string (see the module docstring)."""
    fields: dict[str, Any] = {}
    for item in model.split(","):
        name, has_value, value = item.partition("=")
        name = name.strip().rsplit("/", 1)[-1].lower()
        known = _DIRECTIVES.get(name)
        if known is None:
            continue
        field, convert = known
        try:
            fields[field] = convert(value.strip() if has_value else None)
        except ValueError as exc:  # also int()/float() on garbage
            raise DirectiveError(f"bad directive {item.strip()!r} in model: {exc}") from None
    return Directives(**fields)


def _error_type(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def _error_response(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {
        "error": {"message": message, "type": _error_type(status), "param": param, "code": code}
    }
    return web.Response(body=orjson.dumps(body), status=status, headers=headers or _JSON_HEADERS)


@lru_cache(maxsize=256)
def _failure_body(status: int, quota: bool = False, code: str | None = None) -> bytes:
    if code is None and status == 429:
        code = "insufficient_quota" if quota else "rate_limit_exceeded"
    error = {
        "message": f"fake upstream error {status}",
        "type": _error_type(status),
        "param": None,
        "code": code,
    }
    return orjson.dumps({"error": error})


def _failure(directives: Directives, status: int) -> web.Response:
    headers = _JSON_HEADERS
    retry_after = directives.retry_after
    if retry_after is not None:
        headers = {**_JSON_HEADERS, "retry-after": retry_after[0], "retry-after-ms": retry_after[1]}
    body = _failure_body(status, directives.quota, directives.code)
    return web.Response(body=body, status=status, headers=headers)


def _json(payload: object) -> web.Response:
    return web.Response(body=orjson.dumps(payload), headers=_JSON_HEADERS)


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _echo(messages: list[Any]) -> tuple[str, int]:
    """The deterministic answer to a conversation, and its prompt token count."""
    last_user = ""
    words = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        text = _text_of(message.get("content"))
        words += len(text.split())
        if message.get("role") == "user":
            last_user = text
    answer = "echo: " + last_user
    last = messages[-1] if messages else None
    if isinstance(last, dict) and last.get("role") == "assistant" and last.get("prefix") is True:
        prefix = _text_of(last.get("content"))
        answer = answer.removeprefix(prefix)
    return answer, max(words, 1)


REASONING_EFFORTS = ("minimal", "low", "medium", "high")


def _request_error(body: dict[str, Any]) -> web.Response | None:
    """OpenAI's 400 for a parameter out of its range, or None."""
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 128):
        return _error_response(
            400, f"Invalid 'n': {n!r}; expected an integer from 1 to 128.", param="n"
        )
    temperature = body.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not 0 <= temperature <= 2
    ):
        message = f"Invalid 'temperature': {temperature!r}; expected a number from 0 to 2."
        return _error_response(400, message, param="temperature")
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        message = f"Invalid 'reasoning_effort': {effort!r}; expected one of {REASONING_EFFORTS}."
        return _error_response(400, message, param="reasoning_effort")
    return None


def _fill_limit(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        limit = body.get(name)
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            return limit
    return None


def _split(content: str, pieces: int) -> list[str]:
    size = len(content)
    return [content[i * size // pieces : (i + 1) * size // pieces] for i in range(pieces)]


def _embedding_inputs(value: object) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(item, int) for item in value):
        return [str(value)]  # one pre-tokenised input, not many
    return [item if isinstance(item, str) else str(item) for item in value]


def _vector(text: str, dim: int) -> list[float]:
    # Bytes map to odd multiples of 1/255 in [-1, 1], so no component (nor the norm) is zero.
    raw = hashlib.shake_256(text.encode()).digest(dim)
    vector = [byte / 127.5 - 1.0 for byte in raw]
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


def _received_headers(request: web.BaseRequest) -> dict[str, str]:
    seen: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        seen[key] = f"{seen[key]}, {value}" if key in seen else value
    return seen


async def _forever() -> None:
    # Cancelled when the client disconnects (handler_cancellation) or the server stops.
    await asyncio.get_running_loop().create_future()


def _usage(directives: Directives, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    if directives.prompt_tokens is not None:
        prompt_tokens = directives.prompt_tokens
    completion_tokens += directives.reasoning_tokens
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if directives.cached or directives.cache_write:
        details = {"cached_tokens": directives.cached}
        if directives.cache_write:
            details["cache_creation_tokens"] = directives.cache_write
        usage["prompt_tokens_details"] = details
    if directives.reasoning_tokens:
        usage["completion_tokens_details"] = {"reasoning_tokens": directives.reasoning_tokens}
    return usage


async def _reply(request: web.BaseRequest, body: bytes, first_byte: float) -> web.StreamResponse:
    if not first_byte:
        return web.Response(body=body, headers=_JSON_HEADERS)
    # A StreamResponse sends its head on prepare(); a plain Response waits for the body.
    response = web.StreamResponse(headers=_JSON_HEADERS)
    response.content_length = len(body)
    await response.prepare(request)
    await asyncio.sleep(first_byte)
    await response.write_eof(body)
    return response


def _sse(payload: object) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _part_of(event: bytes) -> bytes:
    """The event up to the middle of its first multi-byte UTF-8 character, else its half."""
    lead = next((i for i, byte in enumerate(event) if byte >= 0xC0), None)
    return event[: lead + 1] if lead is not None else event[: len(event) // 2]


_Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class _Answer:
    content: str  # of each choice
    finish: str
    n: int


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """What one chat or embeddings request carried."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any]  # the JSON body, parsed


class FakeUpstream:
    """One fake upstream server; its call counters belong to this instance."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.url = ""
        self._runner: web.ServerRunner | None = None
        # calls() and reset() may come from a test thread while the loop thread counts.
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        # Changed on the loop thread only; a dict read from a test thread is atomic.
        self._in_flight: dict[str, int] = {}
        self._last: dict[str, tuple[web.BaseRequest, dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        chat, embeddings = self._chat, self._embeddings
        self._routes: dict[tuple[str, str], _Handler] = {
            ("POST", "/v1/chat/completions"): chat,
            ("POST", "/chat/completions"): chat,
            ("POST", "/v1/embeddings"): embeddings,
            ("POST", "/embeddings"): embeddings,
            ("GET", "/v1/models"): self._models,
            ("GET", "/models"): self._models,
            ("GET", "/_fake/calls"): self._calls,
            ("POST", "/_fake/reset"): self._reset,
        }

    async def start(self) -> None:
        # The low-level server skips aiohttp's router and middleware machinery; access_log=None
        # avoids a logger call per request; handler_cancellation lets a hung handler die with
        # its client instead of lingering.
        server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=_SHUTDOWN_GRACE)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, backlog=1024)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        self.url = f"http://{self.host}:{self.port}/v1"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def calls(self, model: str | None = None) -> int:
        """Chat and embeddings requests received for exactly this model string (or in all)."""
        with self._lock:
            if model is None:
                return sum(self._counts.values())
            return self._counts.get(model, 0)

    def in_flight(self, model: str) -> int:
        """Chat requests for exactly this model string that are still being answered."""
        return self._in_flight.get(model, 0)

    def last_request(self, model: str) -> ReceivedRequest | None:
        """The latest chat or embeddings request for exactly this model string."""
        with self._lock:
            last = self._last.get(model)
        if last is None:
            return None
        request, body = last
        return ReceivedRequest(request.path, dict(request.query), _received_headers(request), body)

    def last_body(self, model: str) -> dict[str, Any] | None:
        """The JSON body of the latest chat or embeddings request for exactly this model."""
        with self._lock:
            last = self._last.get(model)
        return None if last is None else last[1]

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def _azure_route(self, method: str, path: str) -> _Handler | None:
        if method != "POST" or not path.startswith(_AZURE_PREFIX):
            return None
        _, _, operation = path[len(_AZURE_PREFIX) :].partition("/")
        return {"chat/completions": self._chat, "embeddings": self._embeddings}.get(operation)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path.startswith(_WITH_PREFIX):  # directives in the address (see the docstring)
            spec, _, rest = path[len(_WITH_PREFIX) :].partition("/")
            request[_ADDRESS_DIRECTIVES] = spec
            path = "/" + rest
        route = self._routes.get((request.method, path)) or self._azure_route(request.method, path)
        azure = route is not None and path.startswith(_AZURE_PREFIX)
        if azure and "api-version" not in request.query:
            return _error_response(404, "Resource not found", code="404")
        if route is None:
            message = f"Invalid URL ({request.method} {request.path})"
            return _error_response(404, message, code="unknown_url")
        return await route(request)

    async def _admit(
        self, request: web.BaseRequest, answering: list[str] | None = None
    ) -> tuple[dict[str, Any], str, Directives] | web.Response:
        """Count the call and apply the directives every endpoint shares.

        Returns the parsed body to answer normally, or the response that answers instead.
        With `answering`, the model is counted in flight (and appended) from here on.
        """
        try:
            body = orjson.loads(await request.content.read())
        except orjson.JSONDecodeError:
            return _error_response(400, "request body is not valid JSON")
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str):
            return _error_response(400, "'model' must be a string", param="model")
        with self._lock:
            seen = self._counts.get(model, 0) + 1
            self._counts[model] = seen
            # Kept as aiohttp's request; read into a ReceivedRequest only when asked, so the
            # benchmark's upstream does no extra work per call.
            self._last[model] = (request, body)
        if answering is not None:
            self._in_flight[model] = self._in_flight.get(model, 0) + 1
            answering.append(model)
        spec = request.get(_ADDRESS_DIRECTIVES)
        try:
            directives = parse_directives(f"{model},{spec}" if spec else model)
        except DirectiveError as exc:
            return _error_response(400, str(exc), param="model")
        if directives.latency:
            await asyncio.sleep(directives.latency)
        if directives.hang:
            await _forever()
        if directives.fail_first is not None:
            if seen <= directives.fail_first:
                return _failure(directives, directives.status or 500)
        elif directives.status is not None:
            return _failure(directives, directives.status)
        return body, model, directives

    async def _chat(self, request: web.BaseRequest) -> web.StreamResponse:
        answering: list[str] = []
        try:
            admitted = await self._admit(request, answering)
            if isinstance(admitted, web.Response):
                return admitted
            return await self._answer(request, *admitted)
        finally:
            for model in answering:
                self._in_flight[model] -= 1

    async def _answer(
        self, request: web.BaseRequest, body: dict[str, Any], model: str, directives: Directives
    ) -> web.StreamResponse:
        stream = body.get("stream") is True
        if directives.malformed and not stream:
            return await _reply(request, _MALFORMED_JSON, directives.first_byte)
        messages = body.get("messages")
        if not isinstance(messages, list):
            return _error_response(400, "'messages' must be a list", param="messages")
        refused = _request_error(body)
        if refused is not None:
            return refused
        if directives.reasoning and body.get("max_tokens") is not None:
            message = (
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead."
            )
            return _error_response(400, message, param="max_tokens", code="unsupported_parameter")
        n = body.get("n") or 1
        content, prompt_tokens = _echo(messages)
        if directives.context is not None and prompt_tokens > directives.context:
            message = (
                f"This model's maximum context length is {directives.context} tokens. However, "
                f"your messages resulted in {prompt_tokens} tokens. Please reduce the length "
                f"of the messages."
            )
            return _error_response(400, message, param="messages", code="context_length_exceeded")
        finish = "stop"
        limit = _fill_limit(body) if directives.fill else None
        if limit is not None:
            content, finish = " ".join(["tok"] * limit), "length"
        if directives.pad:
            content += " " + "x" * directives.pad
        completion_tokens = len(content.split()) * n
        usage = _usage(directives, prompt_tokens, completion_tokens)
        # "object" is overwritten per reply kind but keeps its place: id, object, created, model.
        head = {
            "id": f"chatcmpl-fake{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
        }
        if stream:
            options = body.get("stream_options")
            wants_usage = isinstance(options, dict) and options.get("include_usage") is True
            wants_usage = wants_usage and not directives.no_usage
            answer = _Answer(content, finish, n)
            return await self._stream(request, directives, head, answer, usage, wants_usage)
        reply: dict[str, Any] = {
            **head,
            "choices": [
                {
                    "index": index,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": None,
                    "finish_reason": finish,
                }
                for index in range(n)
            ],
        }
        if not directives.no_usage:
            reply["usage"] = usage
        if directives.echo_headers:
            reply["x_received_headers"] = _received_headers(request)
        return await _reply(request, orjson.dumps(reply), directives.first_byte)

    async def _stream(
        self,
        request: web.BaseRequest,
        directives: Directives,
        head: dict[str, Any],
        answer: _Answer,
        usage: dict[str, int],
        wants_usage: bool,
    ) -> web.StreamResponse:
        choices = range(answer.n)

        def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
            # One event per choice, as OpenAI streams n > 1.
            return b"".join(
                _sse(
                    {
                        **head,
                        "object": "chat.completion.chunk",
                        "choices": [
                            {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}
                        ],
                    }
                )
                for i in choices
            )

        response = web.StreamResponse(headers=_SSE_HEADERS)
        await response.prepare(request)
        if directives.first_byte:
            await asyncio.sleep(directives.first_byte)
        first = chunk({"role": "assistant", "content": ""})
        if directives.malformed:
            await response.write_eof(first + _MALFORMED_EVENT + _DONE)
            return response
        pieces = [chunk({"content": piece}) for piece in _split(answer.content, directives.chunks)]
        tail = [chunk({}, answer.finish)]
        if wants_usage:
            tail.append(
                _sse({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})
            )
        tail.append(_DONE)

        delay = directives.chunk_delay
        cut = directives.cut if directives.cut_mid is None else directives.cut_mid
        if not delay and cut is None and directives.stall is None:
            # One write for the whole stream: headers, events and terminator in one syscall.
            await response.write_eof(b"".join([first, *pieces, *tail]))
            return response

        await response.write(first)
        count = len(pieces)
        cut_at = None if cut is None else min(cut, count)
        stall_at = None if directives.stall is None else min(directives.stall, count)
        for sent in range(count + 1):
            if sent == stall_at:
                await _forever()
            if sent == cut_at:
                # close() flushes what was written, then drops the connection without the
                # zero-length chunk, so the client sees a body that ended early. aiohttp's
                # own write_eof afterwards hits the closed transport and gives up quietly.
                if directives.cut_mid is not None and sent < count:
                    await response.write(_part_of(pieces[sent]))
                if request.transport is not None:
                    request.transport.close()
                return response
            if delay:
                await asyncio.sleep(delay)
            if sent < count:
                await response.write(pieces[sent])
        await response.write_eof(b"".join(tail))
        return response

    async def _embeddings(self, request: web.BaseRequest) -> web.StreamResponse:
        admitted = await self._admit(request)
        if isinstance(admitted, web.Response):
            return admitted
        body, model, directives = admitted
        if directives.malformed:
            return web.Response(body=_MALFORMED_JSON, headers=_JSON_HEADERS)
        texts = _embedding_inputs(body.get("input"))
        if texts is None:
            return _error_response(400, "'input' must be a string or a list", param="input")
        as_base64 = body.get("encoding_format") == "base64"
        pack = struct.Struct(f"<{directives.dim}f").pack
        data: list[dict[str, Any]] = []
        for index, text in enumerate(texts):
            vector = _vector(text, directives.dim)
            embedding: object = base64.b64encode(pack(*vector)).decode() if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = max(sum(len(text.split()) for text in texts), 1)
        if directives.prompt_tokens is not None:
            tokens = directives.prompt_tokens
        reply: dict[str, Any] = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        if directives.echo_headers:
            reply["x_received_headers"] = _received_headers(request)
        return _json(reply)

    async def _models(self, request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(body=_MODELS_BODY, headers=_JSON_HEADERS)

    async def _calls(self, request: web.BaseRequest) -> web.StreamResponse:
        model = request.query.get("model")
        if model is not None:
            return _json({"model": model, "calls": self.calls(model)})
        with self._lock:
            by_model = dict(self._counts)
        return _json({"total": sum(by_model.values()), "by_model": by_model})

    async def _reset(self, request: web.BaseRequest) -> web.StreamResponse:
        self.reset()
        return _json({"reset": True})


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


@contextlib.contextmanager
def running_upstream(port: int = 0, host: str = "127.0.0.1") -> Iterator[FakeUpstream]:
    """Runs a FakeUpstream on its own event loop in a daemon thread (for sync tests / the bench)."""
    fake = FakeUpstream(host, port)
    ready = threading.Event()
    failures: list[BaseException] = []
    handles: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def serve() -> None:
        stopping = asyncio.Event()
        try:
            await fake.start()
        except BaseException as exc:
            failures.append(exc)
            return
        finally:
            handles.append((asyncio.get_running_loop(), stopping))
            ready.set()
        try:
            await stopping.wait()
        finally:
            await fake.stop()

    def run() -> None:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve())

    thread = threading.Thread(target=run, name=f"fake-upstream-{port}", daemon=True)
    thread.start()
    if not ready.wait(timeout=30):
        raise RuntimeError("fake upstream did not start")
    if failures:
        thread.join()
        raise failures[0]
    loop, stopping = handles[0]
    try:
        yield fake
    finally:
        loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=10)


async def _serve_until_signalled(host: str, port: int) -> None:
    fake = FakeUpstream(host, port)
    await fake.start()
    print(f"listening on http://{fake.host}:{fake.port}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        await fake.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.upstream",
        description="Serve the fake OpenAI-compatible upstream until SIGINT or SIGTERM.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0 picks a free port")
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve_until_signalled(args.host, args.port))


if __name__ == "__main__":
    main()
