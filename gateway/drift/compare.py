"""A reference against a current window, column by column, and the subject's verdict: drift
when the share of columns whose verdict test found drift reaches `drift_share` (0.5).

Each column has one verdict test (chosen by Evidently's rule unless configured) and tests
reported beside it (PSI for numbers and categories; centroid distance and MMD for texts),
which do not count toward the share. A column with fewer current values than `min_rows`
(time to first token when few calls stream) gets no verdict and does not count either.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from gateway.drift import embedding_tests, stattests
from gateway.drift.columns import Column
from gateway.drift.options import Options
from gateway.drift.sketch import EmbeddingSketch, Sketch
from gateway.drift.stattests import NotApplicable, Outcome

Role = Literal["verdict", "reported"]


@dataclass(frozen=True)
class TestResult:
    outcome: Outcome
    role: Role


@dataclass
class ColumnResult:
    column: str
    kind: str
    reference_rows: int
    current_rows: int
    tests: list[TestResult] = field(default_factory=list)
    note: str | None = None  # why there is no verdict

    @property
    def drifted(self) -> bool | None:
        for result in self.tests:
            if result.role == "verdict":
                return result.outcome.drifted
        return None


@dataclass(frozen=True)
class Verdict:
    drifted: bool | None  # None: no column had enough data
    share: float
    drifted_columns: list[str]
    columns: int


def compare(
    reference: Mapping[str, Sketch], current: Mapping[str, Column], options: Options
) -> list[ColumnResult]:
    results = []
    for name, sketch in reference.items():
        column = current.get(name)
        rows = len(column) if column is not None else 0
        result = ColumnResult(name, sketch.kind, sketch.count, rows)
        results.append(result)
        if column is None or rows < options.min_rows:
            result.note = f"not enough data: {rows} current values, {options.min_rows} needed"
            continue
        try:
            result.tests = _tests(name, sketch, column, options)
        except NotApplicable as exc:
            result.note = str(exc)
    return results


def _tests(name: str, sketch: Sketch, column: Column, options: Options) -> list[TestResult]:
    threshold = options.thresholds.get
    if isinstance(sketch, EmbeddingSketch):
        vectors = column.values
        found = []
        for test, run in embedding_tests.EMBEDDING_TESTS.items():
            if test == "domain_classifier":
                outcome = embedding_tests.domain_classifier(
                    sketch, vectors, threshold(test), options.small_reference_rows
                )
            else:
                outcome = run(sketch, vectors, threshold(test))
            found.append(TestResult(outcome, "verdict" if test == options.text else "reported"))
        return sorted(found, key=lambda r: r.role != "verdict")
    chosen = options.columns.get(name)
    if chosen is None:
        configured = options.numerical if sketch.kind == "numerical" else options.categorical
        chosen = configured if configured != "auto" else None
    if chosen is None:
        chosen = stattests.default_test(
            sketch, column, options.small_reference_rows, options.max_categorical_values
        )
    found = [TestResult(stattests.run(chosen, sketch, column, threshold(chosen)), "verdict")]
    if chosen != "psi":
        found.append(TestResult(stattests.run("psi", sketch, column, threshold("psi")), "reported"))
    return found


def verdict(results: list[ColumnResult], drift_share: float) -> Verdict:
    judged = [r for r in results if r.drifted is not None]
    hits = [r.column for r in judged if r.drifted]
    if not judged:
        return Verdict(None, 0.0, [], 0)
    share = len(hits) / len(judged)
    return Verdict(share >= drift_share, share, hits, len(judged))


@contextlib.contextmanager
def single_threaded_math() -> Iterator[None]:
    """numpy's and scikit-learn's BLAS on one thread: the job shares the machine with the
    event loop, and several BLAS threads on small matrices mostly wait for each other (MMD of
    300 x 200 vectors took 14 ms with them, 2.7 ms without, on this 2-core machine)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield
