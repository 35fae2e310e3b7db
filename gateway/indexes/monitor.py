"""The configured collections' health, checked in the background and on demand.

A check runs in a worker process (`worker.py`), never on the request path; what it needs from
the gateway (the model's dimension, embedded golden queries) is gathered first through the
gateway's own embeddings path. The latest result of each collection is kept in memory and in
the data dir, so every worker of `gateway serve --workers N` answers with it, while one of
them (the one holding `index-checks.lock`) runs the periodic checks. A collection whose
status changes raises an alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from gateway.core.background import stop_task
from gateway.core.config import GatewayConfig
from gateway.core.errors import NotFound
from gateway.core.index_config import IndexCollection
from gateway.indexes.engine import Place, place_of
from gateway.indexes.models import CheckResult, CollectionHealth

if TYPE_CHECKING:
    from gateway.drift.webhook import WebhookSender

log = logging.getLogger("gateway.indexes")

FIRST_DELAY_S = 30.0  # after start, so a starting gateway's CPU goes to starting
WORKER_TIMEOUT_S = 600.0
HEALTH_FOLDER = "index-health"
LOCK_FILE = "index-checks.lock"
ALERT_EVENT = "index.status_changed"
# The worker imports this very gateway, whatever folder the server started in.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (model alias, texts) -> embeddings, through the gateway's embeddings path.
Embed = Callable[[str, list[str]], Any]


class Alerts(Protocol):
    """Where a change of a collection's status goes (the drift room's signed webhook)."""

    async def send(self, event: dict[str, Any]) -> None: ...


class LogAlerts:
    """Alerts as log lines (always), and through the drift room's webhook when one is set."""

    async def send(self, event: dict[str, Any]) -> None:
        failing = "; ".join(f"{c['name']} {c['status']}: {c['summary']}" for c in event["failing"])
        level = logging.INFO if event["state"] in ("ok", "not available") else logging.WARNING
        log.log(
            level,
            "index %s: %s -> %s%s",
            event["subject"],
            event["previous"],
            event["state"],
            f" ({failing})" if failing else "",
        )


class WebhookAlerts(LogAlerts):
    """The drift room's signed webhook (`drift.webhook`): one POST per change of a
    collection's status, signed and retried as drift's are, sent from a worker thread."""

    def __init__(self, sender: WebhookSender | None) -> None:
        self.sender = sender

    async def send(self, event: dict[str, Any]) -> None:
        await super().send(event)
        if self.sender is not None:
            await asyncio.to_thread(self.sender.send, event)


def alert_event(health: CollectionHealth, previous: str | None) -> dict[str, Any]:
    """Shaped as drift's webhook event: a delivery id, the subject, its state and the one
    before, the time, what is failing, and the whole check."""
    return {
        "id": uuid.uuid4().hex,
        "event": ALERT_EVENT,
        "subject": health.name,
        "state": health.status,
        "previous": previous,
        "at": health.checked_at,
        "failing": [
            c.model_dump(include={"name", "status", "summary", "value"})
            for c in health.checks
            if c.status in ("warn", "critical")
        ],
        "report": health.model_dump(mode="json"),
    }


def failed(collection: IndexCollection, place: Place, problem: str) -> CollectionHealth:
    from gateway.indexes.runner import NAMES

    return CollectionHealth(
        name=collection.name,
        engine="qdrant" if place.url else "qdrant-edge",
        location=place.where,
        model=collection.model,
        status="not available",
        checked_at=datetime.now(UTC).isoformat(),
        seconds=0.0,
        checks=[
            CheckResult(name=name, status="not available", summary=problem, reason=problem)
            for name in NAMES
        ],
    )


