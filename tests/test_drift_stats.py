"""The drift statistics on synthetic data: each method finds a known shift, and on data drawn
from one distribution it raises false alarms at most at the rate the README states (measured
over 200 seeds). Also: a saved reference reads back the same, and the large-reference
approximations (from saved quantiles) stay close to the exact figures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from gateway.drift import embedding_tests, stattests
from gateway.drift.columns import Column, prepare
from gateway.drift.compare import Options, compare, single_threaded_math, verdict
from gateway.drift.reference import Reference, build_reference
from gateway.drift.sketch import EmbeddingSketch, NumericSketch, Sketch

SEEDS = 200
Draw = Callable[[np.random.Generator, float], npt.NDArray[Any]]

# False alarms per method over 200 same-distribution seeds (the sizes in CASES): the rate the
# README states, just above the measured one. KS and Z sit at their 5% level. Evidently's
# chi-squared takes the reference's shares as exact, ignoring their own noise, so with a
# reference only 2.5x the window it alarms more (13% measured). The domain classifier: 9.5%
# on these seeds (6.8% over 600 others): its AUC varies a little more than random scores'. The
# distances' fixed thresholds sit
# far above their noise, except Wasserstein's 0.1 at 500 current rows (5%).
FALSE_ALARM_BOUND = {
    "ks": 0.06,
    "chisquare": 0.15,
    "z": 0.07,
    "wasserstein": 0.07,
    "jensenshannon": 0.01,
    "psi": 0.01,
    "domain_classifier": 0.10,
    "mmd": 0.01,
    "centroid_cosine": 0.01,
    "dataset": 0.01,
}


@pytest.fixture(autouse=True)
def one_math_thread() -> Any:
    """As the drift job runs: on a busy machine, BLAS threads only fight each other."""
    with single_threaded_math():
        yield


def normal(rng: np.random.Generator, shift: float, rows: int) -> npt.NDArray[Any]:
    return rng.normal(shift, 1.0, rows)


def categories(rng: np.random.Generator, shift: float, rows: int, k: int) -> npt.NDArray[Any]:
    shares = np.full(k, 1 / k)
    shares[0] += shift
    shares[1:] -= shift / (k - 1)
    return rng.choice([f"c{i}" for i in range(k)], rows, p=shares)


def embeddings(rng: np.random.Generator, shift: float, rows: int) -> npt.NDArray[Any]:
    """Unit vectors around a fixed direction; a shift turns part of the mass elsewhere."""
    base = np.zeros(16)
    base[0] = 1.0
    moved = np.zeros(16)
    moved[1] = 1.0
    centre = (1 - shift) * base + shift * moved
    vectors = centre + rng.normal(0, 0.6, (rows, 16))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


# test -> (reference rows, current rows, draw(rng, shift, rows), shift that must be found)
CASES: dict[str, tuple[int, int, Callable[..., Any], float]] = {
    "ks": (500, 200, normal, 0.4),
    "wasserstein": (5000, 500, normal, 0.3),
    "psi": (5000, 500, normal, 0.5),
    "chisquare": (500, 200, lambda r, s, n: categories(r, s, n, 4), 0.15),
    "z": (500, 200, lambda r, s, n: categories(r, s, n, 2), 0.15),
    "jensenshannon": (5000, 500, lambda r, s, n: categories(r, s, n, 4), 0.15),
    "domain_classifier": (300, 200, embeddings, 0.5),
    "mmd": (300, 200, embeddings, 0.5),
    "centroid_cosine": (300, 200, embeddings, 0.5),
}


def reference_of(values: npt.NDArray[Any]) -> Sketch:
    """The column's sketch as saved and read back."""
    saved = build_reference({"x": values}, source="test").to_json()
    return Reference.from_json(saved).columns["x"]


def outcome(test: str, reference: Sketch, current: npt.NDArray[Any]) -> stattests.Outcome:
    column = prepare(current, reference.kind)
    if isinstance(reference, EmbeddingSketch):
        run = embedding_tests.EMBEDDING_TESTS[test]
        return run(reference, column.values)  # type: ignore[operator,no-any-return]
    assert not isinstance(reference, EmbeddingSketch)
    return stattests.run(test, reference, column)


@pytest.mark.parametrize("test", sorted(CASES))
def test_each_method_finds_a_known_shift(test: str) -> None:
    ref_rows, cur_rows, draw, shift = CASES[test]
    rng = np.random.default_rng(7)
    reference = reference_of(draw(rng, 0.0, ref_rows))
    assert not outcome(test, reference, draw(rng, 0.0, cur_rows)).drifted
    found = outcome(test, reference, draw(rng, shift, cur_rows))
    assert found.drifted, found


def false_alarm_rate(test: str) -> float:
    ref_rows, cur_rows, draw, _ = CASES[test]
    alarms = 0
    for seed in range(SEEDS):
        rng = np.random.default_rng(1000 + seed)
        reference = reference_of(draw(rng, 0.0, ref_rows))
        alarms += outcome(test, reference, draw(rng, 0.0, cur_rows)).drifted
    return alarms / SEEDS


@pytest.mark.parametrize("test", sorted(CASES))
def test_same_distribution_stays_under_the_stated_false_alarm_rate(test: str) -> None:
    rate = false_alarm_rate(test)
    assert rate <= FALSE_ALARM_BOUND[test], f"{test}: {rate:.3f} false alarms over {SEEDS} seeds"


