"""A sampled classic-model call as drift rows: one row per predicted row, its features and its
prediction by name (`{"sepal length (cm)": 5.1, ..., "predict": 0, "predict_proba[0]": 0.97}`).

Runs in the sampler's writer thread, never on the request path, which only keeps references
to the call's tensors. Names: a 2-D input's columns take the signature's `features` when it
names as many (the training data's columns, as the registry's reference has them), else
`NAME[j]`; a 1-D tensor (or a 2-D one of width 1) is one column under its own name. Tensors
of higher rank, wider than MAX_COLUMNS (images, embeddings) or of another row count are left
out: drift compares columns of scalars. FP32 values are read as the model reads them (at
float32 precision, as a binary tensor brings them), so a JSON 6.8 and a binary one are one
value, the one the training data's float32 columns hold.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any

from gateway.classic.tensors import Output, Tensor, flat_values

MAX_ROWS = 1_000  # rows of one call kept: a huge batch is sampled by its first rows
MAX_COLUMNS = 64  # a 2-D tensor's columns kept, at most


def prediction_rows(
    rows: int,
    features: Sequence[str] | None,
    inputs: Sequence[Tensor],
    outputs: Sequence[Output],
) -> list[dict[str, Any]]:
    """The call's rows (at most MAX_ROWS), each a dict of JSON values by column name."""
    kept = min(rows, MAX_ROWS)
    found: list[dict[str, Any]] = [{} for _ in range(kept)]
    for tensor in inputs:
        values = _float32(flat_values(tensor)) if tensor.datatype == "FP32" else flat_values(tensor)
        _spread(found, tensor.name, list(tensor.shape), values, rows, features)
    for output in outputs:
        data = output.data
        values = data.tolist() if hasattr(data, "tolist") else list(data)
        if output.datatype == "FP32":
            values = _float32(values)
        _spread(found, output.name, list(output.shape), values, rows, None)
    return [row for row in found if row]


def _spread(
    found: list[dict[str, Any]],
    name: str,
    shape: list[int],
    values: list[Any],
    rows: int,
    features: Sequence[str] | None,
) -> None:
    if len(shape) > 2 or (shape and shape[0] != rows) or (not shape and rows != 1):
        return
    width = shape[1] if len(shape) == 2 else 1
    if width < 1 or width > MAX_COLUMNS or len(values) < len(found) * width:
        return
    if len(shape) == 2 and features is not None and len(features) == width:
        names = list(features)
    elif width == 1:
        names = [name]
    else:
        names = [f"{name}[{j}]" for j in range(width)]
    for index, row in enumerate(found):
        start = index * width
        for j, column in enumerate(names):
            row[column] = _scalar(values[start + j])


def _float32(values: list[Any]) -> list[Any]:
    try:
        return array("f", values).tolist()
    except (TypeError, OverflowError):  # not all numbers: kept as they came
        return values


def _scalar(value: Any) -> Any:
    """A JSON value: bytes (a BYTES tensor's element) as text, the rest as they are."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
