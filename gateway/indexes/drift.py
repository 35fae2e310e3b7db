"""Query drift: do the queries that reach the gateway's embeddings endpoint for a collection's
model still look like what the collection holds?

Two statistics over the embeddings (unit-normalised), as Evidently computes embedding
drift: the Euclidean distance between the two means (the headline, graded by the
`query_drift` thresholds; Evidently's default threshold is 0.2) and the maximum mean
discrepancy (MMD², RBF kernel, median-distance bandwidth) in the details. Until the drift
room's statistics are merged these two small functions stand in.

Where the query embeddings come from is a `QueryEmbeddings`: the drift room records a sample
of what the embeddings endpoint answered; without one, the check is not available.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from gateway.indexes.models import CheckResult
from gateway.indexes.scene import Scene, unavailable

MIN_QUERIES = 20
MAX_MMD_POINTS = 300


class QueryEmbeddings(Protocol):
    """Recent embeddings the gateway returned for a model alias (newest last), or None."""

    def recent(self, alias: str, limit: int) -> list[list[float]] | None: ...


def _unit_rows(matrix: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    keep = (norms[:, 0] > 1e-9) & np.isfinite(matrix).all(axis=1)
    unit: np.ndarray[Any, Any] = matrix[keep] / norms[keep]
    return unit


def mean_distance(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    """Euclidean distance between the two samples' means of unit vectors (0 to 2). A cosine
    between the means would be noise where embeddings spread evenly (means near zero)."""
    return float(np.linalg.norm(_unit_rows(a).mean(axis=0) - _unit_rows(b).mean(axis=0)))


def mmd(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any], seed: int = 0) -> float:
    """Unbiased MMD² with an RBF kernel whose bandwidth is the median pairwise distance."""
    rng = np.random.default_rng(seed)
    a, b = _unit_rows(a), _unit_rows(b)
    a = a[rng.permutation(len(a))[:MAX_MMD_POINTS]]
    b = b[rng.permutation(len(b))[:MAX_MMD_POINTS]]
    both = np.vstack([a, b])
    squared = np.maximum(
        (both**2).sum(1)[:, None] + (both**2).sum(1)[None, :] - 2 * both @ both.T, 0.0
    )
    median = float(np.median(squared[np.triu_indices(len(both), 1)]))
    kernel = np.exp(-squared / (median if median > 0 else 1.0))
    n, m = len(a), len(b)
    kaa, kbb, kab = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    within_a = (kaa.sum() - np.trace(kaa)) / (n * (n - 1))
    within_b = (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
    return float(within_a + within_b - 2 * kab.mean())


def query_drift(scene: Scene) -> CheckResult:
    queries = scene.prepared.queries
    if queries is None:
        return unavailable(
            "query_drift",
            scene.prepared.queries_reason
            or f"no recent queries recorded for {scene.config.model} (the drift room records them)",
        )
    if len(queries) < MIN_QUERIES:
        return unavailable(
            "query_drift", f"{len(queries)} recent queries; at least {MIN_QUERIES} are needed"
        )
    points = [p.vector for p in scene.sample if p.vector is not None]
    if len(points) < MIN_QUERIES:
        return unavailable("query_drift", "too few points in the collection to compare with")
    ours, theirs = np.asarray(queries, dtype=np.float32), np.stack(points)
    if ours.shape[1] != theirs.shape[1]:
        return unavailable(
            "query_drift",
            f"the queries have {ours.shape[1]} dimensions, the collection {theirs.shape[1]}",
        )
    distance = mean_distance(ours, theirs)
    return CheckResult(
        name="query_drift",
        status=scene.grade("query_drift", distance),
        value=round(distance, 4),
        unit="distance of means",
        summary=f"the mean of {len(ours)} recent queries is {distance:.3f} (Euclidean, unit "
        f"vectors) from the mean of {len(theirs)} sampled points ({scene.bounds('query_drift')})",
        details={"queries": len(ours), "points": len(theirs), "mmd2": round(mmd(ours, theirs), 5)},
    )
