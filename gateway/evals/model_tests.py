"""Model tests: a suite whose target is a classic registry version and whose cases are the
rows of a labelled data file (CSV or Parquet). The version predicts every row through the
gateway's `/v2` infer, as it serves production; the suite's `metrics` are computed from the
predictions (scikit-learn, fairlearn) and each is held to its thresholds and to the baseline.

```yaml
target: registry:credit@latest
baseline: registry:credit@production
data:
  file: holdout.parquet       # beside the suite
  label: approved
  positive_class: 1
  sensitive: group
metrics:
  accuracy: {min: 0.8, max_regression: 0.02}
  demographic_parity_difference: {max: 0.1}
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Direction = Literal["higher", "lower"]
# Every metric, and which way is better (max_regression measures a step the other way).
METRICS: dict[str, Direction] = {
    "accuracy": "higher",
    "precision": "higher",
    "recall": "higher",
    "f1": "higher",
    "roc_auc": "higher",
    "rmse": "lower",
    "mae": "lower",
    "demographic_parity_difference": "lower",
    "equalized_odds_difference": "lower",
}
REGRESSION = frozenset({"rmse", "mae"})
FAIRNESS = frozenset({"demographic_parity_difference", "equalized_odds_difference"})
CLASSIFICATION = frozenset(METRICS) - REGRESSION

Category = str | int | float | bool


class DataSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    file: str = Field(
        min_length=1, description="A CSV (.csv) or Parquet (.parquet, .pq) file beside the suite."
    )
    label: str = Field(min_length=1, description="The column holding the true answer.")
    features: list[str] | None = Field(
        default=None,
        min_length=1,
        description="The columns the model takes, in its order (default: the version's "
        "signature features).",
    )
    positive_class: Category | None = Field(
        default=None,
        description="Binary metrics and fairness: the class counted as positive (default: "
        "the greater of two classes, as scikit-learn orders them).",
    )
    sensitive: str | None = Field(
        default=None, description="The column fairness metrics compare groups across."
    )
    prediction_output: str = Field(default="predict", description="The output with the answer.")
    probability_output: str = Field(
        default="predict_proba",
        description="The output with class probabilities (ROC AUC), when the version gives it.",
    )
    batch_size: int = Field(default=1000, ge=1, le=100_000, description="Rows per infer call.")


class MetricSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    min: float | None = Field(default=None, description="Fail below this.")
    max: float | None = Field(default=None, description="Fail above this.")
    max_regression: float | None = Field(
        default=None,
        ge=0,
        description="Fail when worse than the baseline version's by more than this.",
    )

    @model_validator(mode="after")
    def _something(self) -> MetricSpec:
        if self.min is None and self.max is None and self.max_regression is None:
            raise ValueError("give min, max or max_regression (or leave the metric out)")
        return self


def metric_problems(data: DataSpec | None, metrics: dict[str, MetricSpec] | None) -> str | None:
    """Why a suite's `data` and `metrics` do not go together (None: they do)."""
    if data is None:
        return None if not metrics else "metrics: a model test needs `data:` (file, label)"
    if not metrics:
        return "data: a model test needs `metrics:` (e.g. accuracy: {min: 0.8})"
    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        return f"metrics: unknown metric {unknown[0]!r} (known: {', '.join(METRICS)})"
    if set(metrics) & REGRESSION and set(metrics) & CLASSIFICATION:
        both = sorted(set(metrics) & REGRESSION) + sorted(set(metrics) & CLASSIFICATION)
        return f"metrics: {', '.join(both)} mix regression and classification metrics"
    fairness = sorted(set(metrics) & FAIRNESS)
    if fairness and data.sensitive is None:
        return f"metrics: {fairness[0]} needs data.sensitive (the column of groups)"
    return None


@dataclass(frozen=True, slots=True)
class ModelTest:
    """The suite's data, read and checked when the suite loads."""

    path: Path
    data: DataSpec
    metrics: dict[str, MetricSpec]
    frame: Any  # the pandas DataFrame

    @property
    def rows(self) -> int:
        return len(self.frame)

    @property
    def task(self) -> Literal["classification", "regression"]:
        return "regression" if set(self.metrics) & REGRESSION else "classification"


def load_model_test(suite: Path, data: DataSpec, metrics: dict[str, MetricSpec]) -> ModelTest:
    """Reads the data file; a ConfigError names the suite, the file and the column."""
    from gateway.classic.datafiles import DataFileProblem, read_table, require_columns
    from gateway.core.errors import ConfigError

    path = suite.parent / data.file
    try:
        frame = read_table(path)
        wanted = {data.label: "label"}
        wanted.update({f: "feature" for f in data.features or []})
        if data.sensitive is not None:
            wanted[data.sensitive] = "sensitive"
        require_columns(frame, path, wanted)
    except DataFileProblem as exc:
        raise ConfigError(f"{suite}: data: {exc}") from None
    empty = int(frame[data.label].isna().sum())
    if empty:
        raise ConfigError(
            f"{suite}: data: {path}: the label column {data.label!r} is empty on {empty} "
            f"row(s): every row needs its true answer"
        )
    if data.label in (data.features or []):
        raise ConfigError(f"{suite}: data.features: the label {data.label!r} is not a feature")
    return ModelTest(path, data, metrics, frame)
