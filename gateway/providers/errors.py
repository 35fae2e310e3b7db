"""Translate what upstreams and HTTP libraries report into gateway errors (the one boundary)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import orjson

from gateway.core.errors import (
    CONTENT_POLICY_VIOLATION,
    CONTEXT_WINDOW_EXCEEDED,
    BadRequest,
    GatewayError,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.providers.base import Deployment
from gateway.transport.http_client import (
    BodyIncomplete,
    ConnectFailed,
    HTTPClientError,
    ProxyError,
    ResponseTooLarge,
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


def upstream_message(body: bytes) -> tuple[str, str | None]:
    """The upstream's own error text, and the parameter it names if any."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", "replace").strip() or "no body", None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            param = error.get("param")
            return str(error["message"]), param if isinstance(param, str) else None
        if isinstance(error, str):
            return error, None
        if data.get("message"):
            return str(data["message"]), None
    return body[:200].decode("utf-8", "replace"), None


def upstream_code(body: bytes) -> str | None:
    """The `error.code` of an OpenAI-shaped error body, if any."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


# What providers say when a prompt is longer than the model takes, or their content filter
# refused it (LiteLLM's ContextWindowExceededError and ContentPolicyViolationError read the
# same signs), lower-cased.
_CONTEXT_CODES = frozenset({CONTEXT_WINDOW_EXCEEDED, "context_window_exceeded"})
_CONTEXT_WORDS = (
    "maximum context length",
    "context length exceeded",
    "context_length_exceeded",
    "exceeds the context window",
    "context window exceeded",
    "prompt is too long",
    "input is too long",
)
_POLICY_CODES = frozenset({CONTENT_POLICY_VIOLATION, "content_filter", "content_policy"})
_POLICY_WORDS = ("content management policy", "content_policy_violation", "safety system")


def refusal_code(code: str | None, text: str) -> str | None:
    """CONTEXT_WINDOW_EXCEEDED or CONTENT_POLICY_VIOLATION for an upstream 400 that is one."""
    lowered = text.lower()
    if code in _CONTEXT_CODES or any(word in lowered for word in _CONTEXT_WORDS):
        return CONTEXT_WINDOW_EXCEEDED
    if code in _POLICY_CODES or any(word in lowered for word in _POLICY_WORDS):
        return CONTENT_POLICY_VIOLATION
    return None


def where(deployment: Deployment) -> str:
    """The deployment, as the operator's log names it (never the caller's message)."""
    return f"deployment {deployment.id} ({deployment.model})"


def status_error(
    status: int, headers: Mapping[str, str], body: bytes, deployment: Deployment
) -> GatewayError:
    """The caller's message names the alias; the upstream's own words are passed on only for
    a 4xx about the caller's request. Everything else goes to `detail`, for the log."""
    text, param = upstream_message(body)
    model = repr(deployment.alias)
    detail = f"{where(deployment)} answered {status}: {text}"
    if status < 400:
        # Redirects are not followed: re-sending a prompt (and credentials) to another URL
        # should be the operator's decision, made once in api_base, not ours on every call.
        location = headers.get("location", "an unnamed location")
        return UpstreamError(
            f"the upstream of model {model} answered with a redirect; tell the operator",
            detail=f"{detail}; redirected to {location}: set api_base to the final URL",
            upstream_status=status,
        )
    if status == 429 and upstream_code(body) == "insufficient_quota":
        # The operator's account is out of credit: another deployment may still answer (the
        # router moves on), but a client retrying the same call cannot help.
        return RateLimited(
            f"the gateway's account for model {model} has no quota left; tell the operator",
            retryable=False,
            detail=detail,
            code="insufficient_quota",
            upstream_status=status,
        )
    if status == 429:
        return RateLimited(
            f"the upstream of model {model} is rate limiting the gateway; retry later",
            retry_after=parse_retry_after(headers),
            detail=detail,
            upstream_status=status,
        )
    if status in (401, 403):
        # The gateway's own upstream credentials are wrong: not the caller's fault, and the
        # upstream's words about them (account, organisation, key prefix) are not theirs.
        return UpstreamError(
            f"the gateway's credentials for model {model} were rejected; tell the operator",
            detail=detail,
            upstream_status=status,
        )
    if status == 404:
        return UpstreamError(
            f"the upstream of model {model} does not serve it; tell the operator",
            detail=detail,
            upstream_status=status,
        )
    if status == 408:
        return UpstreamTimeout(
            f"the upstream of model {model} timed out", detail=detail, upstream_status=status
        )
    if status == 503:
        return UpstreamUnavailable(
            f"the upstream of model {model} is unavailable (503); retry later",
            detail=detail,
            upstream_status=status,
        )
    if status >= 500:
        return UpstreamError(
            f"the upstream of model {model} failed (error {status})",
            detail=detail,
            upstream_status=status,
        )
    return BadRequest(
        f"upstream refused the request for model {model} ({status}): {text}",
        param=param,
        code=refusal_code(upstream_code(body), text),
        detail=detail,
        upstream_status=status,
    )


@contextmanager
def translate_http_errors(deployment: Deployment) -> Iterator[None]:
    model = repr(deployment.alias)
    try:
        yield
    except GatewayError:
        raise
    except TimeoutError:
        raise UpstreamTimeout(
            f"the upstream of model {model} did not answer in time",
            detail=f"{where(deployment)} timed out",
        ) from None
    except ConnectFailed as exc:
        raise UpstreamUnavailable(
            f"cannot connect to the upstream of model {model}",
            detail=f"cannot connect to {where(deployment)}: {exc.os_error}",
        ) from None
    except ProxyError as exc:
        raise UpstreamUnavailable(
            f"cannot reach the upstream of model {model} through the forward proxy",
            detail=f"{where(deployment)}: {exc}",
        ) from None
    except BodyIncomplete:
        raise UpstreamError(
            f"the connection to the upstream of model {model} broke mid-answer",
            detail=f"{where(deployment)}: connection broke mid-answer",
        ) from None
    except ResponseTooLarge as exc:
        raise UpstreamError(
            f"the upstream of model {model} answered with more than the gateway accepts "
            f"(gateway.max_response_bytes)",
            detail=f"{where(deployment)}: {exc}",
        ) from None
    except ServerDisconnected:
        raise UpstreamError(
            f"the upstream of model {model} closed the connection",
            detail=f"{where(deployment)} closed the connection",
        ) from None
    except HTTPClientError as exc:
        raise UpstreamError(
            f"transport error with the upstream of model {model}",
            detail=f"{where(deployment)}: {type(exc).__name__}: {exc}",
        ) from None
