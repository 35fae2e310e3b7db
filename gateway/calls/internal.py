"""Calls the gateway makes of itself (index checks embedding golden queries, a search route
embedding its query): through the same pipeline as a client's call, so they are admitted,
routed, priced and logged like any other, under the caller given."""

from __future__ import annotations

import os
from typing import Any

import orjson

from gateway.calls.pipeline import Call, Pipeline
from gateway.calls.record import CallRecord
from gateway.core.errors import GatewayError, UpstreamError
from gateway.identity.auth import Caller

# The request log and metrics name the gateway's own calls by this key id.
CHECKS_CALLER = Caller(key_id="index-checks", is_master=True)


async def embed(
    pipeline: Pipeline, caller: Caller, alias: str, texts: list[str]
) -> list[list[float]]:
    """The embeddings of `texts` by the model alias, in order; a GatewayError when refused
    or when the upstream fails."""
    body: dict[str, Any] = {"model": alias, "input": texts, "encoding_format": "float"}
    record = CallRecord.begin(os.urandom(12).hex(), "embeddings", None)
    call = Call("embeddings", body, len(orjson.dumps(body)), caller, record)
    status = 500
    try:
        await pipeline.admit(call)
        routed = await pipeline.complete(call)
        try:
            data = orjson.loads(routed.value.body)["data"]
            vectors = [item["embedding"] for item in sorted(data, key=lambda d: d["index"])]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise UpstreamError(
                f"model {alias!r} answered embeddings in an unexpected shape",
                detail=f"{type(exc).__name__}: {exc}",
            ) from None
        if len(vectors) != len(texts) or not all(isinstance(v, list) for v in vectors):
            raise UpstreamError(
                f"model {alias!r} answered {len(vectors)} float embeddings for {len(texts)} texts"
            )
        status = 200
        return vectors
    except GatewayError as exc:
        status, record.error_type = exc.status, exc.type
        raise
    finally:
        pipeline.finish(record, status)
