"""Model tests of classic registry versions, as a user runs them: scikit-learn models trained
here on synthetic data (seeded), saved with skops, registered with the real CLI; suites with a
labelled CSV or Parquet file run by `gateway eval run` (the versions predict over /v2 in
process); `gateway registry promote --require-eval` gated on their runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from gateway.classic.artifacts import import_skops
from tests.conftest import Project

pytestmark = pytest.mark.slow  # each test starts `gateway` processes that load scikit-learn
SEED = 7
FEATURES = ["x1", "x2", "g"]


def population(seed: int, rows: int) -> pd.DataFrame:
    """Applicants of two groups whose true outcome depends on x1 and x2 alone."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b"], size=rows)
    x1 = rng.normal(size=rows)
    x2 = rng.normal(size=rows)
    approved = (x1 + 0.5 * x2 + rng.normal(scale=0.3, size=rows) > 0).astype(int)
    return pd.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "g": (group == "b").astype(float),
            "group": group,
            "approved": approved,
        }
    )


def biased(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A deliberately biased sample: most of group b's approvals recorded as refusals."""
    rng = np.random.default_rng(seed)
    flipped = frame.copy()
    unfair = (flipped["group"] == "b") & (rng.random(len(flipped)) < 0.9)
    flipped.loc[unfair, "approved"] = 0
    return flipped


def save_model(frame: pd.DataFrame, path: Path) -> Path:
    from sklearn.linear_model import LogisticRegression

    sio = import_skops()
    model = LogisticRegression().fit(frame[FEATURES], frame["approved"])
    path.write_bytes(sio.dumps(model))
    return path


def succeed(project: Project, *args: str) -> str:
    result = project.gateway(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def credit(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A project serving registry model `credit`: @1 trained on a fair sample, @2 on a biased
    one, @1 labelled production; a held-out CSV and Parquet file beside its suites."""
    root = tmp_path_factory.mktemp("credit")
    config = {
        "model_list": [{"model_name": "credit", "litellm_params": {"model": "registry/credit"}}]
    }
    (root / "gateway.yaml").write_text(yaml.safe_dump(config))
    (root / "prompts").mkdir()
    project = Project(root, "unused")
    train = population(SEED, 3000)
    train.to_csv(root / "train.csv", index=False)
    biased(train, SEED).to_csv(root / "train-biased.csv", index=False)
    holdout = population(SEED + 1, 800)
    holdout.to_csv(root / "holdout.csv", index=False)
    holdout.to_parquet(root / "holdout.parquet", index=False)
    for number, data in ((1, "train.csv"), (2, "train-biased.csv")):
        artifact = save_model(pd.read_csv(root / data), root / f"credit-{number}.skops")
        out = succeed(
            project,
            "registry",
            "register",
            "credit",
            "--alias",
            "credit",
            "--artifact",
            str(artifact),
            "--dataset",
            str(root / data),
        )
        assert out.strip() == f"registered credit@{number} (alias credit)"
    succeed(project, "registry", "promote", "credit@1", "production", "--approver", "ana")
    return project


def suite(project: Project, name: str, **spec: Any) -> Path:
    path = project.root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


FAIRNESS = {
    "target": "registry:credit@latest",
    "data": {"file": "holdout.csv", "label": "approved", "sensitive": "group"},
    "metrics": {
        "accuracy": {"min": 0.7},
        "demographic_parity_difference": {"max": 0.1},
        "equalized_odds_difference": {"max": 0.15},
    },
}


def test_registering_with_a_dataset_records_expectations(credit: Project) -> None:
    shown = json.loads(succeed(credit, "registry", "show", "credit@1"))
    assert shown["signature"]["features"] == FEATURES
    expected = shown["expectations"]
    assert expected["enforce"] is False
    assert list(expected["features"]) == FEATURES
    train = pd.read_csv(credit.root / "train.csv")
    assert expected["features"]["x1"] == {
        "min": pytest.approx(train["x1"].min()),
        "max": pytest.approx(train["x1"].max()),
        "max_null_rate": 0.0,
    }
    assert expected["features"]["g"]["min"] == 0.0
    assert expected["features"]["g"]["max"] == 1.0
    assert shown["feature_stats"]["rows"] == 3000


def test_a_fairness_threshold_fails_the_biased_version_and_gates_its_promotion(
    credit: Project, tmp_path: Path
) -> None:
    path = suite(credit, "fairness", **FAIRNESS)
    report = tmp_path / "fair.json"
    fair = credit.gateway(
        "eval", "run", str(path), "--target", "registry:credit@1", "--json", str(report)
    )
    assert fair.returncode == 0, fair.stdout + fair.stderr
    assert "PASSED" in fair.stdout
    passed = json.loads(report.read_text())
    assert passed["verdict"]["passed"] is True
    assert passed["candidate"]["version"] == "registry:credit@1"
    values = passed["candidate"]["metrics"]
    assert values["accuracy"] > 0.85
    assert values["demographic_parity_difference"] < 0.1

    markdown = tmp_path / "biased.md"
    unfair = credit.gateway(
        "eval", "run", str(path), "--target", "registry:credit@2", "--markdown", str(markdown)
    )
    assert unfair.returncode == 1, unfair.stdout + unfair.stderr
    failed_line = unfair.stdout.strip().splitlines()[-2]
    assert failed_line.startswith("FAILED: demographic_parity_difference 0.")
    assert "is above the maximum 0.1" in failed_line
    table = markdown.read_text()
    assert "### ❌ Model test `fairness`: failed" in table
    assert "| metric | value | baseline | threshold | verdict |" in table
    assert "| `demographic_parity_difference` |" in table
    assert "<= 0.1 | ❌ fail |" in table

    refused = credit.gateway(
        "registry", "promote", "credit@2", "production", "--approver", "ana",
        "--require-eval", "fairness",
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        "error: refusing to promote registry:credit@2: suite 'fairness' has no passing run of "
        "it; its latest run failed: run_"
    )
    assert "demographic_parity_difference 0." in refused.stderr
    assert "--target registry:credit@2)" in refused.stderr
    allowed = succeed(
        credit, "registry", "promote", "credit@1", "staging", "--approver", "ana",
        "--require-eval", "evals/fairness.yaml",
    )  # fmt: skip
    assert "credit: staging (none) -> 1 (approved by ana; eval run run_" in allowed


def test_thresholds_and_max_regression_against_the_baseline_on_parquet(
    credit: Project, tmp_path: Path
) -> None:
    spec = {
        "target": "registry:credit@2",
        "baseline": "registry:credit@production",
        "data": {"file": "holdout.parquet", "label": "approved", "positive_class": 1},
        "metrics": {
            "accuracy": {"max_regression": 0.01},
            "precision": {"min": 0.5},
            "recall": {"min": 0.99},
            "f1": {"min": 0.5, "max_regression": 0.5},
            "roc_auc": {"min": 0.75},
        },
    }
    path = suite(credit, "quality", **spec)
    report = tmp_path / "quality.json"
    result = credit.gateway("eval", "run", str(path), "--json", str(report))
    assert result.returncode == 1, result.stdout + result.stderr
    found = json.loads(report.read_text())
    rows = {r["metric"]: r for r in found["candidate"]["results"]}
    assert list(rows) == ["accuracy", "precision", "recall", "f1", "roc_auc"]
    accuracy = rows["accuracy"]
    assert accuracy["baseline"] == found["baseline"]["metrics"]["accuracy"]
    assert accuracy["regression"] == pytest.approx(accuracy["baseline"] - accuracy["value"])
    assert accuracy["regression"] > 0.01
    assert accuracy["passed"] is False
    assert "worse than the baseline's" in accuracy["reasons"][0]
    assert "registry:credit@1; allowed: 0.01" in accuracy["reasons"][0]
    assert rows["recall"]["passed"] is False
    assert rows["recall"]["reasons"] == [
        f"recall {rows['recall']['value']:.4f} is below the minimum 0.99"
    ]
    assert rows["f1"]["passed"] is True
    assert rows["roc_auc"]["passed"] is True
    assert found["baseline"]["version"] == "registry:credit@1"
    assert (found["candidate"]["cases"], found["candidate"]["failed"]) == (5, 2)
    assert "accuracy" in found["verdict"]["regressed"]
    table = result.stdout
    assert "metric" in table
    assert "baseline" in table
    assert "threshold" in table
    assert "accuracy" in table
    assert "FAIL" in table
    assert "PASS" in table


def test_regression_metrics_rmse_and_mae(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    root = tmp_path
    config = {
        "model_list": [{"model_name": "price", "litellm_params": {"model": "registry/price"}}]
    }
    (root / "gateway.yaml").write_text(yaml.safe_dump(config))
    (root / "prompts").mkdir()
    project = Project(root, "unused")
    rng = np.random.default_rng(SEED)
    frame = pd.DataFrame({"size": rng.uniform(20, 200, 400), "rooms": rng.integers(1, 6, 400)})
    frame["price"] = 3.0 * frame["size"] + 10 * frame["rooms"] + rng.normal(0, 5, 400)
    model = LinearRegression().fit(frame[["size", "rooms"]], frame["price"])
    artifact = root / "price.skops"
    artifact.write_bytes(import_skops().dumps(model))
    frame.to_csv(root / "houses.csv", index=False)
    succeed(project, "registry", "register", "price", "--alias", "price", "--artifact",
            str(artifact))  # fmt: skip
    spec = {
        "target": "registry:price@1",
        "data": {"file": "houses.csv", "label": "price"},
        "metrics": {"rmse": {"max": 6.0}, "mae": {"max": 1.0}},
    }
    report = tmp_path / "price.json"
    result = project.gateway("eval", "run", str(suite(project, "price", **spec)), "--json",
                             str(report))  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    values = json.loads(report.read_text())["candidate"]["metrics"]
    residual = frame["price"] - model.predict(frame[["size", "rooms"]])
    assert values["rmse"] == pytest.approx(float(np.sqrt((residual**2).mean())), rel=1e-6)
    assert values["mae"] == pytest.approx(float(residual.abs().mean()), rel=1e-6)
    assert f"mae {values['mae']:.4f} is above the maximum 1" in result.stdout


BAD_SUITES: list[tuple[dict[str, Any], str]] = [
    (
        {"data": {"file": "holdout.csv", "label": "approvd"}, "metrics": {"f1": {"min": 1}}},
        "data: {root}/holdout.csv: no label column 'approvd' (columns: x1, x2, g, group, approved)",
    ),
    (
        {
            "data": {"file": "holdout.csv", "label": "approved", "features": ["x1", "x3"]},
            "metrics": {"f1": {"min": 1}},
        },
        "no feature column 'x3' (columns: x1, x2, g, group, approved)",
    ),
    (
        {
            "data": {"file": "holdout.csv", "label": "approved", "sensitive": "race"},
            "metrics": {"f1": {"min": 1}},
        },
        "no sensitive column 'race'",
    ),
    (
        {"data": {"file": "holdout.csv"}, "metrics": {"f1": {"min": 1}}},
        "data.label: Field required",
    ),
    (
        {
            "data": {"file": "holdout.csv", "label": "approved"},
            "metrics": {"accuracyy": {"min": 1}},
        },
        "unknown metric 'accuracyy'",
    ),
    (
        {
            "data": {"file": "holdout.csv", "label": "approved"},
            "metrics": {"demographic_parity_difference": {"max": 0.1}},
        },
        "demographic_parity_difference needs data.sensitive",
    ),
    (
        {"data": {"file": "holdout.csv", "label": "approved"}, "metrics": {"rmse": {}}},
        "give min, max or max_regression",
    ),
    (
        {"data": {"file": "holdout.json", "label": "approved"}, "metrics": {"f1": {"min": 1}}},
        "a data file is CSV (.csv) or Parquet (.parquet, .pq), not '.json'",
    ),
    (
        {
            "data": {"file": "holdout.csv", "label": "approved"},
            "metrics": {"f1": {"min": 1}},
            "cases": [{"vars": {"input": "x"}, "assert": [{"type": "equals", "value": "x"}]}],
        },
        "a model test (data:) takes no 'cases'",
    ),
    (
        {"data": {"file": "holdout.csv", "label": "approved"}},
        "a model test needs `metrics:`",
    ),
]


def test_bad_model_test_suites_are_refused_naming_what_is_wrong(credit: Project) -> None:
    paths = []
    for number, (spec, _) in enumerate(BAD_SUITES):
        paths.append(str(suite(credit, f"bad-{number}", target="registry:credit@1", **spec)))
    prompt = suite(credit, "bad-prompt", **{**FAIRNESS, "target": "prompt:greet@production"})
    result = credit.gateway("eval", "validate", *paths, str(prompt))
    assert result.returncode == 2
    errors = result.stderr.splitlines()
    for path, (_, message) in zip(paths, BAD_SUITES, strict=True):
        mine = [line for line in errors if line.startswith(path)]
        assert mine, f"{path} was not reported: {result.stderr}"
        assert message.format(root=credit.root) in mine[0], mine[0]
    assert "a model test (data:) targets a classic registry version" in result.stderr
    good = suite(credit, "good", **FAIRNESS)
    ok = succeed(credit, "eval", "validate", str(good))
    assert (
        ok.strip() == f"{good}: ok (model test: 800 rows, 3 metrics, target registry:credit@latest)"
    )


def test_a_version_refusing_the_rows_makes_the_run_an_error_not_a_pass(credit: Project) -> None:
    spec = {**FAIRNESS, "data": {**FAIRNESS["data"], "features": ["x1", "x2", "group"]}}
    result = credit.gateway("eval", "run", str(suite(credit, "wrong-columns", **spec)))
    assert result.returncode == 2
    assert "error: feature column 'group' holds '" in result.stderr
    assert "', not a number (the version takes FP64)" in result.stderr


def test_a_suite_of_cases_on_a_classic_version_says_to_write_a_model_test(
    credit: Project,
) -> None:
    cases = [{"vars": {"input": "hello"}, "assert": [{"type": "equals", "value": "hello"}]}]
    path = suite(credit, "chatty", target="registry:credit@1", cases=cases)
    result = credit.gateway("eval", "run", str(path), "--no-store")
    assert result.returncode == 2
    assert "error: registry:credit@1 is a classic version: test it with a model test" in (
        result.stderr
    )
