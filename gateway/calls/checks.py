"""What a call's body must hold before anything is reserved for it: the fields the gateway
itself reads, enforces or prices. Plain checks on the fields present, not a model parse: the
rest of the body passes through to the provider untouched."""

from __future__ import annotations

from typing import Any

from gateway.core.errors import BadRequest

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
MAX_CHOICES = 128  # OpenAI's bound on n


def require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string.", param="model")
    return model


def check_chat(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array of messages.", param="messages")
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        # The type first: a list or an object cannot be looked up in a set (and str() of a
        # large one would cost as much as the body).
        if type(role) is not str or role not in ROLES:
            raise BadRequest(
                f"messages[{index}] must be an object whose 'role' is one of "
                f"{', '.join(sorted(ROLES))}.",
                param=f"messages[{index}]",
            )
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest("'stream' must be true or false.", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("'stream_options' must be an object.", param="stream_options")
    # Budgets reserve n x max_tokens: both must be numbers the upstream will honour.
    n = body.get("n")
    if n is not None and (type(n) is not int or not 1 <= n <= MAX_CHOICES):
        raise BadRequest(
            f"'n' (how many choices to generate) must be an integer from 1 to {MAX_CHOICES}, "
            f"not {shown(n)}.",
            param="n",
        )
    for name in ("max_tokens", "max_completion_tokens"):
        limit = body.get(name)
        if limit is not None and (type(limit) is not int or limit < 1):
            raise BadRequest(
                f"'{name}' must be a positive integer, not {shown(limit)}.", param=name
            )


def check_embeddings(body: dict[str, Any]) -> None:
    if "input" not in body:
        raise BadRequest("'input' is required: a string or an array of strings.", param="input")


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
