"""What every provider offers the router, whatever library does the work underneath."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from gateway.errors import UpstreamError


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        if not isinstance(usage, dict):
            return None
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        return cls(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int(prompt_details.get("cached_tokens") or 0),
            reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
        )


@dataclass(slots=True)
class Deployment:
    """One way to serve an alias: a provider, an upstream model and its parameters."""

    id: str
    alias: str
    model: str  # LiteLLM-style "provider/model"
    provider: str  # the prefix before the first "/", or "openai" when there is none
    upstream_model: str  # what the upstream is asked for
    api_base: str | None = None
    api_key: str | None = None
    weight: float = 1.0
    rpm: int | None = None
    tpm: int | None = None
    timeout: float = 60.0
    stream_timeout: float = 60.0
    params: dict[str, Any] = field(default_factory=dict)
    extra_headers: dict[str, str] = field(default_factory=dict)
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    mode: str = "chat"


@dataclass(slots=True)
class Reply:
    """A complete (non-streaming) answer, as OpenAI-shaped JSON bytes ready to send."""

    body: bytes
    usage: Usage | None
    upstream_seconds: float


class Stream:
    """An opened upstream stream whose first event has already arrived.

    Yields complete SSE events (`data: ...\\n\\n`) in OpenAI's chunk format. Ending without
    `data: [DONE]` is a failure, so a cut stream can never pass for a complete answer.
    """

    def __init__(self, first: bytes, rest: AsyncIterator[bytes], started: float) -> None:
        self.first = first
        self._rest = rest
        self.started = started
        self.opened_at = time.perf_counter()
        self.first_event_seconds = self.opened_at - started
        self.usage: Usage | None = None
        self.done = False
        self.last_usage_only = False  # the last event carried usage and no choices
        self.content_chars = 0
        self._observe(first)

    def _observe(self, event: bytes) -> None:
        # Each event is parsed (about a microsecond) so a malformed one becomes a clear error
        # instead of breaking the client's JSON decoder, and so usage is seen when it comes.
        if event.startswith(b"data: [DONE]"):
            self.done = True
            return
        try:
            chunk = orjson.loads(event[6:])
        except orjson.JSONDecodeError:
            raise UpstreamError("upstream sent a malformed stream event") from None
        if not isinstance(chunk, dict):
            return
        choices = chunk.get("choices")
        self.last_usage_only = bool(chunk.get("usage")) and not choices
        if chunk.get("usage"):
            self.usage = Usage.from_openai(chunk["usage"])
        if choices:
            for choice in choices:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                content = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(content, str):
                    self.content_chars += len(content)

    async def events(self) -> AsyncIterator[bytes]:
        yield self.first
        async for event in self._rest:
            self._observe(event)
            yield event
            if self.done:
                return
        if not self.done:
            raise UpstreamError("upstream stream ended before completion (no [DONE])")

    async def aclose(self) -> None:
        close = getattr(self._rest, "aclose", None)
        if close is not None:
            await close()


class Provider(Protocol):
    async def chat(self, deployment: Deployment, body: dict[str, Any]) -> Reply: ...

    async def open_stream(self, deployment: Deployment, body: dict[str, Any]) -> Stream: ...

    async def embeddings(self, deployment: Deployment, body: dict[str, Any]) -> Reply: ...

    async def aclose(self) -> None: ...


def sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


DONE_EVENT = b"data: [DONE]\n\n"
