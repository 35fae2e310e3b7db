"""What every provider offers the router, whatever library does the work underneath."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from gateway.core.errors import UpstreamError
from gateway.transport.tls import TLSOptions


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_creation_tokens: int = 0  # prompt tokens written to the provider's cache

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
            # As litellm reads them: Anthropic's cache writes (which litellm reports here), or
            # an OpenAI-compatible server's cache_write_tokens.
            cache_creation_tokens=int(
                prompt_details.get("cache_write_tokens")
                or prompt_details.get("cache_creation_tokens")
                or 0
            ),
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
    api_version: str | None = None  # Azure's api-version
    organization: str | None = None  # OpenAI's OpenAI-Organization
    weight: float = 1.0
    rpm: int | None = None
    tpm: int | None = None
    timeout: float = 60.0
    stream_timeout: float = 60.0
    # Calls retried on this same deployment before the router counts the attempt as failed.
    max_retries: int = 0
    # The request parameters the provider takes (temperature, ...): the fast path's body.
    params: dict[str, Any] = field(default_factory=dict)
    # What litellm's call takes besides the request: those parameters and LiteLLM's provider
    # settings (aws_region_name, vertex_project, drop_params, ...). See core/deployment_params.
    litellm_kwargs: dict[str, Any] = field(default_factory=dict)
    extra_headers: dict[str, str] = field(default_factory=dict)
    # Prices the config declares, by LiteLLM's key names: in model_info, and in litellm_params
    # (which win). metering/prices.py turns them, the price map and base_model into a Price.
    info_prices: dict[str, Any] = field(default_factory=dict)
    param_prices: dict[str, Any] = field(default_factory=dict)
    base_model: str | None = None  # the price map's name for it, when its own name is not
    mode: str = "chat"
    tags: tuple[str, ...] = ()  # for tag-based routing; never sent upstream
    cost_per_1k_predictions: float | None = None  # classic models (/v2 infer)
    max_batch_size: int | None = None  # classic models in process: adaptive batching
    max_batch_time: float = 0.002
    # The fast path's TLS settings for this upstream, when it has its own (None: verified
    # against the default CAs, no client certificate).
    tls: TLSOptions | None = None


def split_model(model: str) -> tuple[str, str]:
    """LiteLLM's "provider/model" as (provider, the model the upstream is asked for); a name
    without a provider prefix is OpenAI's."""
    provider, _, upstream_model = model.partition("/")
    if not upstream_model:
        return "openai", model
    return provider, upstream_model


@dataclass(slots=True)
class Reply:
    """A complete (non-streaming) answer, as OpenAI-shaped JSON bytes ready to send."""

    body: bytes
    usage: Usage | None
    upstream_seconds: float


