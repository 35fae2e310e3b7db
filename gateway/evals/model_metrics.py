"""A model test's metrics from a version's predictions: scikit-learn's accuracy, precision,
recall, F1, ROC AUC, RMSE and MAE, and fairlearn's demographic parity and equalized odds
differences across a sensitive column. Imported only when a model test runs.

Binary metrics (and fairness) count one class as positive: `positive_class`, else the
greater of two classes (scikit-learn's `classes_[1]`). With more than two classes and no
positive class, precision, recall and F1 are macro averages and ROC AUC is one-vs-rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.evals.model_tests import FAIRNESS


class MetricProblem(Exception):
    """A metric that cannot be computed on this data or these predictions: the run cannot
    judge the version (exit 2), and says why."""


@dataclass(slots=True)
class Predicted:
    """What the version answered for every row, in the data file's order."""

    labels: list[Any]
    probabilities: list[list[float]] | None  # one row per data row, one column per class


def _key(value: Any) -> tuple[int, Any]:
    """Orders classes as numpy sorts them (numbers by value, text by text)."""
    return (0, value) if isinstance(value, int | float) else (1, str(value))


def _aligned(truth: list[Any], predicted: list[Any]) -> tuple[list[Any], list[Any]]:
    """Labels of the file and of the model compared as equals: as they are when they share a
    value, else both as text (a CSV's 1 and a model's "1")."""
    if set(truth) & set(predicted):
        return truth, predicted
    return [str(v) for v in truth], [str(v) for v in predicted]


def classification(
    names: Sequence[str],
    truth: list[Any],
    predicted: Predicted,
    positive: Any,
    groups: list[Any] | None,
) -> dict[str, float]:
    from sklearn import metrics as sk

    truth, labels = _aligned(truth, predicted.labels)
    classes = sorted(set(truth) | set(labels), key=_key)
    if positive is None and len(classes) == 2:
        positive = classes[1]
    elif positive is not None and positive not in classes:
        alike = [c for c in classes if str(c) == str(positive)]
        if not alike:
            shown = ", ".join(repr(c) for c in classes)
            raise MetricProblem(f"positive_class {positive!r} is not a class here ({shown})")
        positive = alike[0]
    binary = positive is not None
    truth_pos = [int(v == positive) for v in truth] if binary else []
    label_pos = [int(v == positive) for v in labels] if binary else []
    found: dict[str, float] = {}
    for name in names:
        if name == "accuracy":
            found[name] = float(sk.accuracy_score(truth, labels))
        elif name in ("precision", "recall", "f1"):
            score = {"precision": sk.precision_score, "recall": sk.recall_score, "f1": sk.f1_score}
            if binary:
                found[name] = float(score[name](truth_pos, label_pos, zero_division=0))
            else:
                found[name] = float(
                    score[name](truth, labels, average="macro", labels=classes, zero_division=0)
                )
        elif name == "roc_auc":
            found[name] = _roc_auc(truth, truth_pos, predicted, classes, positive)
        elif name in FAIRNESS:
            found[name] = _fairness(name, truth_pos, label_pos, groups, binary, classes)
    return found


def _roc_auc(
    truth: list[Any],
    truth_pos: list[int],
    predicted: Predicted,
    classes: list[Any],
    positive: Any,
) -> float:
    from sklearn.metrics import roc_auc_score

    probabilities = predicted.probabilities
    if probabilities is None:
        raise MetricProblem(
            "roc_auc needs class probabilities, and the version gives none (no "
            "probability_output among its outputs)"
        )
    width = len(probabilities[0]) if probabilities else 0
    if width != len(classes):
        raise MetricProblem(
            f"roc_auc: the version gives probabilities of {width} classes, but the labels "
            f"and predictions show {len(classes)} ({', '.join(map(repr, classes))}), so "
            f"which column is which class is unknown"
        )
    try:
        if positive is not None:
            column = classes.index(positive)
            return float(roc_auc_score(truth_pos, [row[column] for row in probabilities]))
        return float(
            roc_auc_score(truth, probabilities, multi_class="ovr", average="macro", labels=classes)
        )
    except ValueError as exc:  # e.g. one class only in the labels
        raise MetricProblem(f"roc_auc: {exc}") from None


def _fairness(
    name: str,
    truth_pos: list[int],
    label_pos: list[int],
    groups: list[Any] | None,
    binary: bool,
    classes: list[Any],
) -> float:
    from fairlearn import metrics as fair

    if not binary:
        raise MetricProblem(
            f"{name} compares a positive outcome across groups: with {len(classes)} classes "
            f"set data.positive_class (one of {', '.join(map(repr, classes))})"
        )
    assert groups is not None  # the suite requires data.sensitive for fairness metrics
    function = (
        fair.demographic_parity_difference
        if name == "demographic_parity_difference"
        else fair.equalized_odds_difference
    )
    value = float(function(truth_pos, label_pos, sensitive_features=groups))
    if math.isnan(value):
        raise MetricProblem(
            f"{name} cannot be computed on this data (a group has no positive or no negative "
            f"rows): give every group of the sensitive column both outcomes"
        )
    return value


def regression(names: Sequence[str], truth: list[Any], predicted: Predicted) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    try:
        actual = [float(v) for v in truth]
        guessed = [float(v) for v in predicted.labels]
    except (TypeError, ValueError):
        raise MetricProblem(
            "rmse and mae compare numbers: the label column or the predictions are not numeric"
        ) from None
    found: dict[str, float] = {}
    for name in names:
        if name == "rmse":
            found[name] = math.sqrt(float(mean_squared_error(actual, guessed)))
        elif name == "mae":
            found[name] = float(mean_absolute_error(actual, guessed))
    return found
