"""The example classic model: scikit-learn trained on a data set that ships inside
scikit-learn (no network), saved with skops, with what registering it records: the data set
written out and hashed, per-feature reference statistics, the signature, a held-out score,
and the training rows' columns as serving names them (features, `predict`,
`predict_proba[j]`), from which the CLI makes the version's drift reference."""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.classic.artifacts import import_skops, sha256_of
from gateway.classic.expectations import Expectations, FeatureExpectation
from gateway.classic.signature import Signature, TensorSpec
from gateway.classic.stats import feature_stats

# Data sets bundled with scikit-learn (sklearn.datasets.load_<name>), all classification.
DATASETS = ("iris", "wine", "breast_cancer")
TEST_SIZE = 0.25
SEED = 0
MAX_ITER = 1000


@dataclass(frozen=True, slots=True)
class TrainedExample:
    artifact: Path
    artifact_sha256: str
    dataset: Path
    dataset_sha256: str
    signature: Signature
    feature_stats: dict[str, Any]
    expectations: Expectations
    hyperparameters: dict[str, Any]
    accuracy: float
    classes: list[str]
    # The training rows as the model saw them (float32) and what it predicts for them, by
    # the column names drift gives a served call's values (gateway/drift/predictions.py).
    training_columns: dict[str, list[Any]]


def train_example(dataset: str, folder: Path) -> TrainedExample:
    """Trains, saves and describes the model; its files go in `folder` (created)."""
    import numpy as np
    from sklearn import datasets
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sio = import_skops()  # first: it imports scikit-learn without torch
    bunch = getattr(datasets, f"load_{dataset}")()
    features = [str(name) for name in bunch.feature_names]
    rows, target = np.asarray(bunch.data), np.asarray(bunch.target)
    folder.mkdir(parents=True, exist_ok=True)
    data_file = folder / f"{dataset}.csv"
    _write_csv(data_file, features, rows, target)
    train, test, train_target, test_target = train_test_split(
        rows, target, test_size=TEST_SIZE, random_state=SEED, stratify=target
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=MAX_ITER))
    seen = train.astype(np.float32)
    model.fit(seen, train_target)
    accuracy = float(model.score(test.astype(np.float32), test_target))
    classes = [str(name) for name in bunch.target_names]
    signature = Signature(
        inputs=[TensorSpec(name="input-0", datatype="FP32", shape=[-1, len(features)])],
        outputs=[
            TensorSpec(name="predict", datatype="INT64", shape=[-1]),
            TensorSpec(name="predict_proba", datatype="FP64", shape=[-1, len(classes)]),
        ],
        features=features,
    )
    stats = feature_stats(train, features)
    saved = sio.dumps(model)
    artifact = folder / f"{dataset}-{sha256_of(saved)[7:19]}.skops"
    _write_atomically(artifact, saved)
    return TrainedExample(
        artifact=artifact,
        artifact_sha256=sha256_of(saved),
        dataset=data_file,
        dataset_sha256=sha256_of(data_file.read_bytes()),
        signature=signature,
        feature_stats=stats,
        expectations=expectations_of(stats),
        hyperparameters={
            "estimator": "StandardScaler + LogisticRegression",
            "max_iter": MAX_ITER,
            "test_size": TEST_SIZE,
            "random_state": SEED,
        },
        accuracy=accuracy,
        classes=classes,
        training_columns=_columns(model, seen, features, len(classes)),
    )


def _columns(model: Any, rows: Any, features: list[str], classes: int) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {
        name: rows[:, index].tolist() for index, name in enumerate(features)
    }
    columns["predict"] = model.predict(rows).tolist()
    probabilities = model.predict_proba(rows)
    for index in range(classes):
        columns[f"predict_proba[{index}]"] = probabilities[:, index].tolist()
    return columns


def expectations_of(stats: dict[str, Any], enforce: bool = False) -> Expectations:
    """The training rows' range and null rate of each feature, from their statistics."""
    rows = stats["rows"] or 1
    return Expectations(
        enforce=enforce,
        features={
            name: FeatureExpectation(
                min=found["min"], max=found["max"], max_null_rate=found["nulls"] / rows
            )
            for name, found in stats["features"].items()
        },
    )


def _write_csv(path: Path, features: list[str], rows: Any, target: Any) -> None:
    """The data set as trained on: its features and the target, one row per sample."""
    with tempfile.NamedTemporaryFile(
        "w", newline="", dir=path.parent, delete=False, suffix=".tmp"
    ) as handle:
        writer = csv.writer(handle)
        writer.writerow([*features, "target"])
        for row, label in zip(rows.tolist(), target.tolist(), strict=True):
            writer.writerow([*(repr(float(v)) for v in row), int(label)])
    Path(handle.name).replace(path)


def _write_atomically(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as handle:
        handle.write(data)
    Path(handle.name).replace(path)
