"""Usage for calls whose upstream reported none (it sent no usage, or the client left before
it came): counted from what was sent and received, and marked an estimate on the row."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.metering.meter import prompt_tokens_sent
from gateway.providers import Stream, Usage

__all__ = ["prompt_tokens_sent", "reply_usage", "stream_usage"]


def reply_usage(sent: dict[str, Any], reply: bytes) -> Usage:
    return Usage(prompt_tokens_sent(sent), completion_tokens_in(reply))


def stream_usage(sent: dict[str, Any], stream: Stream) -> Usage:
    """The prompt that was sent and what streamed up to the end or the cut."""
    return Usage(prompt_tokens_sent(sent), (stream.content_chars + 3) // 4)


def completion_tokens_in(reply: bytes) -> int:
    """What a JSON reply's choices say, counted as streamed text is (characters / 4)."""
    try:
        data = orjson.loads(reply)
    except orjson.JSONDecodeError:
        return 0
    choices = data.get("choices") if isinstance(data, dict) else None
    chars = 0
    for choice in choices if isinstance(choices, list) else ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            content = message.get("content")
            chars += len(content) if isinstance(content, str) else 0
            calls = message.get("tool_calls")
            chars += len(orjson.dumps(calls)) if calls else 0
    return (chars + 3) // 4
