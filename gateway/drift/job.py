"""The drift job: every `drift.interval` seconds, the samples beyond `drift.retention` deleted
and each sampled subject compared, in a thread of its own (embeddings and statistics never
run on the event loop).

With several workers or replicas each runs the job; a subject another process compared
within the last half interval is not compared again (its report is read instead), and the
verdict's compare-and-set in the store gives each change one webhook call. Every process's
gauges show every subject's latest report.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from gateway.core.background import stop_task
from gateway.core.drift_config import DriftRetention
from gateway.drift.gauges import DriftGauges
from gateway.drift.store import DriftStore

if TYPE_CHECKING:
    from gateway.drift.monitor import DriftMonitor

log = logging.getLogger("gateway.drift")


class DriftJob:
    def __init__(
        self,
        monitor: Callable[[], DriftMonitor],
        store: DriftStore,
        gauges: DriftGauges,
        interval: float,
        retention: DriftRetention | None = None,
    ) -> None:
        self.monitor = monitor  # built on the first run (it imports the statistics)
        self.store = store
        self.gauges = gauges
        self.interval = interval
        self.retention = retention or DriftRetention()
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="drift")
        self.runs = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="drift-job")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:  # the gauges show the stored reports from the start
            await loop.run_in_executor(self._executor, self.load)
        except Exception:
            log.exception("drift: reading the latest reports failed")
        if self.interval <= 0:
            return
        while True:
            await asyncio.sleep(self.interval)
            try:
                await loop.run_in_executor(self._executor, self.run_once)
            except Exception:  # the next run tries again
                log.exception("drift: the drift job failed")

    def load(self) -> None:
        self.gauges.update(self.store.latest_runs())

    def run_once(self) -> None:
        try:
            self.prune()
        except Exception:  # the comparisons go on; the next run deletes what this one did not
            log.exception("drift: deleting old samples failed")
        monitor = self.monitor()
        latest = {r["subject"]: r for r in self.store.latest_runs()}
        fresh = datetime.now(UTC) - timedelta(seconds=self.interval / 2)
        for subject in monitor.subjects():
            recent = latest.get(subject.id)
            if recent is not None and datetime.fromisoformat(recent["computed_at"]) > fresh:
                continue  # another process compared it just now
            try:
                evaluation = monitor.evaluate(subject)
            except Exception:
                log.exception("drift: comparing %s failed", subject.id)
                continue
            latest[subject.id] = evaluation.report.model_dump(mode="json")
        self.gauges.update(list(latest.values()))
        self.runs += 1

    def prune(self) -> None:
        """Retention, before the comparisons (each replica's job may do it: deleting what
        another just deleted is nothing)."""
        age = self.retention.age_seconds()
        older_than = datetime.now(UTC) - timedelta(seconds=age) if age is not None else None
        pruned = self.store.prune(self.retention.rows, older_than)
        if pruned.samples or pruned.runs:
            log.info("drift: retention deleted %d samples, %d reports", pruned.samples, pruned.runs)

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None
        self._executor.shutdown(wait=False, cancel_futures=True)
