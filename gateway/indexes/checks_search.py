"""Checks of search itself: recall@k of the approximate (HNSW) search against exact search,
filtered and unfiltered queries apart, and the approximate search's latency; the same
measures per `hnsw_ef` for the report's chart."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from gateway.indexes.engine import Hit
from gateway.indexes.models import CheckResult, EfPoint
from gateway.indexes.scene import MIN_QUERIES, Query, Scene, unavailable

EF_SWEEP = (16, 32, 64, 128, 256, 512)


@dataclass(slots=True)
class Measured:
    recall: float
    times_ms: list[float]
    queries: int
    expected_found: float | None = None
    expected_found_exact: float | None = None


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def _exact(scene: Scene, filtered: bool, queries: list[Query]) -> list[list[Hit]]:
    key = ("exact", filtered)
    if key not in scene.memo:
        scene.memo[key] = scene.collection.search_many(
            [q.vector for q in queries], scene.config.k, True, None, [q.where for q in queries]
        )
    found: list[list[Hit]] = scene.memo[key]
    return found


def _found_expected(scene: Scene, queries: list[Query], results: list[list[Hit]]) -> float | None:
    """Share of queries with expected ids whose results hold one of them (a point's id or
    its source id)."""
    judged = [(q, hits) for q, hits in zip(queries, results, strict=True) if q.expected]
    if not judged:
        return None
    field = scene.config.source_field
    ids = {h.id for _, hits in judged for h in hits}
    sources = {}
    if field is not None and ids:
        sources = {
            p.id: p.payload.get(field) for p in scene.collection.retrieve(sorted(ids, key=str))
        }
    found = 0
    for query, hits in judged:
        names = {str(h.id) for h in hits} | {str(sources.get(h.id)) for h in hits}
        found += bool(names & set(query.expected))
    return found / len(judged)


def measure(scene: Scene, filtered: bool, hnsw_ef: int | None) -> Measured | None:
    key = ("approximate", filtered, hnsw_ef)
    if key in scene.memo:
        cached: Measured | None = scene.memo[key]
        return cached
    queries, _ = scene.queries(filtered)
    if len(queries) < MIN_QUERIES:
        scene.memo[key] = None
        return None
    exact = _exact(scene, filtered, queries)
    recalls, times, approximate = [], [], []
    for query, truth in zip(queries, exact, strict=True):
        started = time.perf_counter()
        hits = scene.collection.search(query.vector, scene.config.k, False, hnsw_ef, query.where)
        times.append((time.perf_counter() - started) * 1000)
        approximate.append(hits)
        if truth:
            recalls.append(len({h.id for h in hits} & {h.id for h in truth}) / len(truth))
    measured = Measured(
        recall=statistics.fmean(recalls) if recalls else 1.0,
        times_ms=times,
        queries=len(queries),
        expected_found=_found_expected(scene, queries, approximate),
        expected_found_exact=_found_expected(scene, queries, exact),
    )
    scene.memo[key] = measured
    return measured


def _recall(scene: Scene, filtered: bool) -> CheckResult:
    name = "recall_filtered" if filtered else "recall"
    if scene.prepared.golden_problem:
        return unavailable(name, scene.prepared.golden_problem)
    if not scene.facts.points:
        return unavailable(name, "the collection is empty")
    queries, origin = scene.queries(filtered)
    if len(queries) < MIN_QUERIES:
        if filtered and origin == "sampled" and scene.config.source_field is None:
            reason = "no filter to test: set source_field, or give golden queries a `filter`"
        else:
            which = " with a filter" if filtered else ""
            reason = f"{len(queries)} {origin} queries{which}; at least {MIN_QUERIES} are needed"
        return unavailable(name, reason)
    ef = scene.config.hnsw_ef
    measured = measure(scene, filtered, ef)
    assert measured is not None
    k = scene.config.k
    kind = "filtered " if filtered else ""
    return CheckResult(
        name=name,
        status=scene.grade("recall", measured.recall),
        value=round(measured.recall, 4),
        unit=f"recall@{k}",
        summary=f"recall@{k} {measured.recall:.3f} of the approximate search against exact "
        f"search over {measured.queries} {origin} {kind}queries at hnsw_ef "
        f"{ef if ef is not None else 'default'} ({scene.bounds('recall')})",
        details={
            "queries": measured.queries,
            "source": origin,
            "k": k,
            "hnsw_ef": ef,
            "expected_found": measured.expected_found,
            "expected_found_exact": measured.expected_found_exact,
        },
    )


def recall(scene: Scene) -> CheckResult:
    return _recall(scene, filtered=False)


def recall_filtered(scene: Scene) -> CheckResult:
    return _recall(scene, filtered=True)


def latency(scene: Scene) -> CheckResult:
    if not scene.facts.points:
        return unavailable("latency", "the collection is empty")
    measured = measure(scene, False, scene.config.hnsw_ef)
    if measured is None:
        return unavailable("latency", f"fewer than {MIN_QUERIES} queries to time")
    p50, p95 = percentile(measured.times_ms, 0.5), percentile(measured.times_ms, 0.95)
    return CheckResult(
        name="latency",
        status=scene.grade("latency_p95_ms", p95),
        value=round(p95, 3),
        unit="ms p95",
        summary=f"approximate search p50 {p50:.2f} ms, p95 {p95:.2f} ms over "
        f"{measured.queries} queries, measured in the checking process "
        f"({scene.bounds('latency_p95_ms')})",
        details={"p50_ms": round(p50, 3), "p95_ms": round(p95, 3), "queries": measured.queries},
    )


def ef_curve(scene: Scene) -> list[EfPoint]:
    if not scene.facts.points or scene.prepared.golden_problem:
        return []
    sweep = sorted({*EF_SWEEP, *([scene.config.hnsw_ef] if scene.config.hnsw_ef else [])})
    points = []
    for ef in sweep:
        measured = measure(scene, False, ef)
        if measured is None:
            return []
        points.append(
            EfPoint(
                hnsw_ef=ef,
                recall=round(measured.recall, 4),
                p50_ms=round(percentile(measured.times_ms, 0.5), 3),
                p95_ms=round(percentile(measured.times_ms, 0.95), 3),
            )
        )
    return points
