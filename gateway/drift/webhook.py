"""The drift webhook: one JSON POST per change of a subject's verdict, usable as a retraining
trigger.

Signed like GitHub's: `X-Gateway-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` under
the shared secret; the body carries a delivery `id` (the same on every retry, so a receiver
can drop repeats) and the time. Retried on connection failures, timeouts, 429 and 5xx, with
backoff (0.5 s, 1 s, 2 s, ...); any other answer ends the delivery. Sent from the drift job's
thread (or the CLI), never from the request path. httpx (imported when a call is sent) and its
errors stay in this module.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from gateway.core.drift_config import DriftWebhook
from gateway.core.errors import ConfigError

log = logging.getLogger("gateway.drift")

ENV_PREFIX = "os.environ/"
SIGNATURE_HEADER = "X-Gateway-Signature-256"
EVENT = "drift.state_changed"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def resolve_secret(value: str | None) -> str | None:
    """The secret, read from the environment when written `os.environ/NAME`."""
    if value is None or not value.startswith(ENV_PREFIX):
        return value
    name = value[len(ENV_PREFIX) :]
    found = os.environ.get(name)
    if not found:
        raise ConfigError(
            f"drift.webhook.secret: environment variable {name} is not set (export it, or "
            f"remove the secret)"
        )
    return found


class WebhookSender:
    def __init__(
        self, config: DriftWebhook, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.url = config.url
        self.secret = resolve_secret(config.secret)
        self.retries = config.retries
        self.timeout = config.timeout
        self._sleep = sleep
        self.sent = 0
        self.failed = 0

    def event(self, report: dict[str, Any], previous: str | None) -> dict[str, Any]:
        return {
            "id": uuid.uuid4().hex,
            "event": EVENT,
            "subject": report["subject"],
            "state": report["state"],
            "previous": previous,
            "at": report["computed_at"],
            "drift_share": report["drift_share"],
            "drifted_columns": report["drifted_columns"],
            "report": report,
        }

    def send(self, event: dict[str, Any]) -> bool:
        """Delivers the event; False when every try failed (logged)."""
        import httpx  # here: the gateway starts without it

        body = orjson.dumps(event)
        # Index health sends its own events through this sender (gateway/indexes/monitor.py).
        headers = {"Content-Type": "application/json", "X-Gateway-Event": event.get("event", EVENT)}
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = signature(self.secret, body)
        problem = ""
        with httpx.Client(timeout=self.timeout) as client:
            for attempt in range(self.retries + 1):
                if attempt:
                    self._sleep(0.5 * 2 ** (attempt - 1))
                try:
                    answer = client.post(self.url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                    continue
                if answer.status_code < 300:
                    self.sent += 1
                    return True
                problem = f"HTTP {answer.status_code}"
                if answer.status_code != 429 and answer.status_code < 500:
                    break
        self.failed += 1
        log.error(
            "webhook %s for %s (%s) not delivered to %s: %s",
            event.get("event", EVENT),
            event["subject"],
            event["state"],
            self.url,
            problem,
        )
        return False
