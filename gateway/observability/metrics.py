"""Prometheus metrics at `/metrics`, counted from the request-log rows of finished calls.

The request path only appends the row it already built to a queue; a background task brings
the counters and histograms up to date from it every 100 ms, and so does every scrape, so a
call pays for one `deque.append`. With several worker processes (`gateway serve --workers N`)
each worker writes its values to files in `PROMETHEUS_MULTIPROC_DIR`, which `serve` sets up,
and a scrape of any worker sums them all (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import defaultdict, deque
from collections.abc import Collection, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from gateway.core.background import stop_task

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
DRAIN_S = 0.1
DRAIN_CHUNK = 32  # rows counted between two turns of the event loop (~0.1 ms)
MAX_QUEUED = 100_000  # rows waiting for the next drain; beyond this the oldest are dropped
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Model calls take from milliseconds to minutes; the gateway's own share is sub-millisecond.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)


class Metrics:
    def __init__(self, models: Collection[str] = ()) -> None:
        # A model label is one of the configured aliases, else "unknown": a caller asking
        # for made-up model names must not mint a new series each time.
        self._models = frozenset(models)
        self.registry = CollectorRegistry(auto_describe=True)
        self._multiprocess = bool(os.environ.get(MULTIPROCESS_DIR))
        if self._multiprocess:
            # This registry only reads the workers' files; the metrics below write to them.
            self._scrape = CollectorRegistry()
            MultiProcessCollector(self._scrape)  # type: ignore[no-untyped-call]
        registry = None if self._multiprocess else self.registry
        self.requests = Counter(
            "gateway_requests",
            "Metered calls (chat, embeddings) by route, model alias and HTTP status.",
            ["route", "model", "status"],
            registry=registry,
        )
        self.errors = Counter(
            "gateway_errors",
            "Calls that failed, by route, model alias and error type.",
            ["route", "model", "error_type"],
            registry=registry,
        )
        self.duration = Histogram(
            "gateway_request_duration_seconds",
            "Time from the request's arrival to the end of its response (streams included).",
            ["route", "model"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.overhead = Histogram(
            "gateway_overhead_seconds",
            "Time the gateway added to a call: its duration minus the upstream's.",
            ["route"],
            buckets=OVERHEAD_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "gateway_time_to_first_token_seconds",
            "Time to a stream's first token, by model alias.",
            ["model"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "gateway_tokens",
            "Tokens by model alias, team, key id and kind (input, output, cached, reasoning).",
            ["model", "team", "key", "kind"],
            registry=registry,
        )
        self.cost = Counter(
            "gateway_cost_usd",
            "Spend in US dollars by model alias, team and key id.",
            ["model", "team", "key"],
            registry=registry,
        )
        self.predictions = Counter(
            "gateway_predictions",
            "Rows predicted by classic models (/v2 infer), by model alias, team and key id.",
            ["model", "team", "key"],
            registry=registry,
        )
        self.feature_violations = Counter(
            "gateway_feature_violations",
            "Values of classic-model calls outside their version's expectations (range, "
            "categories, null rate), by model alias and feature; refused calls included.",
            ["model", "feature"],
            registry=registry,
        )
        self.retries = Counter(
            "gateway_upstream_retries",
            "Upstream attempts beyond the first (retries and fallbacks), by model alias.",
            ["model"],
            registry=registry,
        )
        self.prompt_calls = Counter(
            "gateway_prompt_requests",
            "Calls that named a prompt, by prompt, version and HTTP status.",
            ["prompt", "version", "status"],
            registry=registry,
        )
        self.index = IndexGauges(registry)
        self._queue: deque[dict[str, Any]] = deque(maxlen=MAX_QUEUED)
        self._children: dict[tuple[Histogram, tuple[str, ...]], Histogram] = {}
        self._task: asyncio.Task[None] | None = None

    def record(self, row: dict[str, Any]) -> None:
        self._queue.append(row)

    def add_collector(self, collector: Collector) -> None:
        """Series computed at scrape time from the collector's own state (drift gauges)."""
        (self._scrape if self._multiprocess else self.registry).register(collector)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="metrics")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(DRAIN_S)
            pending = len(self._queue)
            while pending > 0:  # in chunks, so calls in flight wait for none of it
                self.drain(min(pending, DRAIN_CHUNK))
                pending -= DRAIN_CHUNK
                await asyncio.sleep(0)

    def drain(self, limit: int | None = None) -> None:
        """Counts the rows queued so far (at most `limit`): counters summed per label set
        first, so a batch costs one update per series rather than one per call."""
        queue = self._queue
        sums: dict[tuple[Counter, tuple[str, ...]], float] = defaultdict(float)
        children = self._children
        for _ in range(len(queue) if limit is None else min(limit, len(queue))):
            row = queue.popleft()
            route, status = row["route"], str(row["status"])
            model = row["alias"] if row["alias"] in self._models else "unknown"
            team, key = row["team"] or "", row["key_id"] or ""
            sums[self.requests, (route, model, status)] += 1
            error = row["error_type"] or (status if row["status"] >= 400 else None)
            if error is not None:
                sums[self.errors, (route, model, error)] += 1
            for kind in ("input", "output", "cached", "reasoning"):
                count = row[f"{kind}_tokens"]
                if count:
                    sums[self.tokens, (model, team, key, kind)] += count
            if row["cost_usd"]:
                sums[self.cost, (model, team, key)] += row["cost_usd"]
            if row.get("predictions"):
                sums[self.predictions, (model, team, key)] += row["predictions"]
            violations = row.get("feature_violations")
            if violations:
                for feature, count in violations.items():
                    sums[self.feature_violations, (model, feature)] += count
            if row["attempts"] > 1:
                sums[self.retries, (model,)] += row["attempts"] - 1
            if row["prompt_name"] is not None:
                prompt = (row["prompt_name"], row["prompt_version"], status)
                sums[self.prompt_calls, prompt] += 1
            timings: tuple[tuple[Histogram, tuple[str, ...], float | None], ...] = (
                (self.duration, (route, model), row["latency_ms"]),
                (self.overhead, (route,), row["overhead_ms"]),
                (self.ttft, (model,), row["ttft_ms"]),
            )
            for histogram, labels, ms in timings:
                if ms is not None:
                    child = children.get((histogram, labels))
                    if child is None:
                        child = children[histogram, labels] = histogram.labels(*labels)
                    child.observe(ms / 1000)
        for (counter, series), amount in sums.items():
            counter.labels(*series).inc(amount)

    def exposition(self) -> bytes:
        """The Prometheus text format, up to date with every call finished so far here."""
        self.drain()
        return generate_latest(self._scrape if self._multiprocess else self.registry)

    async def aclose(self) -> None:
        await stop_task(self._task)
        self._task = None
        self.drain()


