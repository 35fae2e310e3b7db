"""What a sampled LLM call contributes: its signals as columns, and its input and output texts
(embedded later by the background job).

A `Sample` is made on the request path for the calls the sampler draws, and only holds
references there (the body sent, the reply's bytes); a stream's events are read as they pass,
for sampled calls only. Everything else (parsing, the texts, the signals) happens when the
sampler's writer turns samples into rows, off the request path.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson

from gateway.providers.local import message_text

if TYPE_CHECKING:
    from gateway.drift.columns import Kind

# The LLM signals and their kinds; "input" and "output" are the texts' embeddings.
LLM_COLUMNS: dict[str, Kind] = {
    "input": "embedding",
    "output": "embedding",
    "input_tokens": "numerical",
    "output_tokens": "numerical",
    "output_chars": "numerical",
    "finish_reason": "categorical",
    "refusal": "categorical",
    "json_valid": "categorical",
    "tool_call": "categorical",
    "latency_ms": "numerical",
    "ttft_ms": "numerical",
    "cost_usd": "numerical",
    "error": "categorical",
}
TEXT_COLUMNS = ("input", "output")
JSON_FORMATS = ("json_object", "json_schema")
# Openings of a model declining (OpenAI's `refusal` field is the other, exact, sign).
REFUSAL = re.compile(
    r"^\W*(?:(?:i'?m|i am) sorry|sorry|i apologi[sz]e|unfortunately|as an ai)?[^.!?\n]{0,60}?"
    r"\b(?:i|we)\s+(?:can(?:no|')t|cannot|won'?t|will not|am unable to|'m unable to|"
    r"am not able to|'m not able to)\s+(?:help|assist|comply|provide|do|answer|share|"
    r"fulfil|fulfill|support|create|generate|write|discuss)",
    re.IGNORECASE,
)
MAX_TEXT = 20_000  # characters kept per text (the embedding model reads ~256 tokens anyway)


class Sample:
    """One drawn call, filled in as it goes."""

    __slots__ = ("body", "finish", "parts", "refusal", "reply", "subject", "tools")

    def __init__(self, subject: str, body: dict[str, Any]) -> None:
        self.subject = subject
        self.body = body
        self.reply: bytes | None = None
        self.parts: list[str] | None = None  # a stream's content deltas
        self.finish: str | None = None
        self.tools = False
        self.refusal = False

    def observe(self, events: list[bytes]) -> None:
        """A stream's events as they are relayed."""
        parts = self.parts if self.parts is not None else []
        self.parts = parts
        for event in events:
            if not event.startswith(b"data: {"):
                continue
            try:
                chunk = orjson.loads(event[6:])
            except orjson.JSONDecodeError:
                continue
            for choice in chunk.get("choices") or ():
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta") or {}
                if isinstance(delta.get("content"), str):
                    parts.append(delta["content"])
                self.tools = self.tools or bool(delta.get("tool_calls"))
                self.refusal = self.refusal or bool(delta.get("refusal"))
                if choice.get("finish_reason"):
                    self.finish = str(choice["finish_reason"])


def input_text(body: dict[str, Any]) -> str | None:
    """The user's part of the conversation (system text is the prompt's, not the input)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    texts = [message_text(m) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    joined = "\n".join(t for t in texts if t)
    return joined[:MAX_TEXT] or None


def _reply_message(reply: bytes) -> tuple[dict[str, Any], str | None]:
    try:
        data = orjson.loads(reply)
    except orjson.JSONDecodeError:
        return {}, None
    choices = data.get("choices") if isinstance(data, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(first, dict):
        return {}, None
    message = first.get("message")
    finish = first.get("finish_reason")
    return (message if isinstance(message, dict) else {}), (str(finish) if finish else None)


def wants_json(body: dict[str, Any]) -> bool:
    response_format = body.get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") in JSON_FORMATS


def is_json(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def signals(sample: Sample, row: dict[str, Any]) -> tuple[dict[str, Any], str | None, str | None]:
    """The call's signal values, its input text and its output text."""
    # A stream that failed after its first byte keeps its 200; a client leaving is no error.
    failed = row["status"] >= 400 or row["error_type"] not in (None, "client_disconnected")
    values: dict[str, Any] = {
        "input_tokens": row["input_tokens"],
        "latency_ms": row["latency_ms"],
        "ttft_ms": row["ttft_ms"],
        "cost_usd": row["cost_usd"],
        "error": failed,
    }
    text: str | None = None
    if not failed:
        if sample.parts is not None:
            text, finish = "".join(sample.parts), sample.finish
            tools, refused = sample.tools, sample.refusal
        else:
            message, finish = _reply_message(sample.reply or b"")
            content = message.get("content")
            text = content if isinstance(content, str) else ""
            tools, refused = bool(message.get("tool_calls")), bool(message.get("refusal"))
        values |= {
            "output_tokens": row["output_tokens"],
            "output_chars": len(text),
            "finish_reason": finish,
            "tool_call": tools,
            "refusal": refused or bool(REFUSAL.match(text.lstrip()[:300])),
            "json_valid": is_json(text) if wants_json(sample.body) else None,
        }
    return values, input_text(sample.body), (text[:MAX_TEXT] or None) if text else None
