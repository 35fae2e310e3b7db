"""Labelled tabular data files (CSV or Parquet): what registering a classic version records its
expectations from, and what a model test scores a version on. pandas (and pyarrow, for
Parquet) are imported here only, when such a file is read."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from gateway.classic.expectations import Expectations, FeatureExpectation

SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# Categories are kept for text columns with at most this many distinct values; beyond that
# a column is an identifier or free text, where a list of values seen would refuse new ones.
MAX_CATEGORIES = 1000


class DataFileProblem(Exception):
    """A data file that cannot be read, or lacks a column it must have: the message says
    which file, which column and what it has."""


def read_table(path: Path) -> Any:
    """The file as a pandas DataFrame."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataFileProblem(
            f"{path}: a data file is CSV (.csv) or Parquet (.parquet, .pq), not {path.suffix!r}"
        )
    if not path.is_file():
        raise DataFileProblem(f"{path}: no such file")
    import pandas as pd

    try:
        frame = pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
    except Exception as exc:  # pandas' and pyarrow's own errors: the file is not readable
        raise DataFileProblem(
            f"{path}: cannot be read as {kind.upper()}: {type(exc).__name__}: {exc}"
        ) from None
    frame.columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise DataFileProblem(f"{path}: has no rows")
    return frame


def require_columns(frame: Any, path: Path, wanted: dict[str, str]) -> None:
    """Each column (by what it is for: "label", "feature"...) must be in the file."""
    have = list(frame.columns)
    for column, role in wanted.items():
        if column not in have:
            raise DataFileProblem(
                f"{path}: no {role} column {column!r} (columns: {', '.join(have)})"
            )


def is_numeric(series: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series)) and not pd.api.types.is_bool_dtype(series)


def _plain(value: Any) -> Any:
    """numpy scalars as JSON's own values."""
    return value.item() if hasattr(value, "item") else value


def expectations_from(frame: Any, features: list[str], enforce: bool = False) -> Expectations:
    """What the training data says of each feature: a numeric one's range, a text or boolean
    one's categories (when there are few enough), and each one's share of nulls."""
    found: dict[str, FeatureExpectation] = {}
    for name in features:
        column = frame[name]
        null_rate = float(column.isna().mean())
        present = column.dropna()
        expected: dict[str, Any] = {"max_null_rate": math.ceil(null_rate * 10_000) / 10_000}
        if is_numeric(column):
            if len(present):
                expected["min"] = float(present.min())
                expected["max"] = float(present.max())
        else:
            values = sorted({_plain(v) for v in present.tolist()}, key=str)
            if len(values) <= MAX_CATEGORIES:
                expected["categories"] = values
        found[name] = FeatureExpectation(**expected)
    return Expectations(enforce=enforce, features=found)
