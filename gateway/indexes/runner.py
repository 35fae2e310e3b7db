"""One full check of one collection: open it, run every check, close it. Blocking: the CLI
runs it in a thread, the gateway in a worker process (`worker.py`), never on the event loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from gateway.core.index_config import IndexCollection
from gateway.indexes import checks_content, checks_search, checks_state, drift
from gateway.indexes.engine import Busy, Collection, Missing, Place, Unavailable, open_collection
from gateway.indexes.models import CheckResult, CollectionHealth, Status, worst
from gateway.indexes.scene import Prepared, Scene, unavailable

log = logging.getLogger("gateway.indexes")

Check = Callable[[Scene], CheckResult]
CHECKS: tuple[tuple[str, Check], ...] = (
    ("status", checks_state.status),
    ("indexed", checks_state.indexed),
    ("segments", checks_state.segments),
    ("dimension", checks_state.dimension),
    ("metadata", checks_state.metadata),
    ("model_mix", checks_content.model_mix),
    ("vectors", checks_content.vectors),
    ("duplicates", checks_content.duplicates),
    ("recall", checks_search.recall),
    ("recall_filtered", checks_search.recall_filtered),
    ("latency", checks_search.latency),
    ("staleness", checks_content.staleness),
    ("orphans", checks_content.orphans),
    ("query_drift", drift.query_drift),
)
NAMES = tuple(name for name, _ in CHECKS)
STEPS = len(CHECKS) + 1  # and the recall/latency curve per hnsw_ef
EXAMPLE_HINT = {"gateway-docs": "`gateway index build-example` builds it"}

Progress = Callable[[str], None]
BUSY_WAIT_S = 15.0  # a check of 100,000 points takes ~5 s


def _health(
    config: IndexCollection,
    engine: str,
    where: str,
    checks: list[CheckResult],
    started: float,
    now: datetime,
    points: int | None = None,
    overall: Status | None = None,
) -> CollectionHealth:
    return CollectionHealth(
        name=config.name,
        engine=engine,
        location=where,
        model=config.model,
        status=overall or worst([c.status for c in checks]),
        checked_at=now.isoformat(),
        seconds=round(time.perf_counter() - started, 3),
        points=points,
        checks=checks,
    )


def _not_opened(
    config: IndexCollection, place: Place, exc: Unavailable, started: float, now: datetime
) -> CollectionHealth:
    engine = "qdrant" if place.url else "qdrant-edge"
    reason = str(exc)
    if isinstance(exc, Missing):
        hint = EXAMPLE_HINT.get(config.name, "create it, or correct its location in the config")
        reason = f"{reason}: {hint}"
    first = CheckResult(
        name="status",
        # A collection applications search that is gone or unreachable is an outage; a shard
        # another process holds for a moment is not (the next check will open it).
        status="critical" if isinstance(exc, Missing) or place.url else "not available",
        summary=reason,
        reason=None if isinstance(exc, Missing) or place.url else reason,
    )
    rest = [
        unavailable(name, "the collection could not be opened (see status)") for name in NAMES[1:]
    ]
    return _health(config, engine, place.where, [first, *rest], started, now)


def _open(place: Place, name: str, wait: float = BUSY_WAIT_S) -> Collection:
    """Opens the collection, waiting a while for another process's check or build to end."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return open_collection(place, name)
        except Busy:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def check_collection(
    config: IndexCollection,
    place: Place,
    prepared: Prepared,
    now: datetime | None = None,
    on_step: Progress | None = None,
    busy_wait: float = BUSY_WAIT_S,
) -> CollectionHealth:
    started, now = time.perf_counter(), now or datetime.now(UTC)
    try:
        collection = _open(place, config.name, busy_wait)
    except Unavailable as exc:
        return _not_opened(config, place, exc, started, now)
    try:
        facts = collection.facts()
        scene = Scene(config, collection, facts, prepared, now)
        results = []
        for name, check in CHECKS:
            try:
                results.append(check(scene))
            except Unavailable as exc:
                results.append(unavailable(name, str(exc)))
            except Exception as exc:  # a check must not take the others down with it
                log.exception("index check %s of %s failed", name, config.name)
                results.append(unavailable(name, f"the check failed: {type(exc).__name__}: {exc}"))
            if on_step is not None:
                on_step(name)
        try:
            curve = checks_search.ef_curve(scene)
        except Exception:
            log.exception("the hnsw_ef curve of %s failed", config.name)
            curve = []
        if on_step is not None:
            on_step("hnsw_ef curve")
    except Unavailable as exc:
        return _not_opened(config, place, exc, started, now)
    finally:
        collection.close()
    health = _health(
        config, collection.engine, collection.where, results, started, now, facts.points
    )
    return health.model_copy(update={"ef_curve": curve})
