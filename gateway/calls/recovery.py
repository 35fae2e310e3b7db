"""Mid-stream recovery (gateway.stream_recovery): what a broken stream's continuation asks for,
and how its events join the stream the client is reading.

A stream that is cut, or stalls past stream_timeout, after it began is continued on the next
deployment the router chooses (calls/streaming.py), which is given the text the client
already has and asked for the rest:

- a deployment that supports assistant prefill (model_info.supports_assistant_prefill, else
  the price map's flag: Anthropic, DeepSeek, Mistral, Bedrock's Claude, ...) gets the text as
  a final assistant message marked `prefix: true`: DeepSeek's and Mistral's own field (for
  DeepSeek on its `/beta` base), which litellm turns into Anthropic's prefill; it streams
  what follows, and only that (litellm prepends the prefix to Anthropic's JSON replies, not
  to its streams);
- any other gets the text as an assistant message and then a user message asking it to go on
  from where it stopped without repeating it: best effort, as the model may still rephrase.

What is replayed is exactly what the client received: the text of complete events. A cut
inside an event (mid-UTF-8 included) loses that event, which the client never got either, so
a character is never split. Trailing whitespace is left off the replayed text (Anthropic
refuses a prefill ending in it, and a model continues a word better than a space), and the
continuation's leading whitespace that the client already has is dropped.

The client keeps one stream: the continuation's events carry the first event's `id`,
`created` and `model`, its role delta (and any event left empty) is dropped, its usage event
adds the broken attempt's, and its one `[DONE]` ends the answer.

Not recovered (the stream fails as it would without recovery): n > 1, a response_format other
than text, a forced tool_choice, a caller's final assistant message that is not plain text,
deltas that carried anything but text (a tool call cannot be resumed mid-arguments; nor can
reasoning, audio or a refusal), a stream that had sent its finish_reason (the answer was
whole), and a stream whose completion limit the sent text used up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.calls.token_cap import LIMIT_FIELDS
from gateway.providers import Deployment, Stream, Usage

CONTINUE = (
    "Continue your previous answer exactly where it stops. Do not repeat any of it and add "
    "nothing before the continuation."
)


class StreamRecovery:
    """Which model names recover their streams, and which deployments continue by prefill."""

    def __init__(self, names: Mapping[str, bool], prefill: frozenset[str]) -> None:
        self._names = dict(names)
        self._default = self._names.get("*", False)
        self.prefill = prefill

    def applies(self, name: str, target: str, body: dict[str, Any]) -> bool:
        """Whether a stream for `name` (a model_group_alias of `target`) may be recovered:
        its name has recovery on and its request asks for nothing a continuation loses."""
        on = self._names.get(name)
        if on is None:
            on = self._names.get(target, self._default)
        return on and replayable(body)


def replayable(body: dict[str, Any]) -> bool:
    n = body.get("n")
    if type(n) is int and n > 1:
        return False
    response_format = body.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        return False
    choice = body.get("tool_choice")
    if choice == "required" or isinstance(choice, dict):
        return False
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    if isinstance(last, dict) and last.get("role") == "assistant":
        return isinstance(last.get("content"), str)
    return True


@dataclass(frozen=True, slots=True)
class Continuation:
    """How the text the client has is put to each deployment tried (see the docstring)."""

    replays: bool  # False when no text came: the request is sent again as it was
    prefill: frozenset[str]

    def body_for(self, body: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
        if not self.replays:
            return body
        messages = list(body["messages"])
        if deployment.id in self.prefill:
            messages[-1] = {**messages[-1], "prefix": True}
        else:
            messages.append({"role": "user", "content": CONTINUE})
        return {**body, "messages": messages}


def continuation(
    body: dict[str, Any], text: str, prefill: frozenset[str]
) -> tuple[dict[str, Any], Continuation] | None:
    """The request that continues `text` (before each deployment's own form, `body_for`), or
    None when the text used up the caller's completion limit."""
    emitted = tokens_in(text)
    limits = {}
    for name in LIMIT_FIELDS:
        value = body.get(name)
        if type(value) is int:
            if value - emitted < 1:
                return None
            limits[name] = value - emitted
    prefix = text.rstrip()
    if not prefix:
        return {**body, **limits}, Continuation(False, prefill)
    messages = list(body["messages"])
    last = messages[-1] if messages else None
    if isinstance(last, dict) and last.get("role") == "assistant":
        # The caller's own prefill: the model's text continues it.
        messages[-1] = {**last, "content": last["content"] + prefix}
    else:
        messages.append({"role": "assistant", "content": prefix})
    return {**body, **limits, "messages": messages}, Continuation(True, prefill)


def tokens_in(text: str) -> int:
    """Completion tokens of streamed text, counted as the gateway counts them when an
    upstream reports none: 4 characters a token."""
    return (len(text) + 3) // 4


def added_usage(usage: Usage, earlier: Usage) -> Usage:
    return Usage(
        usage.prompt_tokens + earlier.prompt_tokens,
        usage.completion_tokens + earlier.completion_tokens,
        usage.cached_tokens + earlier.cached_tokens,
        usage.reasoning_tokens + earlier.reasoning_tokens,
        usage.cache_creation_tokens + earlier.cache_creation_tokens,
    )


class Continued:
    """The continuation's events, made part of the stream the client is reading."""

    def __init__(self, stream: Stream, head: dict[str, Any], sent: str, earlier: Usage) -> None:
        self.stream = stream
        self._head = head
        self._earlier = earlier
        # Whitespace the client has that the replayed text left off: not to be sent again.
        self._whitespace = sent[len(sent.rstrip()) :] if sent.strip() else ""

    async def batches(self, strip_usage: bool) -> AsyncIterator[list[bytes]]:
        async for batch in self.stream.batches(strip_usage):
            events = [joined for event in batch if (joined := self._joined(event)) is not None]
            if events:
                yield events

    def _joined(self, event: bytes) -> bytes | None:
        """The event as part of the first stream, or None when nothing is left of it."""
        if event.startswith(b"data: [DONE]"):
            return event
        chunk = orjson.loads(event[6:])  # the stream has parsed it: it is valid
        if not isinstance(chunk, dict):
            return event
        chunk.update(self._head)
        kept = False
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict):
                delta.pop("role", None)
                content = delta.get("content")
                if self._whitespace and isinstance(content, str) and content:
                    delta["content"] = self._trimmed(content)
                kept = kept or any(delta.values())
            kept = kept or bool(isinstance(choice, dict) and choice.get("finish_reason"))
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            earlier = self._earlier
            prompt = int(usage.get("prompt_tokens") or 0) + earlier.prompt_tokens
            completion = int(usage.get("completion_tokens") or 0) + earlier.completion_tokens
            usage.update(
                prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
            )
            kept = True
        return b"data: " + orjson.dumps(chunk) + b"\n\n" if kept else None

    def _trimmed(self, content: str) -> str:
        whitespace = self._whitespace
        common = 0
        while common < min(len(whitespace), len(content)) and whitespace[common] == content[common]:
            common += 1
        rest = content[common:]
        # Only the start of the continuation: once it has text, nothing more is trimmed.
        self._whitespace = whitespace[common:] if not rest else ""
        return rest
