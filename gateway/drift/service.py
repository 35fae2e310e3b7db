"""Drift monitoring's parts, built from the `drift:` section (state.py builds them for a
gateway; tests build them the same way).

The statistics (numpy, scipy, scikit-learn) are imported when the monitor is first needed,
by the job's first run or a report, not when the gateway starts: the sampler, the store, the
gauges and the routes need none of them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from gateway.core.drift_config import DriftSection
from gateway.drift.gauges import DriftGauges
from gateway.drift.job import DriftJob
from gateway.drift.sampler import Sampler
from gateway.drift.store import DriftStore
from gateway.drift.webhook import WebhookSender
from gateway.registry.store import RegistryStore

if TYPE_CHECKING:
    from gateway.drift.monitor import DriftMonitor, Embed


@dataclass
class Drift:
    section: DriftSection
    store: DriftStore
    registry: RegistryStore | None
    embed: Embed | None
    webhook: WebhookSender | None
    sampler: Sampler
    gauges: DriftGauges
    job: DriftJob

    @classmethod
    def build(
        cls,
        section: DriftSection,
        engine: Engine,
        registry: RegistryStore | None,
        embed: Embed | None,
    ) -> Drift:
        """Raises ConfigError when the webhook's secret names an unset variable."""
        store = DriftStore(engine)
        webhook = WebhookSender(section.webhook) if section.webhook is not None else None
        gauges = DriftGauges()
        parts: Drift
        job = DriftJob(lambda: parts.monitor, store, gauges, section.interval, section.retention)
        parts = cls(section, store, registry, embed, webhook, Sampler(section, store), gauges, job)
        return parts

    @functools.cached_property
    def monitor(self) -> DriftMonitor:
        from gateway.drift.monitor import DriftMonitor

        return DriftMonitor(self.section, self.store, self.registry, self.embed, self.webhook)

    async def start(self) -> None:
        self.sampler.start()
        self.job.start()

    async def close(self) -> None:
        await self.job.close()
        await self.sampler.close()  # the samples drawn so far are stored
