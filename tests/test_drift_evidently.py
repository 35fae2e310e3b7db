"""Our drift statistics against Evidently's (0.7.23, its legacy DataDriftTable and embedding
methods) on the same data: per column, the test chosen, its statistic and its verdict; PSI;
the share of drifted columns; and for embeddings the domain classifier's ROC AUC, MMD and the
centroids' cosine distance. The README states the agreement found here."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("evidently")

from evidently.legacy.calculations.stattests import psi_stat_test  # noqa: E402
from evidently.legacy.core import ColumnType  # noqa: E402
from evidently.legacy.metrics import DataDriftTable  # noqa: E402
from evidently.legacy.metrics.data_drift import embedding_drift_methods  # noqa: E402
from evidently.legacy.pipeline.column_mapping import ColumnMapping  # noqa: E402
from evidently.legacy.report import Report  # noqa: E402

from gateway.drift import embedding_tests  # noqa: E402
from gateway.drift.columns import prepare  # noqa: E402
from gateway.drift.compare import Options, compare, single_threaded_math, verdict  # noqa: E402
from gateway.drift.reference import Reference, build_reference  # noqa: E402
from gateway.drift.sketch import EmbeddingSketch  # noqa: E402

NAMES = {
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
}
NUMERICAL = ["wide", "counts", "flag"]
CATEGORICAL = ["tier", "region"]


def frame(rng: np.random.Generator, rows: int, shift: float) -> Any:
    tiers = ["free", "pro", "team", "enterprise"]
    tier_shares = np.array([0.4 + shift / 2, 0.3, 0.2, 0.1 - shift / 2]).clip(0.01)
    return pd.DataFrame(
        {
            "wide": rng.gamma(2.0 + shift, 1.0, rows),  # many values: KS or Wasserstein
            "counts": rng.integers(0, 4, rows).astype(float) + (rng.random(rows) < shift),
            "flag": (rng.random(rows) < 0.3 + shift / 3).astype(float),  # 2 values: Z
            "tier": rng.choice(tiers, rows, p=tier_shares / tier_shares.sum()),
            "region": rng.choice(["eu", "us"], rows, p=[0.5 + shift / 3, 0.5 - shift / 3]),
        }
    )


def evidently(reference: Any, current: Any) -> dict[str, Any]:
    report = Report(metrics=[DataDriftTable()])
    mapping = ColumnMapping(numerical_features=NUMERICAL, categorical_features=CATEGORICAL)
    report.run(reference_data=reference, current_data=current, column_mapping=mapping)
    result: dict[str, Any] = report.as_dict()["metrics"][0]["result"]
    return result


def ours(reference: Any, current: Any) -> tuple[Any, Any]:
    kinds: dict[str, Any] = {c: "numerical" for c in NUMERICAL} | {
        c: "categorical" for c in CATEGORICAL
    }
    columns = {c: reference[c].to_numpy() for c in reference.columns}
    saved = build_reference(columns, source="test", kinds=kinds).to_json()
    sketches = Reference.from_json(saved).columns  # as saved and read back
    window = {c: prepare(current[c].to_numpy(), kinds[c]) for c in current.columns}
    results = compare(sketches, window, Options(min_rows=1))
    return results, verdict(results, 0.5)


# (reference rows, current rows): at most 1,000 reference rows the p-value tests run (exact);
# above, the distances, from saved quantiles for "wide".
SIZES = [(800, 300), (5000, 600)]


@pytest.mark.parametrize(("ref_rows", "cur_rows"), SIZES)
def test_statistics_and_verdicts_agree_with_evidently(ref_rows: int, cur_rows: int) -> None:
    compared = verdicts = 0
    for seed, shift in enumerate([0.0, 0.0, 0.05, 0.1, 0.2, 0.3, 0.0, 0.15]):
        rng = np.random.default_rng(100 + seed)
        reference, current = frame(rng, ref_rows, 0.0), frame(rng, cur_rows, shift)
        theirs = evidently(reference, current)
        with single_threaded_math():
            results, found = ours(reference, current)
        for result in results:
            column = theirs["drift_by_columns"][result.column]
            verdict_test, psi = result.tests[0].outcome, result.tests[1].outcome
            assert verdict_test.test == NAMES[column["stattest_name"]], result.column
            approximate = ref_rows > 1000 and result.column == "wide"  # from quantiles
            tolerance = {"abs": 2e-3} if approximate else {"rel": 1e-9, "abs": 1e-12}
            assert verdict_test.statistic == pytest.approx(column["drift_score"], **tolerance)
            assert verdict_test.threshold == column["stattest_threshold"]
            assert verdict_test.drifted == column["drift_detected"], (seed, result.column)
            kind = ColumnType.Numerical if result.column in NUMERICAL else ColumnType.Categorical
            expected_psi = psi_stat_test(
                reference[result.column], current[result.column], kind, None
            )
            psi_tolerance = {"rel": 0.05, "abs": 1e-3} if approximate else tolerance
            assert psi.statistic == pytest.approx(expected_psi.drift_score, **psi_tolerance)
            assert psi.drifted == expected_psi.drifted
            compared += 1
            verdicts += verdict_test.drifted
        assert found.share == pytest.approx(theirs["share_of_drifted_columns"])
        assert found.drifted == theirs["dataset_drift"]
    assert 0 < verdicts < compared  # both verdicts were met


def vectors(rng: np.random.Generator, rows: int, shift: float) -> npt.NDArray[np.float32]:
    centre = np.zeros(24)
    centre[0], centre[1] = 1 - shift, shift
    found = centre + rng.normal(0, 0.5, (rows, 24))
    return (found / np.linalg.norm(found, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_embedding_statistics_agree_with_evidently(shift: float) -> None:
    rng = np.random.default_rng(42)
    reference, current = vectors(rng, 600, 0.0), vectors(rng, 400, shift)
    sketch = build_reference({"e": reference}, source="test").columns["e"]
    assert isinstance(sketch, EmbeddingSketch)

    def as_frame(data: npt.NDArray[np.float32]) -> Any:
        return pd.DataFrame(data.astype(np.float64))

    with single_threaded_math():
        auc = embedding_tests.domain_classifier(sketch, current)
        mmd = embedding_tests.mmd(sketch, current)
        cosine = embedding_tests.centroid_cosine(sketch, current)
        their_auc, their_drift, _ = embedding_drift_methods.model(bootstrap=True)(
            as_frame(current), as_frame(reference)
        )
        their_mmd, _, _ = embedding_drift_methods.mmd()(as_frame(current), as_frame(reference))
        their_cosine, _, _ = embedding_drift_methods.distance(dist="cosine")(
            as_frame(current), as_frame(reference)
        )
    assert auc.statistic == pytest.approx(their_auc, abs=1e-9)
    assert auc.drifted == their_drift == (shift > 0)  # their bar: 100 random classifiers
    assert mmd.statistic == pytest.approx(their_mmd, rel=1e-6, abs=1e-9)
    assert cosine.statistic == pytest.approx(their_cosine, rel=1e-6, abs=1e-9)
