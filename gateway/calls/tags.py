"""The tags a request carries for tag-based routing, read where LiteLLM's proxy reads them:
`metadata.tags` in the body, then the body's own `tags` or, without those, the
`x-litellm-tags` header (comma-separated). Read only when `enable_tag_filtering` is on; they
are routing metadata then, so the body sent upstream carries neither.
"""

from __future__ import annotations

from typing import Any

from gateway.calls.chat_body import shown
from gateway.core.errors import BadRequest

HEADER = "x-litellm-tags"


def _tag_list(value: Any, param: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise BadRequest(f"'{param}' must be an array of strings, not {shown(value)}.", param=param)
    return value


def take_tags(body: dict[str, Any], header: str | None) -> tuple[dict[str, Any], list[str]]:
    """The body without its tags, and the tags (each once, in the order found)."""
    tags: list[str] = []
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and "tags" in metadata:
        tags += _tag_list(metadata["tags"], "metadata.tags")
        body = dict(body)
        rest = {k: v for k, v in metadata.items() if k != "tags"}
        if rest:
            body["metadata"] = rest
        else:
            del body["metadata"]
    if body.get("tags") is not None:
        tags += _tag_list(body["tags"], "tags")
    elif header:
        tags += [tag.strip() for tag in header.split(",") if tag.strip()]
    if "tags" in body:
        body = {k: v for k, v in body.items() if k != "tags"}
    return body, list(dict.fromkeys(tags))
