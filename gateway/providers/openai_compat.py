"""Fast path for OpenAI-compatible upstreams: one pooled HTTP client, bytes passed through.

litellm costs ~2 ms per call (measured, see README); OpenAI, vLLM, Groq, Together and the
test upstream all speak the same wire format, so for them we only swap the model name.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import orjson

from gateway.core.errors import UpstreamError
from gateway.providers.base import Deployment, Reply, Stream, Usage
from gateway.providers.errors import status_error, translate_http_errors, where
from gateway.transport.http_client import (
    KEEPALIVE_SECONDS,
    HTTPClient,
    Response,
    ResponseTooLarge,
)

# Headers the HTTP client owns: it frames the body and asks for it uncompressed.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "accept-encoding"})

# Default bases for providers whose wire format is OpenAI's.
OPENAI_COMPATIBLE_BASES: dict[str, str | None] = {
    "openai": "https://api.openai.com/v1",
    "hosted_vllm": None,
    "groq": "https://api.groq.com/openai/v1",
    "together_ai": "https://api.together.xyz/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "fireworks_ai": "https://api.fireworks.ai/inference/v1",
    "deepinfra": "https://api.deepinfra.com/v1/openai",
}


def takes_fast_path(provider: str, transport: str) -> bool:
    """Whether a deployment is served by this module (else by litellm, or locally)."""
    return provider in OPENAI_COMPATIBLE_BASES and transport != "litellm"


def _split_events(buffer: bytes) -> tuple[list[bytes], bytes]:
    if b"\r\n" in buffer:
        buffer = buffer.replace(b"\r\n", b"\n")
    parts = buffer.split(b"\n\n")
    rest = parts.pop()
    events = []
    for part in parts:
        if part.startswith(b"data: "):
            events.append(part + b"\n\n")
        elif part.startswith(b"data:"):
            events.append(b"data: " + part[5:] + b"\n\n")
        # comments and keep-alives (": ping") carry nothing for the client
    return events, rest


class OpenAICompatibleProvider:
    def __init__(
        self,
        max_response_bytes: int = 256 * 1024 * 1024,
        *,
        max_per_host: int | None = None,
        keepalive: float = KEEPALIVE_SECONDS,
    ) -> None:
        self._http: HTTPClient | None = None
        self.max_response_bytes = max_response_bytes
        self._max_per_host, self._keepalive = max_per_host, keepalive

    def _client(self) -> HTTPClient:
        if self._http is None:
            # Created lazily: the pool belongs to the loop that serves the requests.
            self._http = HTTPClient(max_per_host=self._max_per_host, keepalive=self._keepalive)
        return self._http

    @staticmethod
    def _url(deployment: Deployment, path: str) -> str:
        base = deployment.api_base or OPENAI_COMPATIBLE_BASES.get(deployment.provider)
        if not base:
            raise UpstreamError(
                f"model {deployment.alias!r} has no upstream address; tell the operator",
                detail=f"{where(deployment)} has no api_base",
            )
        url = base.rstrip("/") + path
        if deployment.api_version:
            # Azure's OpenAI-compatible endpoints take their API version as a query parameter.
            url += "?api-version=" + quote(deployment.api_version, safe="")
        return url

    @staticmethod
    def _headers(deployment: Deployment) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        for name, value in deployment.extra_headers.items():
            key = name.lower()  # so a configured "Authorization" cannot go out twice
            if key not in _FRAMING_HEADERS:
                headers[key] = value
        if deployment.api_key:
            headers["authorization"] = f"Bearer {deployment.api_key}"
        if deployment.organization:  # as OpenAI's SDK sends its organization=
            headers["openai-organization"] = deployment.organization
        return headers

    @staticmethod
    def _payload(deployment: Deployment, body: dict[str, Any]) -> bytes:
        if deployment.params:
            body = {**deployment.params, **body}
        body["model"] = deployment.upstream_model
        return orjson.dumps(body)

    async def _post(self, deployment: Deployment, path: str, body: dict[str, Any]) -> Reply:
        started = time.perf_counter()
        with translate_http_errors(deployment):
            response = await self._client().post(
                self._url(deployment, path),
                self._headers(deployment),
                self._payload(deployment, body),
                total=deployment.timeout,
                tls=deployment.tls,
            )
            raw = await response.read(self.max_response_bytes)
            if response.status >= 300:
                raise status_error(response.status, response.headers, raw, deployment)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                f"the upstream of model {deployment.alias!r} returned invalid JSON",
                detail=f"{where(deployment)} returned invalid JSON: {raw[:200]!r}",
            ) from None
        usage = Usage.from_openai(data.get("usage")) if isinstance(data, dict) else None
        return Reply(raw, usage, time.perf_counter() - started)

    async def chat(self, deployment: Deployment, body: dict[str, Any]) -> Reply:
        return await self._post(deployment, "/chat/completions", body)

    async def embeddings(self, deployment: Deployment, body: dict[str, Any]) -> Reply:
        return await self._post(deployment, "/embeddings", body)

    async def open_stream(self, deployment: Deployment, body: dict[str, Any]) -> Stream:
        started = time.perf_counter()
        response: Response | None = None
        with translate_http_errors(deployment):
            try:
                # Connecting, the head and the first event share deployment.timeout; every
                # wait for bytes is also bounded by stream_timeout.
                response = await self._client().post(
                    self._url(deployment, "/chat/completions"),
                    self._headers(deployment),
                    self._payload(deployment, body),
                    total=deployment.timeout,
                    idle=deployment.stream_timeout,
                    tls=deployment.tls,
                )
                if response.status >= 300:
                    raw = await response.read(self.max_response_bytes)
                    raise status_error(response.status, response.headers, raw, deployment)
                events = self._events(response, deployment)
                first = await anext(events, None)
                if first is None:
                    raise UpstreamError(
                        f"the upstream stream of model {deployment.alias!r} ended before any event",
                        detail=f"{where(deployment)}: stream ended before any event",
                    )
            except BaseException:
                if response is not None:
                    response.close()
                raise
        response.deadline = None  # from here on only the idle timeout applies
        return Stream(first, events, started)

    async def _events(
        self, response: Response, deployment: Deployment
    ) -> AsyncIterator[list[bytes]]:
        # Only the new bytes (and the 3 before them, for a separator split across reads) are
        # searched, and the pieces joined once an event is complete: rescanning and regrowing
        # the whole buffer per read made one 16 MB event (a streamed image, say) cost ~6 s of
        # event-loop time in 64 KB reads.
        pending: list[bytes] = []
        pending_bytes = 0
        limit = self.max_response_bytes
        tail = b""
        try:
            with translate_http_errors(deployment):
                while data := await response.chunk():
                    pending.append(data)
                    pending_bytes += len(data)
                    edge = tail + data[:3]
                    tail = (tail + data[-3:])[-3:]
                    if not any(sep in data or sep in edge for sep in (b"\n\n", b"\r\n\r\n")):
                        if pending_bytes > limit:  # one event that never ends
                            raise ResponseTooLarge(f"a stream event over {limit} bytes")
                        continue
                    events, rest = _split_events(b"".join(pending))
                    if pending_bytes > limit and (
                        len(rest) > limit or any(len(event) > limit for event in events)
                    ):
                        raise ResponseTooLarge(f"a stream event over {limit} bytes")
                    pending = [rest] if rest else []
                    pending_bytes = len(rest)
                    if events:
                        yield events
                buffer = b"".join(pending)
                if buffer.strip():
                    events, _ = _split_events(buffer + b"\n\n")
                    if events:
                        yield events
        finally:
            # Pools the connection if the body is complete, closes it if abandoned midway.
            response.close()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
