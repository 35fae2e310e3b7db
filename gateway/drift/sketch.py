"""A reference column saved as statistics, so a reference is made once and never recomputed
from its raw rows (Evidently's users cannot save theirs).

What a column keeps, by kind:
- numerical: count, mean, standard deviation, min and max; its value counts while it has at
  most 20 distinct values (Evidently bins by value up to 20); every value, sorted, while it has
  at most 1,000 rows (the size up to which Evidently's defaults are p-value tests, so those are
  computed exactly); beyond that 1,001 quantiles (for Wasserstein and KS, on the reference's
  interpolated distribution function) and a 2,048-bin histogram between min and max (for
  Jensen-Shannon and PSI, whose bins are cut from it, interpolating within one fine bin).
- categorical: the count of each category.
- embedding: the centroid of every vector and up to 1,000 of the vectors (a fixed-seed random
  choice beyond that), for the domain classifier and MMD.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.drift.columns import Column, Floats, Kind, distinct

RAW_LIMIT = 1000
QUANTILES = 1000
FINE_BINS = 2048
DISTINCT_LIMIT = 20
VECTOR_LIMIT = 1000


def _pack(array: npt.NDArray[Any], dtype: str) -> dict[str, Any]:
    data = np.ascontiguousarray(array, dtype=dtype)
    return {
        "dtype": dtype,
        "shape": list(data.shape),
        "b64": base64.b64encode(data.tobytes()).decode(),
    }


def _unpack(packed: dict[str, Any]) -> npt.NDArray[Any]:
    raw = base64.b64decode(packed["b64"])
    return np.frombuffer(raw, dtype=packed["dtype"]).reshape(packed["shape"]).copy()


@dataclass(frozen=True)
class NumericSketch:
    count: int
    mean: float
    std: float
    minimum: float
    maximum: float
    distinct: dict[float, int] | None  # value -> count, while there are few
    values: Floats | None  # sorted, while the column is small
    quantiles: Floats | None  # otherwise
    fine: npt.NDArray[np.int64] | None = None  # counts in FINE_BINS equal bins, otherwise

    kind: Kind = "numerical"

    @classmethod
    def of(cls, values: Floats) -> NumericSketch:
        ordered = np.sort(values)
        keys, counts = distinct(ordered)
        few = len(keys) <= DISTINCT_LIMIT
        small = len(ordered) <= RAW_LIMIT
        return cls(
            count=len(ordered),
            mean=float(ordered.mean()),
            std=float(ordered.std()),
            minimum=float(ordered[0]),
            maximum=float(ordered[-1]),
            distinct=dict(zip(keys.tolist(), counts.tolist(), strict=True)) if few else None,
            values=ordered if small else None,
            quantiles=None if small else np.quantile(ordered, np.linspace(0, 1, QUANTILES + 1)),
            fine=None if small else np.histogram(ordered, FINE_BINS)[0].astype(np.int64),
        )

    def distinct_values(self) -> Floats | None:
        if self.distinct is None:
            return None
        return np.array(sorted(self.distinct), dtype=np.float64)

    def cdf(self, x: Floats, *, strict: bool = False) -> Floats:
        """The share of the reference at or below x (below x with strict=True)."""
        side: Any = "left" if strict else "right"
        if self.values is not None:
            return np.searchsorted(self.values, x, side=side) / self.count
        if self.distinct is not None:
            keys = np.array(sorted(self.distinct), dtype=np.float64)
            cumulative = np.concatenate([[0], np.cumsum([self.distinct[k] for k in keys])])
            return cumulative[np.searchsorted(keys, x, side=side)] / self.count
        quantiles = self.quantiles
        assert quantiles is not None
        last = len(quantiles) - 1
        index = np.searchsorted(quantiles, x, side=side)
        lower = np.clip(index - 1, 0, last)
        upper = np.clip(index, 0, last)
        width = quantiles[upper] - quantiles[lower]
        with np.errstate(invalid="ignore", divide="ignore"):
            inside = np.where(width > 0, (x - quantiles[lower]) / width, 0.0)
        share = (lower + np.clip(inside, 0, 1)) / last
        if strict:  # a run of equal quantiles is mass at that value, not below it
            share = np.where(index < len(quantiles), np.minimum(share, index / last), share)
        return np.where(x < quantiles[0], 0.0, np.where(x >= quantiles[-1], 1.0, share))

    def histogram(self, edges: Floats) -> Floats:
        """Counts per bin as numpy.histogram counts them (the last bin includes its right
        edge): exact from the values or value counts, else cut from the fine histogram."""
        if self.values is not None:
            return np.histogram(self.values, edges)[0].astype(np.float64)
        if self.fine is None:
            below = self.cdf(edges, strict=True)
            below[-1] = self.cdf(edges[-1:])[0]
            return np.diff(below) * self.count
        cumulative = np.concatenate([[0], np.cumsum(self.fine)]).astype(np.float64)
        span = self.maximum - self.minimum
        position = np.clip((edges - self.minimum) / span * FINE_BINS, 0, FINE_BINS)
        index = np.minimum(position.astype(np.int64), FINE_BINS - 1)
        at = cumulative[index] + (position - index) * self.fine[index]
        return np.diff(at)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": self.kind,
            "count": self.count,
            "mean": self.mean,
            "std": self.std,
            "min": self.minimum,
            "max": self.maximum,
        }
        if self.distinct is not None:
            body["distinct"] = [[value, count] for value, count in self.distinct.items()]
        if self.values is not None:
            body["values"] = _pack(self.values, "<f8")
        if self.quantiles is not None:
            body["quantiles"] = _pack(self.quantiles, "<f8")
        if self.fine is not None:
            body["fine"] = _pack(self.fine, "<i8")
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> NumericSketch:
        pairs = body.get("distinct")
        return cls(
            count=int(body["count"]),
            mean=float(body["mean"]),
            std=float(body["std"]),
            minimum=float(body["min"]),
            maximum=float(body["max"]),
            distinct={float(v): int(c) for v, c in pairs} if pairs is not None else None,
            values=_unpack(body["values"]) if "values" in body else None,
            quantiles=_unpack(body["quantiles"]) if "quantiles" in body else None,
            fine=_unpack(body["fine"]) if "fine" in body else None,
        )


@dataclass(frozen=True)
class CategoricalSketch:
    count: int
    counts: dict[str, int]

    kind: Kind = "categorical"

    @classmethod
    def of(cls, keys: npt.NDArray[Any]) -> CategoricalSketch:
        found, counts = distinct(keys)
        return cls(len(keys), dict(zip(found.tolist(), counts.tolist(), strict=True)))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "count": self.count, "counts": self.counts}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> CategoricalSketch:
        return cls(int(body["count"]), {str(k): int(v) for k, v in body["counts"].items()})


@dataclass(frozen=True)
class EmbeddingSketch:
    count: int
    mean: Floats
    vectors: npt.NDArray[np.float32]

    kind: Kind = "embedding"

    @classmethod
    def of(cls, vectors: npt.NDArray[np.float32]) -> EmbeddingSketch:
        kept = vectors
        if len(vectors) > VECTOR_LIMIT:
            chosen = np.random.default_rng(0).choice(len(vectors), VECTOR_LIMIT, replace=False)
            kept = vectors[np.sort(chosen)]
        mean = vectors.astype(np.float64).mean(axis=0)
        return cls(len(vectors), mean, np.ascontiguousarray(kept, dtype=np.float32))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "count": self.count,
            "mean": _pack(self.mean, "<f8"),
            "vectors": _pack(self.vectors, "<f4"),
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> EmbeddingSketch:
        return cls(int(body["count"]), _unpack(body["mean"]), _unpack(body["vectors"]))


Sketch = NumericSketch | CategoricalSketch | EmbeddingSketch


def sketch(column: Column) -> Sketch | None:
    """The column's sketch; None for a column with no values."""
    if len(column) == 0:
        return None
    if column.kind == "numerical":
        return NumericSketch.of(column.values)
    if column.kind == "categorical":
        return CategoricalSketch.of(column.values)
    return EmbeddingSketch.of(column.values)


def sketch_from_json(body: dict[str, Any]) -> Sketch:
    kind = body.get("kind")
    if kind == "numerical":
        return NumericSketch.from_json(body)
    if kind == "categorical":
        return CategoricalSketch.from_json(body)
    if kind == "embedding":
        return EmbeddingSketch.from_json(body)
    raise ValueError(f"unknown column kind {kind!r} in a drift reference")
