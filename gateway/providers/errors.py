"""Translate what upstreams and HTTP libraries report into gateway errors (the one boundary)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import orjson

from gateway.errors import (
    BadRequest,
    GatewayError,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.providers.base import Deployment
from gateway.providers.http_client import (
    BodyIncomplete,
    ConnectFailed,
    HTTPClientError,
    ServerDisconnected,
)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue  # an HTTP date: rare from LLM APIs; fall back to our own backoff
    return None


def upstream_message(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", "replace").strip() or "no body"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if data.get("message"):
            return str(data["message"])
    return body[:200].decode("utf-8", "replace")


def status_error(
    status: int, headers: Mapping[str, str], body: bytes, deployment: Deployment
) -> GatewayError:
    detail = upstream_message(body)
    where = f"deployment {deployment.id} ({deployment.model})"
    if status < 400:
        # Redirects are not followed: re-sending a prompt (and credentials) to another URL
        # should be the operator's decision, made once in api_base, not ours on every call.
        location = headers.get("location", "an unnamed location")
        return UpstreamError(
            f"upstream redirected ({status}) to {location} on {where}; "
            "set api_base to the final URL"
        )
    if status == 429:
        return RateLimited(
            f"upstream rate limit on {where}: {detail}", retry_after=parse_retry_after(headers)
        )
    if status in (401, 403):
        # The gateway's own upstream credentials are wrong: not the caller's fault.
        return UpstreamError(f"upstream rejected the gateway's credentials for {where}: {detail}")
    if status == 408:
        return UpstreamTimeout(f"upstream timed out on {where}: {detail}")
    if status == 503:
        return UpstreamUnavailable(f"upstream unavailable on {where}: {detail}")
    if status >= 500:
        return UpstreamError(f"upstream error {status} on {where}: {detail}")
    return BadRequest(f"upstream refused the request ({status}) on {where}: {detail}")


@contextmanager
def translate_http_errors(deployment: Deployment) -> Iterator[None]:
    where = f"deployment {deployment.id} ({deployment.model})"
    try:
        yield
    except GatewayError:
        raise
    except TimeoutError:
        raise UpstreamTimeout(f"upstream did not answer in time on {where}") from None
    except ConnectFailed as exc:
        raise UpstreamUnavailable(f"cannot connect to {where}: {exc.os_error}") from None
    except BodyIncomplete:
        raise UpstreamError(f"upstream connection broke mid-answer on {where}") from None
    except ServerDisconnected:
        raise UpstreamError(f"upstream closed the connection on {where}") from None
    except HTTPClientError as exc:
        raise UpstreamError(f"upstream transport error on {where}: {exc}") from None
