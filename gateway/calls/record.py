"""One record per call: begun where the call enters (the HTTP edge, later a batch line or a
broker message), filled in by the pipeline, and logged once when the answer has ended."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.drift.signals import Sample
from gateway.identity.auth import Caller
from gateway.observability.traces import AttemptSpan
from gateway.providers import Deployment, Usage


def trace_id(traceparent: bytes | None) -> str:
    """The caller's W3C trace id (`traceparent: 00-<32 hex>-<16 hex>-<flags>`), so the row
    joins the caller's trace; a new random one when there is none or it is malformed."""
    if traceparent is not None and len(traceparent) >= 55 and traceparent[2:3] == b"-":
        candidate = traceparent[3:35].decode("ascii", "replace").lower()
        if candidate != "0" * 32 and all(c in "0123456789abcdef" for c in candidate):
            return candidate
    return os.urandom(16).hex()


@dataclass(slots=True)
class CallRecord:
    request_id: str
    route: str
    started: float  # perf_counter
    started_at: datetime
    key_id: str | None = None
    team: str | None = None
    alias: str | None = None
    deployment: Deployment | None = None
    # The deployment whose stream broke and was continued on `deployment` (stream recovery).
    recovered_from: Deployment | None = None
    attempts: int = 0
    upstream_s: float | None = None
    ttft_s: float | None = None
    usage: Usage | None = None
    cost: float = 0.0
    estimated: bool = False
    stream: bool = False
    prompt_name: str | None = None
    prompt_version: str | None = None
    price_version: str | None = None
    error_type: str | None = None
    request_body: str | None = None
    response_body: str | None = None
    trace_id: str | None = None
    traceparent: bytes | None = None  # the caller's, so the call's span joins its trace
    attempt_log: list[AttemptSpan] | None = None  # kept when tracing is on (a span per attempt)
    sample: Sample | None = None  # when drift monitoring drew this call (gateway/drift/)
    model_version: str | None = None  # the registry version that answered, NAME@N
    predictions: int = 0  # rows a classic model predicted
    feature_violations: dict[str, int] | None = None  # values breaking its expectations

    @classmethod
    def begin(cls, request_id: str, route: str, traceparent: bytes | None) -> CallRecord:
        call = cls(request_id, route, time.perf_counter(), datetime.now(UTC))
        call.trace_id = trace_id(traceparent)
        call.traceparent = traceparent
        return call

    def identify(self, caller: Caller) -> None:
        self.key_id = caller.key_id
        key, team = caller.key, caller.team
        self.team = team.id if team is not None else (key.team if key is not None else None)

    def row(self, status: int) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.started
        usage = self.usage or Usage()
        deployment = self.deployment
        return {
            "id": self.request_id,
            "created_at": self.started_at,
            "finished_at": self.started_at + timedelta(seconds=elapsed),
            "key_id": self.key_id,
            "team": self.team,
            "route": self.route,
            "alias": self.alias,
            "deployment": deployment.id if deployment else None,
            "provider": deployment.provider if deployment else None,
            "recovered": self.recovered_from is not None,
            "recovered_from": self.recovered_from.id if self.recovered_from else None,
            "prompt_name": self.prompt_name,
            "prompt_version": self.prompt_version,
            "status": status,
            "error_type": self.error_type,
            "stream": self.stream,
            "attempts": self.attempts,
            "latency_ms": elapsed * 1000,
            "upstream_ms": self.upstream_s * 1000 if self.upstream_s is not None else None,
            "overhead_ms": (elapsed - self.upstream_s) * 1000
            if self.upstream_s is not None
            else None,
            "ttft_ms": self.ttft_s * 1000 if self.ttft_s is not None else None,
            "input_tokens": usage.prompt_tokens,
            "output_tokens": usage.completion_tokens,
            "cached_tokens": usage.cached_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "cost_usd": self.cost,
            "estimated": self.estimated,
            "price_version": self.price_version,
            "trace_id": self.trace_id,
            "request_body": self.request_body,
            "response_body": self.response_body,
            "model_version": self.model_version,
            "predictions": self.predictions,
            "feature_violations": self.feature_violations,
        }
