"""Checks of what the collection holds: points of another embedding model, broken vectors,
near-duplicates, staleness and orphans."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np

from gateway.indexes.models import CheckResult
from gateway.indexes.scene import Scene, unavailable

DUPLICATE_SIMILARITY = 0.99  # cosine at or above which two points are near-duplicates
DUPLICATE_EF = 128
MAX_DUPLICATE_PROBES = 500


def model_mix(scene: Scene) -> CheckResult:
    field, names = scene.config.model_field, scene.prepared.model_names
    points = scene.facts.points
    if not points:
        return unavailable("model_mix", "the collection is empty")
    named = scene.collection.count(has=field)
    if not named:
        return unavailable(
            "model_mix",
            f"no point's payload has {field!r} (set model_field to the payload key that names "
            f"the embedding model)",
        )
    ours = scene.collection.count({field: list(names)})
    other = named - ours
    share = other / points
    return CheckResult(
        name="model_mix",
        status=scene.grade("other_model_share", share),
        value=share,
        unit="share",
        summary=f"{other} of {points} points name another embedding model in {field!r} "
        f"({scene.bounds('other_model_share')})",
        details={"other_model_points": other, "unnamed_points": points - named},
    )


def vectors(scene: Scene) -> CheckResult:
    sample = [p for p in scene.sample if p.vector is not None]
    if not sample:
        return unavailable("vectors", "the collection is empty")
    matrix = np.stack([p.vector for p in sample if p.vector is not None])
    finite: np.ndarray[Any, Any] = np.asarray(np.isfinite(matrix).all(axis=1))
    norms = np.linalg.norm(np.where(np.isfinite(matrix), matrix, 0.0), axis=1)
    zero: np.ndarray[Any, Any] = finite & (norms < 1e-6)
    bad = int((~finite).sum() + zero.sum())
    share = bad / len(sample)
    broken = (~finite | zero).tolist()
    examples = [str(p.id) for p, wrong in zip(sample, broken, strict=True) if wrong]
    return CheckResult(
        name="vectors",
        status=scene.grade("bad_vector_share", share),
        value=share,
        unit="share",
        summary=f"{int(zero.sum())} zero-norm and {int((~finite).sum())} non-finite vectors in a "
        f"sample of {len(sample)} ({scene.bounds('bad_vector_share')})",
        details={
            "sample": len(sample),
            "zero_norm": int(zero.sum()),
            "non_finite": int((~finite).sum()),
            "examples": ", ".join(examples[:5]) or None,
        },
    )


def _unit(vector: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | None:
    norm = float(np.linalg.norm(vector))
    return vector / norm if math.isfinite(norm) and norm > 1e-6 else None


def duplicates(scene: Scene) -> CheckResult:
    probes = [
        (p.id, unit)
        for p in scene.sample[:MAX_DUPLICATE_PROBES]
        if p.vector is not None and (unit := _unit(p.vector)) is not None
    ]
    if not probes:
        return unavailable("duplicates", "the collection has no usable vectors to compare")
    found = scene.collection.search_many(
        [u.tolist() for _, u in probes], 2, False, DUPLICATE_EF, [{}] * len(probes)
    )
    neighbours = [
        next((h.id for h in hits if h.id != pid), None)
        for (pid, _), hits in zip(probes, found, strict=True)
    ]
    wanted = sorted({n for n in neighbours if n is not None}, key=str)
    stored = {p.id: p.vector for p in scene.collection.retrieve(wanted)} if wanted else {}
    close = []
    for (pid, unit), other in zip(probes, neighbours, strict=True):
        vector = stored.get(other) if other is not None else None
        other_unit = _unit(vector) if vector is not None else None
        if other_unit is not None and float(unit @ other_unit) >= DUPLICATE_SIMILARITY:
            close.append((pid, other))
    share = len(close) / len(probes)
    return CheckResult(
        name="duplicates",
        status=scene.grade("duplicate_share", share),
        value=share,
        unit="share",
        summary=f"{len(close)} of {len(probes)} sampled points have a near-duplicate (cosine >= "
        f"{DUPLICATE_SIMILARITY}; {scene.bounds('duplicate_share')})",
        details={
            "sample": len(probes),
            "with_duplicate": len(close),
            "examples": ", ".join(f"{a}~{b}" for a, b in close[:5]) or None,
        },
    )


def parse_time(value: Any) -> datetime | None:
    """A payload timestamp: ISO 8601 text, or seconds (or milliseconds) since the epoch."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and math.isfinite(value):
        seconds = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _newest(scene: Scene, field: str) -> datetime | None:
    if field in scene.facts.range_indexed:
        return parse_time(scene.collection.newest(field))
    times = (parse_time(v) for v in scene.collection.values(field))
    return max((t for t in times if t is not None), default=None)


def staleness(scene: Scene) -> CheckResult:
    field, listed = scene.config.timestamp_field, scene.prepared.sources
    if field is None and listed is None:
        return unavailable(
            "staleness", "set timestamp_field (newest point's age) or sources (missing sources)"
        )
    if scene.prepared.sources_problem:
        return unavailable("staleness", scene.prepared.sources_problem)
    results: list[CheckResult] = []
    if field is not None:
        newest = _newest(scene, field)
        if newest is None:
            return unavailable("staleness", f"no point has a readable timestamp in {field!r}")
        age = (scene.now - newest).total_seconds() / 86_400
        results.append(
            CheckResult(
                name="staleness",
                status=scene.grade("age_days", age),
                value=round(age, 3),
                unit="days",
                summary=f"the newest point ({newest.isoformat()}) is {age:.1f} days old "
                f"({scene.bounds('age_days')})",
                details={"newest": newest.isoformat()},
            )
        )
    present = scene.sources
    if listed is not None and present is not None:
        missing = sorted(set(listed) - set(present))
        share = len(missing) / len(listed) if listed else 0.0
        results.append(
            CheckResult(
                name="staleness",
                status=scene.grade("missing_share", share),
                value=share,
                unit="share",
                summary=f"{len(missing)} of {len(listed)} sources have no points "
                f"({scene.bounds('missing_share')})",
                details={
                    "missing_sources": len(missing),
                    "missing": ", ".join(missing[:5]) or None,
                },
            )
        )
    if not results:
        return unavailable("staleness", "sources needs source_field to compare with")
    worst = max(results, key=lambda r: ("ok", "warn", "critical").index(r.status))
    details = {k: v for r in results for k, v in r.details.items()}
    summary = "; ".join(r.summary for r in results)
    return worst.model_copy(update={"summary": summary, "details": details})


def orphans(scene: Scene) -> CheckResult:
    field, listed = scene.config.source_field, scene.prepared.sources
    if field is None or listed is None:
        return unavailable("orphans", "set source_field and sources (the live source ids)")
    if scene.prepared.sources_problem:
        return unavailable("orphans", scene.prepared.sources_problem)
    present: Counter[str] = scene.sources or Counter()
    live = set(listed)
    gone = {source: n for source, n in present.items() if source not in live}
    orphaned = sum(gone.values())
    points = scene.facts.points
    share = orphaned / points if points else 0.0
    return CheckResult(
        name="orphans",
        status=scene.grade("orphan_share", share),
        value=share,
        unit="share",
        summary=f"{orphaned} of {points} points belong to {len(gone)} sources no longer listed "
        f"({scene.bounds('orphan_share')})",
        details={
            "orphan_points": orphaned,
            "orphan_sources": len(gone),
            "without_source": points - sum(present.values()),
            "examples": ", ".join(sorted(gone)[:5]) or None,
        },
    )
