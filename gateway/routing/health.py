"""What the router knows of one deployment, in this process: cooldown, failures counted
toward it, load, latency and this minute's usage."""

from __future__ import annotations

import logging
import math

from gateway.core.config import RouterSettings
from gateway.core.errors import GatewayError, RateLimited
from gateway.providers import Deployment
from gateway.routing.failures import FailurePolicy, failure_kind

log = logging.getLogger("gateway.routing")
LOG_EVERY_S = 1.0


class DeploymentState:
    __slots__ = (
        "context_window",
        "cooldown_until",
        "deployment",
        "fails",
        "in_flight",
        "last_fail",
        "latency",
        "logged_at",
        "minute",
        "minute_requests",
        "minute_tokens",
        "price",
        "unlogged",
    )

    def __init__(
        self,
        deployment: Deployment,
        price: float = math.inf,
        context_window: int | None = None,
    ) -> None:
        self.deployment = deployment
        self.price = price  # per input and output token together; inf when unknown
        self.context_window = context_window  # the most prompt tokens it takes, when known
        self.cooldown_until = 0.0
        # Failures counted toward a cooldown (by kind with an allowed_fails_policy, else all
        # under None), and when the last one came: a gap of cooldown_time starts afresh.
        self.fails: dict[str | None, int] = {}
        self.last_fail = -math.inf
        self.in_flight = 0
        self.latency = 0.0  # exponentially weighted seconds per successful call
        self.logged_at = -math.inf
        self.unlogged = 0  # failures since the last one logged
        self.minute = 0  # this minute's usage, for usage- and cost-based routing
        self.minute_requests = 0
        self.minute_tokens = 0

    def healthy(self, now: float) -> bool:
        return now >= self.cooldown_until

    def succeeded(self, seconds: float) -> None:
        self.latency = seconds if self.latency == 0.0 else 0.8 * self.latency + 0.2 * seconds

    def failed(
        self, error: GatewayError, settings: RouterSettings, policy: FailurePolicy, now: float
    ) -> None:
        """An upstream fault (see is_retryable); a caller's bad request is never one. Cools
        the deployment down, as LiteLLM does, once its failures exceed allowed_fails."""
        self._log(error, now)
        if settings.disable_cooldowns:
            return
        cooldown = settings.cooldown_time
        if now - self.last_fail > cooldown:
            self.fails.clear()
        self.last_fail = now
        kind = failure_kind(error)
        counter = policy.counter(kind)
        count = self.fails[counter] = self.fails.get(counter, 0) + 1
        if count > policy.allowed(kind) and cooldown > 0:
            self.cooldown_until = max(self.cooldown_until, now + cooldown)
            self.fails.clear()
        retry_after = error.retry_after if isinstance(error, RateLimited) else None
        if retry_after is not None and retry_after > settings.max_retry_wait:
            self.cooldown_until = max(self.cooldown_until, now + retry_after)

    def usage(self, minute: int) -> tuple[int, int]:
        """(tokens, requests) in the given minute."""
        if minute != self.minute:
            self.minute, self.minute_requests, self.minute_tokens = minute, 0, 0
        return self.minute_tokens, self.minute_requests

    def has_room(self, minute: int, prompt_tokens: int) -> bool:
        """Whether this minute's usage leaves room for one more call under its rpm and tpm
        (LiteLLM's usage-based routing skips a deployment that has none)."""
        tokens, requests = self.usage(minute)
        deployment = self.deployment
        if deployment.rpm is not None and requests + 1 > deployment.rpm:
            return False
        return deployment.tpm is None or tokens + prompt_tokens <= deployment.tpm

    def _log(self, error: GatewayError, now: float) -> None:
        # At most one line per deployment per LOG_EVERY_S: an outage must not flood the log.
        if now - self.logged_at < LOG_EVERY_S:
            self.unlogged += 1
            return
        more = f" ({self.unlogged} more failures since the last report)" if self.unlogged else ""
        log.warning("model %r failed: %s%s", self.deployment.alias, detail(error), more)
        self.logged_at, self.unlogged = now, 0


def detail(error: GatewayError) -> str:
    return error.detail or error.message
