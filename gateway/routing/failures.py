"""Which kind of failure an attempt's error is, in LiteLLM's words, and what the router's
settings allow for that kind: retries (num_retries, retry_policy) and failures before a
cooldown (allowed_fails, allowed_fails_policy). Resolved once at start."""

from __future__ import annotations

from gateway.core.config import RouterSettings
from gateway.core.errors import (
    CONTENT_POLICY_VIOLATION,
    CONTEXT_WINDOW_EXCEEDED,
    BadRequest,
    GatewayError,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    is_retryable,
)


def failure_kind(error: GatewayError) -> str | None:
    """The LiteLLM exception the failure would be (the prefix of its policy keys:
    `RateLimit` for RateLimitErrorRetries), or None for one no policy key names."""
    status = error.upstream_status
    if error.code == CONTENT_POLICY_VIOLATION:
        return "ContentPolicyViolation"
    if isinstance(error, RateLimited):
        return "RateLimit"
    if isinstance(error, UpstreamTimeout):
        return "Timeout"
    if status == 401:
        return "Authentication"
    if status == 404:
        return "NotFound"
    if isinstance(error, BadRequest):
        return "BadRequest"  # a context window exceeded too, as in LiteLLM
    if status == 503:
        return "ServiceUnavailable"
    if status == 502:
        return "BadGateway"
    if isinstance(error, UpstreamError) and (status is None or status >= 500):
        return "InternalServer"  # a 5xx, a broken connection or a malformed answer
    # A connection refused (LiteLLM's APIConnectionError), a 403, a redirect.
    return None


def is_context_window(error: GatewayError) -> bool:
    return error.code == CONTEXT_WINDOW_EXCEEDED


def is_content_policy(error: GatewayError) -> bool:
    return error.code == CONTENT_POLICY_VIOLATION


class FailurePolicy:
    """How many retries and failures before a cooldown each kind of failure is allowed."""

    def __init__(self, settings: RouterSettings) -> None:
        self.num_retries = settings.num_retries
        self.retries_by_kind: dict[str, int] = {}
        self.default_retries: int | None = None
        if settings.retry_policy is not None:
            self.retries_by_kind, self.default_retries = settings.retry_policy.retries()
        self.allowed_fails = settings.allowed_fails
        policy = settings.allowed_fails_policy
        # With a policy, each kind is counted apart (LiteLLM: "1000 AuthenticationErrors
        # are allowed before cooling down"); without one, all failures count together.
        self.allowed_by_kind = policy.allowed() if policy is not None else None

    def retries(self, error: GatewayError) -> int:
        """Retries the router may make after this failure, counting those already made.

        A caller's bad request (a context window exceeded, a content filter, any 4xx about the
        request) is retried only when retry_policy says so for its kind: by default another
        try fails the same way."""
        kind = failure_kind(error)
        named = self.retries_by_kind.get(kind) if kind is not None else None
        if named is not None:
            return named
        if not is_retryable(error):
            return 0
        if self.default_retries is not None:
            return self.default_retries
        return self.num_retries

    def allowed(self, kind: str | None) -> int:
        """Failures of this kind a deployment may have before it cools down."""
        if self.allowed_by_kind is not None and kind is not None:
            return self.allowed_by_kind.get(kind, self.allowed_fails)
        return self.allowed_fails

    def counter(self, kind: str | None) -> str | None:
        """Which count a failure of this kind adds to."""
        return kind if self.allowed_by_kind is not None else None