class Stream:
    """An opened upstream stream whose first event has already arrived.

    Carries complete SSE events (`data: ...\n\n`) in OpenAI's chunk format, in batches: the
    events that arrived in one network read travel together, so the relay writes them to the
    client in one write instead of one per event. Ending without `data: [DONE]` is a failure,
    so a cut stream can never pass for a complete answer.
    """

    def __init__(
        self, first: list[bytes], rest: AsyncIterator[list[bytes]], started: float
    ) -> None:
        self._rest = rest
        self.started = started
        self.opened_at = time.perf_counter()
        self.first_event_seconds = self.opened_at - started
        self.usage: Usage | None = None
        self.done = False
        self.content_chars = 0
        # With keep_text() (mid-stream recovery): the text relayed so far, piece by piece.
        self.text: list[str] | None = None
        # No delta carried anything but text (a tool call, say), and no choice finished.
        self.continuable = True
        self.head: dict[str, Any] = {}  # the first event's id, created and model
        # Observed now, so a malformed first event fails before anything reaches the client
        # (and the router may still fall back).
        self._first = self._observed(first)

    def _observed(self, batch: list[bytes]) -> list[tuple[bytes, bool]]:
        """The batch's events up to [DONE], each with whether it carries usage only."""
        seen = []
        for event in batch:
            seen.append((event, self._observe(event)))
            if self.done:
                break
        return seen

    def _observe(self, event: bytes) -> bool:
        # Each event is parsed (about a microsecond) so a malformed one becomes a clear error
        # instead of breaking the client's JSON decoder, and so usage is seen when it comes.
        if event.startswith(b"data: [DONE]"):
            self.done = True
            return False
        try:
            chunk = orjson.loads(event[6:])
        except orjson.JSONDecodeError:
            raise UpstreamError("upstream sent a malformed stream event") from None
        if not isinstance(chunk, dict):
            return False
        choices = chunk.get("choices")
        usage = chunk.get("usage")
        if usage:
            self.usage = Usage.from_openai(usage)
        if choices:
            for choice in choices:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                content = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(content, str):
                    self.content_chars += len(content)
        return bool(usage) and not choices

    def keep_text(self) -> None:
        """From here on, also keep the text each event carries and whether anything else came
        (for mid-stream recovery, which replays the text). Costs nothing per event unless
        called: `batches` picks the observer once."""
        self.text = []
        chunk = _chunk_of(self._first[0][0]) if self._first else None
        if chunk is not None:
            self.head = {k: chunk[k] for k in ("id", "created", "model") if k in chunk}
        self.content_chars = 0  # counted again, with the text kept
        for event, _ in self._first:
            self._observe_keeping(event)

    def _observe_keeping(self, event: bytes) -> bool:
        """_observe, keeping the text too. A copy rather than a shared helper or a flag, so
        the plain observer (every stream without recovery) does no more than it did."""
        if event.startswith(b"data: [DONE]"):
            self.done = True
            return False
        try:
            chunk = orjson.loads(event[6:])
        except orjson.JSONDecodeError:
            raise UpstreamError("upstream sent a malformed stream event") from None
        if not isinstance(chunk, dict):
            return False
        choices = chunk.get("choices")
        usage = chunk.get("usage")
        if usage:
            self.usage = Usage.from_openai(usage)
        if choices:
            for choice in choices:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if not isinstance(delta, dict):
                    continue
                content = delta.get("content")
                if isinstance(content, str) and content:
                    self.text.append(content)  # type: ignore[union-attr]  # set by keep_text
                    self.content_chars += len(content)
                if choice.get("finish_reason") or (
                    (len(delta) > 1 or content is None)
                    and any(value for key, value in delta.items() if key not in _TEXT_KEYS)
                ):
                    # The answer is whole, or carries what text cannot replay: a tool call,
                    # reasoning, audio, a refusal.
                    self.continuable = False
        return bool(usage) and not choices

    async def batches(self, strip_usage: bool = False) -> AsyncIterator[list[bytes]]:
        """Batches of events, the last ending with [DONE]; usage-only events dropped when
        asked. A malformed event ends the stream with an error after the events before it."""
        seen = self._first
        observe = self._observe if self.text is None else self._observe_keeping
        while True:
            kept = [event for event, usage_only in seen if not (strip_usage and usage_only)]
            if kept:
                yield kept
            if self.done:
                return
            batch = await anext(self._rest, None)
            if batch is None:
                raise UpstreamError("upstream stream ended before completion (no [DONE])")
            seen = []
            for event in batch:
                try:
                    seen.append((event, observe(event)))
                except UpstreamError:
                    kept = [e for e, usage_only in seen if not (strip_usage and usage_only)]
                    if kept:
                        yield kept
                    raise
                if self.done:
                    break

    async def events(self) -> AsyncIterator[bytes]:
        """One event at a time (for callers that want them singly)."""
        async for batch in self.batches():
            for event in batch:
                yield event

    async def aclose(self) -> None:
        close = getattr(self._rest, "aclose", None)
        if close is not None:
            await close()


# What a delta may carry besides its text and still be replayed as text alone.
_TEXT_KEYS = frozenset({"content", "role"})


def _chunk_of(event: bytes) -> dict[str, Any] | None:
    if event.startswith(b"data: [DONE]"):
        return None
    try:
        chunk = orjson.loads(event[6:])
    except orjson.JSONDecodeError:
        return None
    return chunk if isinstance(chunk, dict) else None


class Provider(Protocol):
    async def chat(self, deployment: Deployment, body: dict[str, Any]) -> Reply: ...

    async def open_stream(self, deployment: Deployment, body: dict[str, Any]) -> Stream: ...

    async def embeddings(self, deployment: Deployment, body: dict[str, Any]) -> Reply: ...

    async def aclose(self) -> None: ...


def sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


DONE_EVENT = b"data: [DONE]\n\n"