# Index health as numbers: ok 0, warn 1, critical 2, not available -1.
STATUS_VALUES = {"ok": 0, "warn": 1, "critical": 2, "not available": -1}


class IndexGauges:
    """The latest health check of each configured vector collection (gateway/indexes/)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        # With several workers the one that ran the latest check has the latest value.
        self.status = Gauge(
            "gateway_index_status",
            "A collection's health: 0 ok, 1 warn, 2 critical, -1 not available.",
            ["collection"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.check_status = Gauge(
            "gateway_index_check_status",
            "One check of a collection: 0 ok, 1 warn, 2 critical, -1 not available.",
            ["collection", "check"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.check_value = Gauge(
            "gateway_index_check_value",
            "What a check measured (recall, p95 ms, shares, days: its unit in the API answer).",
            ["collection", "check"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.seconds = Gauge(
            "gateway_index_check_seconds",
            "How long the collection's latest full check took.",
            ["collection"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.checked = Gauge(
            "gateway_index_checked_timestamp_seconds",
            "When the collection was last checked (Unix time).",
            ["collection"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )

    def record(
        self,
        collection: str,
        status: str,
        checks: Sequence[tuple[str, str, float | None]],
        seconds: float,
        checked_at: float,
    ) -> None:
        self.status.labels(collection).set(STATUS_VALUES[status])
        for name, check_status, value in checks:
            self.check_status.labels(collection, name).set(STATUS_VALUES[check_status])
            if value is not None:
                self.check_value.labels(collection, name).set(value)
            else:  # not measured this time: no stale value left behind
                with contextlib.suppress(KeyError):
                    self.check_value.remove(collection, name)
        self.seconds.labels(collection).set(seconds)
        self.checked.labels(collection).set(checked_at)
