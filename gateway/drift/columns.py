"""Columns as the statistics take them: numerical (finite floats), categorical (strings) or
embeddings (rows of float32), missing values dropped as Evidently drops them (NaN, ±inf,
null)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Kind = Literal["numerical", "categorical", "embedding"]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Column:
    kind: Kind
    values: npt.NDArray[Any]  # float64 / str (object) / float32 rows

    def __len__(self) -> int:
        return int(self.values.shape[0])


def category(value: Any) -> str | None:
    """One spelling per category, whatever JSON or numpy type carried it."""
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if not math.isfinite(number):
            return None
        return str(int(number)) if number.is_integer() else repr(number)
    return str(value)


def infer_kind(values: Sequence[Any] | npt.NDArray[Any]) -> Kind:
    """Embeddings for 2-D numbers, numerical when every present value is a number (booleans
    are categories), categorical otherwise."""
    array = np.asarray(values) if not isinstance(values, np.ndarray) else values
    if array.ndim == 2 and array.dtype.kind in "fiu":
        return "embedding"
    if array.dtype.kind in "fiu":
        return "numerical"
    present = [v for v in values if v is not None]
    if present and all(
        isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)
        for v in present
    ):
        return "numerical"
    return "categorical"


def prepare(values: Sequence[Any] | npt.NDArray[Any], kind: Kind) -> Column:
    """The column with missing values dropped."""
    if kind == "embedding":
        rows = [v for v in values if v is not None]
        if not rows:
            return Column(kind, np.zeros((0, 0), dtype=np.float32))
        vectors = np.asarray(rows, dtype=np.float32)
        return Column(kind, vectors[np.isfinite(vectors).all(axis=1)])
    if kind == "numerical":
        if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
            numbers = values.astype(np.float64, copy=False)
        elif bool not in set(map(type, values)):
            try:  # numbers and None (as NaN), converted in C
                numbers = np.array(values, dtype=np.float64)
            except (TypeError, ValueError):
                numbers = _numbers(values)
        else:
            numbers = _numbers(values)
        return Column(kind, numbers[np.isfinite(numbers)])
    if set(map(type, values)) == {str}:  # already one spelling per category
        return Column(kind, np.array(values, dtype=object))
    keys = [category(v) for v in values]
    return Column(kind, np.array([k for k in keys if k is not None], dtype=object))


def _numbers(values: Sequence[Any] | npt.NDArray[Any]) -> Floats:
    """Numbers, anything else (text, booleans) as missing."""
    return np.array(
        [v if isinstance(v, int | float) and not isinstance(v, bool) else np.nan for v in values],
        dtype=np.float64,
    )


def distinct(values: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
    """The distinct values, sorted, and how often each occurs."""
    if values.dtype == object:
        keys, counts = np.unique(values.astype(str), return_counts=True)
        return keys.astype(object), counts.astype(np.int64)
    keys, counts = np.unique(values, return_counts=True)
    return keys, counts.astype(np.int64)
