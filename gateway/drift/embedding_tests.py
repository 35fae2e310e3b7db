"""Drift of texts, as embeddings: a domain classifier (the verdict), and beside it the cosine
distance between the two centroids and the MMD.

The domain classifier follows Evidently's embedding default: the reference's vectors (label
1) and the current ones (label 0) are split in halves (shuffled, seed 42), a logistic SGD
classifier (seed 42) learns on one half, and its ROC AUC on the other is the statistic. Drift
when it exceeds 0.55, or, for a reference of at most 1,000 rows, the 95th percentile of 1,000
random classifiers' AUCs on as many held-out rows (Evidently draws 100, seeded 0-99: their
percentile is a noisier estimate of the same figure). MMD is the unbiased squared MMD with an
RBF kernel whose width is the median distance between the windows (drift above 0.015, as
Evidently's). scikit-learn is imported here, lazily.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.drift.options import SMALL_REFERENCE_ROWS
from gateway.drift.sketch import EmbeddingSketch
from gateway.drift.stattests import DEFAULT_THRESHOLDS, Outcome, drifted

Vectors = npt.NDArray[np.float32]
CLASSIFIER_ROWS = 5000  # current vectors the classifier sees at most (a fixed-seed choice)
MMD_ROWS = 1000  # per side, for the kernel matrix
RANDOM_CLASSIFIERS = 1000
PERCENTILE = 95


def _at_most(vectors: Vectors, rows: int, seed: int = 0) -> Vectors:
    if len(vectors) <= rows:
        return vectors
    chosen = np.random.default_rng(seed).choice(len(vectors), rows, replace=False)
    return vectors[np.sort(chosen)]


@functools.lru_cache(maxsize=256)
def random_auc_percentile(positives: int, negatives: int) -> float:
    """The 95th percentile of the ROC AUC of 1,000 classifiers guessing at random on
    `positives` + `negatives` held-out rows. The AUC of random scores depends only on those
    counts, so it is computed once per pair, from ranks, for all 1,000 at once."""
    rows = positives + negatives
    guesses = np.random.default_rng(0).random((RANDOM_CLASSIFIERS, rows))
    ranks = guesses.argsort(axis=1).argsort(axis=1)[:, :positives] + 1
    aucs = (ranks.sum(axis=1) - positives * (positives + 1) / 2) / (positives * negatives)
    return float(np.percentile(aucs, PERCENTILE))


def domain_classifier(
    reference: EmbeddingSketch,
    current: Vectors,
    threshold: float | None = None,
    small_rows: int = SMALL_REFERENCE_ROWS,
) -> Outcome:
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    ours = _at_most(current, CLASSIFIER_ROWS)
    data = np.vstack([reference.vectors, ours]).astype(np.float64)
    labels = np.concatenate([np.ones(len(reference.vectors)), np.zeros(len(ours))]).astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        data, labels, test_size=0.5, random_state=42, shuffle=True
    )
    if len(set(train_y.tolist())) < 2 or len(set(test_y.tolist())) < 2:
        return Outcome("domain_classifier", 0.5, 1.0, False)  # too few rows to split
    model = SGDClassifier(loss="log_loss", random_state=42)
    model.fit(train_x, train_y)
    auc = float(roc_auc_score(test_y, model.predict_proba(test_x)[:, 1]))
    if reference.count <= small_rows:
        positives = int(test_y.sum())
        bar = random_auc_percentile(positives, len(test_y) - positives)
    else:
        bar = DEFAULT_THRESHOLDS["domain_classifier"] if threshold is None else threshold
    return Outcome("domain_classifier", auc, bar, auc > bar)


def centroid_cosine(
    reference: EmbeddingSketch, current: Vectors, threshold: float | None = None
) -> Outcome:
    mine = current.astype(np.float64).mean(axis=0)
    norms = float(np.linalg.norm(reference.mean) * np.linalg.norm(mine))
    distance = 1.0 - float(reference.mean @ mine) / norms if norms > 0 else 0.0
    bar = DEFAULT_THRESHOLDS["centroid_cosine"] if threshold is None else threshold
    return Outcome("centroid_cosine", distance, bar, drifted("centroid_cosine", distance, bar))


def mmd(reference: EmbeddingSketch, current: Vectors, threshold: float | None = None) -> Outcome:
    x = _at_most(reference.vectors, MMD_ROWS).astype(np.float64)
    y = _at_most(current, MMD_ROWS, seed=1).astype(np.float64)
    value = max(squared_mmd(x, y), 0.0)
    bar = DEFAULT_THRESHOLDS["mmd"] if threshold is None else threshold
    return Outcome("mmd", value, bar, drifted("mmd", value, bar))


def _squared_distances(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> npt.NDArray[Any]:
    found = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    closest: npt.NDArray[Any] = np.maximum(found, 0.0)
    return closest


def squared_mmd(x: npt.NDArray[Any], y: npt.NDArray[Any]) -> float:
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        return 0.0
    between = _squared_distances(x, y)
    sigma2 = float(np.median(np.sqrt(between))) ** 2
    gamma = 1.0 / sigma2 if sigma2 > 0 else 1.0
    kx = np.exp(-gamma * _squared_distances(x, x))
    ky = np.exp(-gamma * _squared_distances(y, y))
    kxy = np.exp(-gamma * between)
    return float(
        (kx.sum() - np.trace(kx)) / (m * (m - 1))
        + (ky.sum() - np.trace(ky)) / (n * (n - 1))
        - 2 * kxy.sum() / (m * n)
    )


EMBEDDING_TESTS = {
    "domain_classifier": domain_classifier,
    "centroid_cosine": centroid_cosine,
    "mmd": mmd,
}
