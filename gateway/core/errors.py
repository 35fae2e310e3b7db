"""The gateway's error tree and its one rendering: OpenAI-style error JSON.

Every failure the gateway reports, whatever raised it underneath, becomes one of these
before it leaves its module boundary, so handlers and clients see a single vocabulary.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from starlette.responses import Response


class GatewayError(Exception):
    """`message` is for the caller; `detail`, for the operator's log, may name what callers
    must not see (deployment ids, upstream model names and addresses, library errors)."""

    status = 500
    type = "server_error"
    code: str | None = None
    # The HTTP status the upstream answered with, when the failure was its answer: the
    # router's retry_policy and allowed_fails_policy tell a 401 from a 404 or a 502 by it.
    upstream_status: int | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        detail: str | None = None,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.param = param
        if code is not None:
            self.code = code
        if upstream_status is not None:
            self.upstream_status = upstream_status
        self.headers = dict(headers) if headers else {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def json_bytes(self) -> bytes:
        return orjson.dumps(self.body())


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


# OpenAI's codes for the two refusals a fallback can help with: the prompt does not fit the
# model's context window (a larger model may take it), or the provider's content filter
# refused it (another provider may not). Other 400s are the caller's and end the call.
CONTEXT_WINDOW_EXCEEDED = "context_length_exceeded"
CONTENT_POLICY_VIOLATION = "content_policy_violation"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class ModelNotConfigured(GatewayError):
    """The config names the model, but none of its deployments loaded (a variable they name
    is not set): the operator's to fix, so clients are told not to retry."""

    status = 503
    type = "server_error"
    code = "model_not_configured"

    def __init__(self, message: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.headers.setdefault("x-should-retry", "false")


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


def retry_headers(retryable: bool | None, retry_after: float | None = None) -> dict[str, str]:
    """What tells the official OpenAI SDK whether to retry and when: it obeys
    `x-should-retry` over its own rule (retry every 429 and 5xx, twice by default), and waits
    `retry-after-ms`, else `retry-after`, when given (up to two minutes)."""
    headers: dict[str, str] = {}
    if retryable is not None:
        headers["x-should-retry"] = "true" if retryable else "false"
    if retry_after is not None and retryable is not False:
        # Rounded up: a client coming back a fraction early would be refused again.
        headers["retry-after"] = str(max(1, math.ceil(retry_after)))
        headers["retry-after-ms"] = str(max(1, math.ceil(retry_after * 1000)))
    return headers


class RateLimited(GatewayError):
    """The upstream (or a limit of ours) said 429; retry_after is in seconds when known.

    retryable: whether a retry can succeed; None when unknown (the client decides). A known
    retry_after makes it True: the room will be there by then.
    """

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        retryable: bool | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        if retry_after is not None and retryable is None:
            retryable = True
        for name, value in retry_headers(retryable, retry_after).items():
            self.headers.setdefault(name, value)


class DeploymentBusy(RateLimited):
    """A deployment's own configured rpm/tpm has no room for the call: another deployment may
    take it, but this one is healthy, so it never counts toward a cooldown."""


class UpstreamError(GatewayError):
    """The upstream answered with a failure or something unusable."""

    status = 502
    type = "upstream_error"
    code = "bad_gateway"


class UpstreamUnavailable(GatewayError):
    """No deployment could be reached (connection refused, all cooling down)."""

    status = 503
    type = "upstream_error"
    code = "service_unavailable"


class MeterUnavailable(GatewayError):
    """The store that keeps budgets and rate limits exact (Redis) cannot be reached, and the
    operator chose to refuse calls rather than let them through unmetered. Not an upstream
    fault: no deployment cools down for it and no other deployment would fare better."""

    status = 503
    type = "server_error"
    code = "meter_unavailable"


class DatabaseUnavailable(GatewayError):
    """The gateway's own database did not answer (unreachable, or not within its timeout)."""

    status = 503
    type = "server_error"
    code = "database_unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


class ConfigError(Exception):
    """A user-authored file is invalid; the message names the file and the key path."""


# Statuses whose failures are worth another attempt (another deployment, later, or both).
RETRYABLE: tuple[type[GatewayError], ...] = (
    RateLimited,
    UpstreamError,
    UpstreamUnavailable,
    UpstreamTimeout,
)


def is_retryable(error: GatewayError) -> bool:
    """Whether the failure is the upstream's (429, 5xx, timeouts, connection errors), not the
    caller's: only these say anything about a deployment's health."""
    return isinstance(error, RETRYABLE)


def error_response(error: GatewayError) -> Response:
    return Response(
        error.json_bytes(),
        status_code=error.status,
        media_type="application/json",
        headers=error.headers,
    )
