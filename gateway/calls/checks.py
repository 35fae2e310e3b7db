"""Each kind of call's body checks, run before anything is reserved for it (see chat_body.py
for what the OpenAI-shaped bodies must hold)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.calls.chat_body import check_chat, check_embeddings
from gateway.core.errors import BadRequest

CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "chat": check_chat,
    "embeddings": check_embeddings,
}


def require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string.", param="model")
    return model