class IndexMonitor:
    def __init__(
        self,
        config: GatewayConfig,
        config_dir: Path,
        data_dir: Path,
        qdrant_url: str | None,
        embed: Embed | None,
        on_health: Callable[[CollectionHealth], None] | None = None,
        alerts: Alerts | None = None,
        queries: Any = None,
    ) -> None:
        self.section = config.indexes
        self.collections = {c.name: c for c in config.indexes.collections}
        self.places = {c.name: place_of(c, data_dir, qdrant_url) for c in self.collections.values()}
        self.data_dir = data_dir
        self.on_health = on_health
        self.alerts: Alerts = alerts or LogAlerts()
        self.latest: dict[str, CollectionHealth] = {}
        self._locks = {name: asyncio.Lock() for name in self.collections}
        self._preparer_args = (config, config_dir, embed, queries)
        self._preparer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._lock_file: IO[str] | None = None
        self._processes: set[asyncio.subprocess.Process] = set()
        self._alerting: set[asyncio.Task[None]] = set()

    def collection(self, name: str) -> IndexCollection:
        found = self.collections.get(name)
        if found is None:
            known = ", ".join(sorted(self.collections)) or "none"
            raise NotFound(f"No collection {name!r} in the config's indexes (known: {known}).")
        return found

    def lock(self, name: str) -> asyncio.Lock:
        """Held while the collection is checked; whoever else opens its shard in this
        process (a search) holds it too, as a shard opens in one place at a time."""
        return self._locks[name]

    def _preparer_now(self) -> Any:
        if self._preparer is None:
            from gateway.indexes.prepare import Preparer

            config, base, embed, queries = self._preparer_args
            self._preparer = Preparer(config, base, embed, queries)
        return self._preparer

    async def check(self, name: str) -> CollectionHealth:
        """A fresh check of one collection (waits for one already running to finish)."""
        collection = self.collection(name)
        async with self._locks[name]:
            prepared = await self._preparer_now().prepare(collection)
            health = await self._in_worker(collection, self.places[name], prepared)
        await self._record(health)
        return health

    async def current(self, name: str) -> CollectionHealth:
        """The latest result (from any worker process), or a fresh check when none exists."""
        self.collection(name)
        found = self._stored(name)
        return found if found is not None else await self.check(name)

    def _stored(self, name: str) -> CollectionHealth | None:
        mine = self.latest.get(name)
        path = self.data_dir / HEALTH_FOLDER / f"{name}.json"
        try:
            theirs = CollectionHealth.model_validate_json(path.read_bytes())
        except (OSError, ValueError):
            return mine
        if mine is None or theirs.checked_at > mine.checked_at:
            return theirs
        return mine

    async def _in_worker(
        self, collection: IndexCollection, place: Place, prepared: Any
    ) -> CollectionHealth:
        from gateway.indexes.worker import job

        payload = json.dumps(job(collection, place, prepared, datetime.now(UTC))).encode()
        path = os.pathsep.join(filter(None, [PACKAGE_PARENT, os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.indexes.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        self._processes.add(process)
        try:
            out, err = await asyncio.wait_for(process.communicate(payload), WORKER_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            return failed(collection, place, f"the check took over {WORKER_TIMEOUT_S:.0f} s")
        finally:
            self._processes.discard(process)
        if process.returncode != 0:
            problem = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            log.error("index check of %s failed: %s", collection.name, err.decode(errors="replace"))
            return failed(collection, place, f"the check process failed: {problem[0]}")
        return CollectionHealth.model_validate_json(out)

    async def _record(self, health: CollectionHealth) -> None:
        previous = self._stored(health.name)
        self.latest[health.name] = health
        folder = self.data_dir / HEALTH_FOLDER
        with contextlib.suppress(OSError):  # a read-only data dir: memory only
            folder.mkdir(parents=True, exist_ok=True)
            temporary = folder / f".{health.name}.json.tmp"
            temporary.write_text(health.model_dump_json(), encoding="utf-8")
            temporary.replace(folder / f"{health.name}.json")
        if self.on_health is not None:
            self.on_health(health)
        before = previous.status if previous is not None else None
        if before != health.status and (before is not None or health.status != "ok"):
            # Sent beside the check, not in its way: a refresh answers without waiting for
            # a slow receiver's retries.
            task = asyncio.create_task(self._alert(alert_event(health, before)))
            self._alerting.add(task)
            task.add_done_callback(self._alerting.discard)

    async def _alert(self, event: dict[str, Any]) -> None:
        try:
            await self.alerts.send(event)
        except Exception:
            log.exception("index health alert for %s could not be sent", event["subject"])

    def start(self) -> None:
        if self.section.interval <= 0 or not self.collections or not self._take_lock():
            return
        self._task = asyncio.create_task(self._periodically(), name="index-checks")

    def _take_lock(self) -> bool:
        """One process per data dir runs the periodic checks (the others serve results)."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            handle = (self.data_dir / LOCK_FILE).open("a")
        except OSError as exc:
            log.warning("index checks not scheduled: %s", exc)
            return False
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock_file = handle
        return True

    async def _periodically(self) -> None:
        await asyncio.sleep(min(FIRST_DELAY_S, self.section.interval))
        while True:
            for name in self.collections:
                try:
                    await self.check(name)
                except Exception:
                    log.exception("index check of %s failed", name)
            await asyncio.sleep(self.section.interval)

    async def aclose(self) -> None:
        await stop_task(self._task)
        if self._alerting:  # the alerts under way are delivered (each bounded by its retries)
            await asyncio.wait(list(self._alerting))
        for process in list(self._processes):
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        if self._lock_file is not None:
            self._lock_file.close()
