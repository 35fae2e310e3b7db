"""The per-column tests, with Evidently's defaults (learned from its
`legacy/calculations/stattests/` and `data_drift.py`; no code taken from it):

| reference rows | numerical (> 5 distinct values) | categorical (or <= 5 distinct values) |
| --- | --- | --- |
| <= 1,000 | Kolmogorov-Smirnov p <= 0.05 | chi-squared (> 2 values) or Z-test (2), p < 0.05 |
| > 1,000 | Wasserstein distance / reference std >= 0.1 | Jensen-Shannon distance >= 0.1 |

"distinct values" counts the reference and the current window together. PSI (>= 0.1) is
reported beside every column. Jensen-Shannon and PSI bin a numerical column with more than 20
distinct reference values into Sturges bins over both windows' range, else by value; PSI
replaces empty bins with a small share (a millionth of the smallest share when that is at most
1e-4, else 1e-4). scipy is imported here, lazily: never on the request path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.drift.columns import Column, Floats, distinct
from gateway.drift.options import MAX_CATEGORICAL_VALUES, SMALL_REFERENCE_ROWS
from gateway.drift.sketch import CategoricalSketch, NumericSketch

DEFAULT_THRESHOLDS: dict[str, float] = {
    "ks": 0.05,
    "chisquare": 0.05,
    "z": 0.05,
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
    "psi": 0.1,
    "domain_classifier": 0.55,
    "mmd": 0.015,
    "centroid_cosine": 0.2,
}
P_VALUES = {"ks", "chisquare", "z"}  # drift when the p-value is below the threshold
NUMERICAL_ONLY = {"ks", "wasserstein"}


class NotApplicable(ValueError):
    """A test asked for a column it cannot take (KS of categories)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    test: str
    statistic: float
    threshold: float
    drifted: bool


def drifted(test: str, statistic: float, threshold: float) -> bool:
    if test == "ks":
        return bool(statistic <= threshold)  # Evidently's KS is the one p-value test with <=
    if test in P_VALUES:
        return bool(statistic < threshold)
    if test in ("domain_classifier", "mmd", "centroid_cosine"):
        return bool(statistic > threshold)
    return bool(statistic >= threshold)


RefSketch = NumericSketch | CategoricalSketch


def combined_distinct(reference: RefSketch, current: Column) -> int:
    """How many distinct values both windows hold together (more than 20 is reported as 21
    for a numerical reference that keeps no value counts)."""
    found = set(distinct(current.values)[0].tolist())
    if isinstance(reference, CategoricalSketch):
        return len(found | set(reference.counts))
    if reference.distinct is None:
        return max(len(found), 21)
    return len(found | set(reference.distinct))


def default_test(
    reference: RefSketch,
    current: Column,
    small_rows: int = SMALL_REFERENCE_ROWS,
    max_categorical: int = MAX_CATEGORICAL_VALUES,
) -> str:
    values = combined_distinct(reference, current)
    categorical = isinstance(reference, CategoricalSketch) or values <= max_categorical
    if reference.count <= small_rows:
        if categorical:
            return "chisquare" if values > 2 else "z"
        return "ks"
    return "jensenshannon" if categorical else "wasserstein"


def run(
    test: str, reference: RefSketch, current: Column, threshold: float | None = None
) -> Outcome:
    chosen = DEFAULT_THRESHOLDS[test] if threshold is None else threshold
    if test in NUMERICAL_ONLY and not isinstance(reference, NumericSketch):
        raise NotApplicable(f"{test} takes numbers; this column holds categories")
    statistic = TESTS[test](reference, current)
    return Outcome(test, statistic, chosen, drifted(test, statistic, chosen))


# --- numerical ------------------------------------------------------------------------------


def ks(reference: RefSketch, current: Column) -> float:
    from scipy import stats

    assert isinstance(reference, NumericSketch)
    values = current.values
    if reference.values is not None:
        return float(stats.ks_2samp(reference.values, values).pvalue)
    # From the saved distribution function: the largest gap at every point where either
    # side steps or bends, and the asymptotic two-sample distribution.
    support = reference.distinct_values()
    if support is None:
        assert reference.quantiles is not None
        support = reference.quantiles
    points = np.concatenate([support, values])
    ordered = np.sort(values)
    gap = np.abs(reference.cdf(points) - np.searchsorted(ordered, points, "right") / len(values))
    n, m = reference.count, len(values)
    return float(stats.kstwo.sf(float(gap.max()), round(n * m / (n + m))))


def wasserstein(reference: RefSketch, current: Column) -> float:
    """The Wasserstein-1 distance over the reference's standard deviation (at least 0.001)."""
    from scipy import stats

    assert isinstance(reference, NumericSketch)
    values = current.values
    if reference.values is not None:
        distance = stats.wasserstein_distance(reference.values, values)
    elif reference.distinct is not None:
        keys = np.array(list(reference.distinct), dtype=np.float64)
        weights = np.array(list(reference.distinct.values()), dtype=np.float64)
        distance = stats.wasserstein_distance(keys, values, u_weights=weights)
    else:
        distance = _w1_from_quantiles(reference, values)
    return float(distance) / max(reference.std, 0.001)


