"""Query drift: do the queries that reach the gateway's embeddings endpoint for a collection's
model still look like what the collection holds?

The recent queries (a sample of the embeddings endpoint's single-input answers for the model,
kept off the request path by gateway/drift/queries.py) are compared with the sampled points by
the drift room's embedding statistics (gateway/drift/embedding_tests.py, Evidently's
defaults), the collection standing as the reference: the cosine distance between the two
centroids is the headline, graded by the `query_drift` thresholds; the MMD² is in the
details beside the drift room's threshold for it. The drift room's domain classifier is left
out: it would import scikit-learn into every check's worker process (seconds on a busy
machine) for a figure that could not be graded (below).

Those thresholds (0.2 for the centroids) are for two samples of one kind of text. A query
is short and a passage long, so they differ by nature: with the bundled model, 20 questions
about this project's docs sat at 0.47 from the docs' centroid (MMD² 0.067; the domain
classifier's AUC 0.99) and 20 unrelated questions at 0.89 (MMD² 0.14, AUC 1.0): by drift's
thresholds both are drift. So the centroid distance is graded by thresholds of its own (warn
above 0.6, critical above 0.75 by default; set them from a collection's own healthy figure),
and the MMD² is reported, not graded. Both sides are
unit vectors (cosine collections store them so).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from gateway.drift.embedding_tests import centroid_cosine, mmd
from gateway.drift.sketch import EmbeddingSketch
from gateway.indexes.models import CheckResult
from gateway.indexes.scene import Scene, unavailable

MIN_QUERIES = 20


class QueryEmbeddings(Protocol):
    """Recent embeddings the gateway answered for a model alias (newest last)."""

    def recent(self, alias: str, limit: int) -> list[list[float]] | None: ...


def unit_rows(matrix: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The finite, non-zero rows, scaled to length 1 (float32)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    finite = np.isfinite(matrix).all(axis=1)
    norms = np.linalg.norm(np.where(np.isfinite(matrix), matrix, 0.0), axis=1)
    keep = finite & (norms > 1e-9)
    unit: np.ndarray[Any, Any] = (matrix[keep] / norms[keep, None]).astype(np.float32)
    return unit


def query_drift(scene: Scene) -> CheckResult:
    queries = scene.prepared.queries
    if queries is None:
        return unavailable(
            "query_drift",
            scene.prepared.queries_reason
            or f"no record of the queries embedded by {scene.config.model} here",
        )
    if len(queries) < MIN_QUERIES:
        return unavailable(
            "query_drift",
            f"{len(queries)} recent queries embedded by {scene.config.model} through the "
            f"gateway; at least {MIN_QUERIES} are needed (indexes.query_sample_rate samples them)",
        )
    points = [p.vector for p in scene.sample if p.vector is not None]
    sizes = {len(q) for q in queries}
    if len(sizes) != 1:
        return unavailable("query_drift", f"the recent queries have several sizes: {sorted(sizes)}")
    if points and sizes != {len(points[0])}:
        return unavailable(
            "query_drift",
            f"the queries have {sizes.pop()} dimensions, the collection {len(points[0])}",
        )
    ours = unit_rows(np.asarray(queries))
    theirs = unit_rows(np.stack(points)) if points else np.zeros((0, 0), np.float32)
    if len(theirs) < MIN_QUERIES:
        return unavailable("query_drift", "too few usable points in the collection to compare")
    if len(ours) < MIN_QUERIES:
        return unavailable("query_drift", "too few usable query vectors (zero or not finite)")
    collection = EmbeddingSketch.of(theirs)
    distance = centroid_cosine(collection, ours)
    spread = mmd(collection, ours)
    value = max(distance.statistic, 0.0)
    return CheckResult(
        name="query_drift",
        status=scene.grade("query_drift", value),
        value=round(value, 4),
        unit="centroid cosine distance",
        summary=f"the centroid of {len(ours)} recent queries is at cosine distance {value:.3f} "
        f"from that of {len(theirs)} sampled points ({scene.bounds('query_drift')})",
        details={
            "queries": len(ours),
            "points": len(theirs),
            # The drift room's threshold compares two samples of one kind of text: shown for
            # reference, not applied (see the module's docstring).
            "mmd": round(spread.statistic, 5),
            "mmd_threshold": spread.threshold,
        },
    )
