"""How a subject's columns are tested (no numpy here: the request path imports this room)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Evidently's defaults: p-value tests up to this many reference rows, distances above; a
# numerical column with at most this many distinct values (both windows) is tested as
# categories.
SMALL_REFERENCE_ROWS = 1000
MAX_CATEGORICAL_VALUES = 5


@dataclass(frozen=True)
class Options:
    numerical: str = "auto"
    categorical: str = "auto"
    text: str = "domain_classifier"
    columns: Mapping[str, str] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    drift_share: float = 0.5
    small_reference_rows: int = SMALL_REFERENCE_ROWS
    max_categorical_values: int = MAX_CATEGORICAL_VALUES
    min_rows: int = 100