def _w1_from_quantiles(reference: NumericSketch, values: Floats) -> float:
    """The integral of |F - G| over x, F the reference's interpolated distribution function
    (linear between saved quantiles), G the current window's empirical one: exact on each
    interval between consecutive quantiles and current values."""
    assert reference.quantiles is not None
    grid = np.unique(np.concatenate([reference.quantiles, values]))
    ordered = np.sort(values)
    step = np.searchsorted(ordered, grid[:-1], "right") / len(ordered)
    start = reference.cdf(grid[:-1]) - step
    end = reference.cdf(grid[1:], strict=True) - step
    width = np.diff(grid)
    same_sign = start * end >= 0
    magnitude = np.abs(start) + np.abs(end)
    with np.errstate(invalid="ignore", divide="ignore"):
        crossing = (start**2 + end**2) / (2 * magnitude)
    area = np.where(same_sign, magnitude / 2, np.nan_to_num(crossing)) * width
    return float(area.sum())


# --- binned: Jensen-Shannon and PSI ---------------------------------------------------------


def sturges_edges(low: float, high: float, count: int) -> Floats:
    """numpy.histogram_bin_edges(..., bins="sturges") for data spanning [low, high] with
    `count` values, without the data."""
    if high == low:
        return np.array([low - 0.5, high + 0.5])
    width = (high - low) / (np.log2(count) + 1.0)
    bins = int(np.ceil((high - low) / width))
    return np.linspace(low, high, bins + 1)


def binned(reference: RefSketch, current: Column) -> tuple[Floats, Floats]:
    """Each window's share per bin."""
    values = current.values
    if isinstance(reference, NumericSketch) and reference.distinct is None:
        low = min(reference.minimum, float(values.min()))
        high = max(reference.maximum, float(values.max()))
        edges = sturges_edges(low, high, reference.count + len(values))
        ref_counts = reference.histogram(edges)
        return ref_counts / reference.count, np.histogram(values, edges)[0] / len(values)
    counts: Mapping[Any, int] | None = (
        reference.counts if isinstance(reference, CategoricalSketch) else reference.distinct
    )
    assert counts is not None
    keys, found = distinct(values)
    mine = dict(zip(keys.tolist(), found.tolist(), strict=True))
    union = list(dict.fromkeys([*counts, *mine]))
    ref_shares = np.array([counts.get(k, 0) for k in union], dtype=np.float64) / reference.count
    cur_shares = np.array([mine.get(k, 0) for k in union], dtype=np.float64) / len(values)
    return ref_shares, cur_shares


def jensenshannon(reference: RefSketch, current: Column) -> float:
    from scipy.spatial import distance

    ref_shares, cur_shares = binned(reference, current)
    return float(distance.jensenshannon(ref_shares, cur_shares))


def _filled(shares: Floats) -> Floats:
    present = shares[shares != 0]
    smallest = float(present.min())
    filler = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return np.where(shares == 0, filler, shares)


def psi(reference: RefSketch, current: Column) -> float:
    ref_shares, cur_shares = binned(reference, current)
    ref_shares, cur_shares = _filled(ref_shares), _filled(cur_shares)
    return float(np.sum((ref_shares - cur_shares) * np.log(ref_shares / cur_shares)))


# --- categories: chi-squared and Z ----------------------------------------------------------


def _counts(reference: RefSketch, current: Column) -> tuple[list[Any], Floats, Floats]:
    counts: Mapping[Any, int] | None = (
        reference.counts if isinstance(reference, CategoricalSketch) else reference.distinct
    )
    if counts is None:
        raise NotApplicable("this column has too many distinct values for a test of categories")
    keys, found = distinct(current.values)
    mine = dict(zip(keys.tolist(), found.tolist(), strict=True))
    union = sorted(set(counts) | set(mine))
    ref = np.array([counts.get(k, 0) for k in union], dtype=np.float64)
    cur = np.array([mine.get(k, 0) for k in union], dtype=np.float64)
    return union, ref, cur


def chisquare(reference: RefSketch, current: Column) -> float:
    from scipy import stats

    _, ref, cur = _counts(reference, current)
    if np.any((ref == 0) & (cur > 0)):
        return 0.0  # a category the reference never had: no expected count explains it
    expected = ref * (cur.sum() / ref.sum())
    return float(stats.chisquare(cur, expected).pvalue)


def z(reference: RefSketch, current: Column) -> float:
    """Two proportions: the share of the first category (in sorted order) against the rest."""
    from scipy import stats

    union, ref, cur = _counts(reference, current)
    if len(union) == 1:
        return 1.0
    n1, n2 = ref.sum(), cur.sum()
    p1, p2 = 1 - ref[0] / n1, 1 - cur[0] / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return 1.0
    return float(2 * stats.norm.sf(abs((p1 - p2) / spread)))


TESTS: dict[str, Any] = {
    "ks": ks,
    "wasserstein": wasserstein,
    "jensenshannon": jensenshannon,
    "psi": psi,
    "chisquare": chisquare,
    "z": z,
}