def llm_like(rng: np.random.Generator, rows: int) -> dict[str, npt.NDArray[Any]]:
    return {
        "latency_ms": rng.lognormal(5, 0.4, rows),
        "output_tokens": rng.poisson(80, rows).astype(float),
        "input_tokens": rng.poisson(30, rows).astype(float),
        "cost_usd": rng.gamma(2.0, 1e-4, rows),
        "finish_reason": rng.choice(["stop", "length"], rows, p=[0.9, 0.1]),
        "refusal": rng.random(rows) < 0.03,
        "error": rng.random(rows) < 0.02,
        "tool_call": rng.random(rows) < 0.2,
    }


def test_a_subject_of_unshifted_columns_is_almost_never_flagged() -> None:
    """The verdict (a share of drifted columns >= 0.5) over eight columns, 200 seeds."""
    alarms = 0
    for seed in range(SEEDS):
        rng = np.random.default_rng(5000 + seed)
        reference = build_reference(llm_like(rng, 500), source="test")
        current = {k: prepare(v, reference.columns[k].kind) for k, v in llm_like(rng, 200).items()}
        found = verdict(compare(reference.columns, current, Options()), 0.5)
        alarms += bool(found.drifted)
    assert alarms / SEEDS <= FALSE_ALARM_BOUND["dataset"]


def test_a_shift_in_most_columns_flags_the_subject_and_names_them() -> None:
    rng = np.random.default_rng(3)
    reference = build_reference(llm_like(rng, 500), source="test")
    shifted = llm_like(rng, 200)
    shifted["latency_ms"] *= 2
    shifted["output_tokens"] += 40
    shifted["input_tokens"] += 20
    shifted["cost_usd"] *= 3
    shifted["finish_reason"] = rng.choice(["stop", "length"], 200, p=[0.5, 0.5])
    current = {k: prepare(v, reference.columns[k].kind) for k, v in shifted.items()}
    found = verdict(compare(reference.columns, current, Options()), 0.5)
    assert found.drifted
    shifted_columns = {"latency_ms", "output_tokens", "input_tokens", "cost_usd", "finish_reason"}
    assert shifted_columns <= set(found.drifted_columns)
    assert found.share >= 5 / 8


def test_evidentlys_rule_chooses_the_test() -> None:
    rng = np.random.default_rng(0)

    def chosen(values: Any, current: Any) -> str:
        reference = reference_of(np.asarray(values))
        assert not isinstance(reference, EmbeddingSketch)
        return stattests.default_test(reference, prepare(current, reference.kind))

    assert chosen(rng.normal(size=1000), rng.normal(size=50)) == "ks"
    assert chosen(rng.normal(size=1001), rng.normal(size=50)) == "wasserstein"
    assert chosen(rng.integers(0, 5, 800).astype(float), rng.integers(0, 5, 50)) == "chisquare"
    assert chosen(rng.integers(0, 2, 800).astype(float), rng.integers(0, 2, 50)) == "z"
    # Distinct values are counted over both windows: 5 + a sixth only the current has.
    assert chosen(rng.integers(0, 5, 800).astype(float), np.array([5.0] * 50)) == "ks"
    assert chosen(rng.integers(0, 5, 3000).astype(float), rng.integers(0, 5, 50)) == (
        "jensenshannon"
    )
    assert chosen(rng.choice(["a", "b", "c"], 2000), rng.choice(["a", "b"], 50)) == (
        "jensenshannon"
    )
    assert chosen(rng.choice(["a", "b", "c"], 900), rng.choice(["a", "b"], 50)) == "chisquare"


def test_a_large_reference_keeps_quantiles_and_stays_close_to_the_exact_figures() -> None:
    rng = np.random.default_rng(11)
    data = rng.gamma(2.0, 1.0, 20_000)
    reference = reference_of(data)
    assert isinstance(reference, NumericSketch)
    assert reference.values is None
    assert reference.quantiles is not None
    for shift in (0.0, 0.2, 1.0):
        current = rng.gamma(2.0, 1.0, 2_000) + shift
        column = prepare(current, "numerical")
        exact_w = stats.wasserstein_distance(data, current) / data.std()
        assert stattests.wasserstein(reference, column) == pytest.approx(
            exact_w, rel=0.01, abs=2e-3
        )
        exact_ks = stats.ks_2samp(data, current, method="asymp").pvalue
        assert stattests.ks(reference, column) == pytest.approx(exact_ks, rel=0.15, abs=1e-3)


def test_unseen_categories_are_drift_not_an_error() -> None:
    reference = reference_of(np.array(["a", "b", "c"] * 100))
    current = prepare(np.array(["a", "b", "c", "d"] * 30), "categorical")
    assert not isinstance(reference, EmbeddingSketch)
    assert stattests.run("chisquare", reference, current).statistic == 0.0
    assert stattests.run("psi", reference, current).drifted


def test_too_few_current_values_give_no_verdict() -> None:
    rng = np.random.default_rng(2)
    reference = build_reference({"x": rng.normal(size=500)}, source="test")
    results = compare(
        reference.columns, {"x": Column("numerical", rng.normal(size=40))}, Options(min_rows=100)
    )
    assert results[0].drifted is None
    assert results[0].note == "not enough data: 40 current values, 100 needed"
    assert verdict(results, 0.5).drifted is None


def test_a_numerical_test_on_categories_is_refused_by_name() -> None:
    reference = build_reference({"x": ["a", "b"] * 200}, source="test")
    options = Options(columns={"x": "ks"}, min_rows=10)
    results = compare(reference.columns, {"x": prepare(["a"] * 50, "categorical")}, options)
    assert results[0].note == "ks takes numbers; this column holds categories"
