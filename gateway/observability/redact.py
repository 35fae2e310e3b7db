"""Secrets out of logged bodies: by key name, and by the shape of well-known key formats."""

from __future__ import annotations

import re
from typing import Any

import orjson

# Whole names only: "max_tokens" or "secret_santa_theme" are ordinary fields.
SECRET_NAMES = re.compile(
    r"^(x-)?(api[_-]?key|authorization|password|passwd|secret|client[_-]?secret|"
    r"(access|refresh|id|auth)?[_-]?token|credentials?)$",
    re.I,
)
SECRET_VALUES = re.compile(
    r"(sk-[A-Za-z0-9_\-]{16,}|gw-[A-Za-z0-9_\-]{16,}|AKIA[0-9A-Z]{16}|"
    r"Bearer\s+[A-Za-z0-9_\-\.=]{16,}|eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]+)"
)
MASK = "[REDACTED]"


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: MASK if isinstance(k, str) and SECRET_NAMES.search(k) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return SECRET_VALUES.sub(MASK, value)
    return value


def redacted_json(value: Any) -> str:
    return orjson.dumps(redact(value)).decode()


def redacted_body(raw: bytes) -> str:
    """A response body as logged: redacted like request bodies (an upstream may echo a
    secret back); text that is not JSON still loses secret-shaped values."""
    try:
        return redacted_json(orjson.loads(raw))
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):  # not JSON, or nested too deep
        return SECRET_VALUES.sub(MASK, raw.decode("utf-8", "replace"))
