"""Checks of what the engine reports about the collection: its status and optimizer, points
against indexed vectors, segments, the vectors' dimension and the model in its metadata."""

from __future__ import annotations

from gateway.indexes.models import CheckResult, Status
from gateway.indexes.scene import Scene, unavailable

# Qdrant leaves a segment unindexed (searched exactly) below its indexing threshold, 10,000 KB
# of vectors by default: fewer unindexed vectors than that are no fault.
INDEXING_THRESHOLD_BYTES = 10_000 * 1024
COLOURS: dict[str, tuple[Status, str]] = {
    "green": ("ok", "green: every segment is optimized"),
    "yellow": ("warn", "yellow: optimizations are running, searches are slower meanwhile"),
    "grey": (
        "warn",
        "grey: optimizations are pending and will not start by themselves (after a restart): "
        "an update or PATCH /collections/{name} with an empty optimizers_config starts them",
    ),
    "red": ("critical", "red: an operation failed and the collection needs attention"),
}


def status(scene: Scene) -> CheckResult:
    facts = scene.facts
    if facts.status is None:
        return unavailable("status", facts.unknown.get("status", "the engine does not report it"))
    found, summary = COLOURS.get(facts.status, ("warn", f"{facts.status}: an unknown status"))
    if facts.optimizer not in (None, "ok"):
        found, summary = "critical", f"the optimizer failed: {facts.optimizer}"
    return CheckResult(
        name="status",
        status=found,
        summary=summary,
        details={
            "status": facts.status,
            "optimizer": facts.optimizer,
            "queued_optimizations": facts.queued_optimizations,
        },
    )


def indexed(scene: Scene) -> CheckResult:
    facts = scene.facts
    if facts.indexed is None:
        return unavailable("indexed", facts.unknown.get("indexed", "the engine does not report it"))
    unindexed = max(0, facts.points - facts.indexed)
    share = unindexed / facts.points if facts.points else 0.0
    details = {"points": facts.points, "indexed": facts.indexed, "unindexed": unindexed}
    if unindexed * facts.size * 4 < INDEXING_THRESHOLD_BYTES:
        rest = (
            f"; the {unindexed} others are below Qdrant's indexing threshold (10,000 KB) and "
            f"searched exactly"
            if unindexed
            else ""
        )
        return CheckResult(
            name="indexed",
            status="ok",
            value=share,
            unit="share",
            summary=f"{facts.indexed} of {facts.points} vectors indexed{rest}",
            details=details,
        )
    return CheckResult(
        name="indexed",
        status=scene.grade("unindexed_share", share),
        value=share,
        unit="share",
        summary=f"{facts.indexed} of {facts.points} vectors indexed ({share:.0%} unindexed; "
        f"{scene.bounds('unindexed_share')})",
        details=details,
    )


def segments(scene: Scene) -> CheckResult:
    count = scene.facts.segments
    if count is None:
        return unavailable("segments", "the engine does not report it")
    return CheckResult(
        name="segments",
        status=scene.grade("segments", count),
        value=count,
        unit="segments",
        summary=f"{count} segments ({scene.bounds('segments')})",
    )


def dimension(scene: Scene) -> CheckResult:
    size, prepared = scene.facts.size, scene.prepared
    expected, source = prepared.dimension, "measured by embedding a probe text"
    recorded = scene.facts.metadata or {}
    if expected is None and recorded.get("model") == prepared.model_id:
        expected, source = recorded.get("dimension"), "recorded in the collection's metadata"
    if not isinstance(expected, int):
        reason = prepared.dimension_reason or "the model's dimension is unknown"
        return unavailable("dimension", f"{reason}; the collection's vectors have {size}")
    details = {"vector_size": size, "model_dimension": expected, "source": source}
    if size != expected:
        return CheckResult(
            name="dimension",
            status="critical",
            value=size,
            unit="dimensions",
            summary=f"the vectors have {size} dimensions but {scene.config.model} makes "
            f"{expected} ({source}): its queries cannot be searched here",
            details=details,
        )
    return CheckResult(
        name="dimension",
        status="ok",
        value=size,
        unit="dimensions",
        summary=f"{size} dimensions, as {scene.config.model} makes ({source})",
        details=details,
    )


def metadata(scene: Scene) -> CheckResult:
    recorded, model_id = scene.facts.metadata, scene.prepared.model_id
    if not recorded:
        return CheckResult(
            name="metadata",
            status="warn",
            summary=f"the collection's metadata records no embedding model: `gateway index adopt "
            f"{scene.config.name}` records {model_id}",
        )
    details = {k: v for k, v in recorded.items() if isinstance(v, str | int | float | bool)}
    if recorded.get("model") != model_id:
        return CheckResult(
            name="metadata",
            status="critical",
            summary=f"the collection was made with {recorded.get('model')!r} but the config "
            f"names {scene.config.model} ({model_id}): queries and points come from different "
            f"models",
            details=details,
        )
    return CheckResult(
        name="metadata",
        status="ok",
        summary=f"made with {model_id}, as the config says",
        details=details,
    )
