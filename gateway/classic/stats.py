"""Per-feature statistics of a training set: the reference that drift of served inputs is
measured against (recorded with the registry version)."""

from __future__ import annotations

from typing import Any

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
BINS = 10


def feature_stats(rows: Any, names: list[str]) -> dict[str, Any]:
    """{"rows": n, "features": {name: {count, mean, std, min, max, quantiles, histogram}}} of a
    2-D numeric array; the histogram's edges are the reference's own (equal width)."""
    import numpy as np

    data = np.asarray(rows, dtype=np.float64)
    features: dict[str, Any] = {}
    for index, name in enumerate(names):
        column = data[:, index]
        present = column[~np.isnan(column)]
        counts: Any = []
        edges: Any = []
        if present.size:
            counts, edges = np.histogram(present, bins=BINS)
        features[name] = {
            "count": int(present.size),
            "nulls": int(column.size - present.size),
            "mean": float(present.mean()) if present.size else None,
            "std": float(present.std()) if present.size else None,
            "min": float(present.min()) if present.size else None,
            "max": float(present.max()) if present.size else None,
            "quantiles": {
                f"p{round(q * 100):02d}": float(np.quantile(present, q)) if present.size else None
                for q in QUANTILES
            },
            "histogram": {
                "edges": [float(e) for e in edges],
                "counts": [int(c) for c in counts],
            },
        }
    return {"rows": int(data.shape[0]), "features": features}
