"""Where every finished call goes, whatever brought it in: one request-log row, its metrics
and, with tracing on, its span."""

from __future__ import annotations

from typing import Any

from gateway.observability.metrics import Metrics
from gateway.observability.request_log import RequestLogWriter
from gateway.observability.traces import AttemptSpan, Tracing


class CallLog:
    def __init__(
        self, request_log: RequestLogWriter, metrics: Metrics, tracing: Tracing | None
    ) -> None:
        self.request_log = request_log
        self.metrics = metrics
        self.tracing = tracing

    def record(
        self,
        row: dict[str, Any],
        traceparent: bytes | None,
        attempts: list[AttemptSpan] | None = None,
    ) -> None:
        self.request_log.record(row)
        self.metrics.record(row)
        if self.tracing is not None:
            self.tracing.record(row, traceparent, attempts)
