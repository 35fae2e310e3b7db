"""A reference: every column's sketch (gateway/drift/sketch.py) and where its rows came from.

This JSON is also the format a classic model version carries its training data's statistics
in: `build_reference(training_columns, source=...).to_json()` stored in the registry version's
metadata under `drift_reference` (REGISTRY_KEY) becomes that version's reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy.typing as npt

from gateway.drift.columns import Kind, infer_kind, prepare
from gateway.drift.sketch import Sketch, sketch, sketch_from_json

FORMAT = "gateway-drift-reference/1"
REGISTRY_KEY = "drift_reference"


@dataclass(frozen=True)
class Reference:
    columns: dict[str, Sketch]
    rows: int
    source: str
    made_at: datetime
    until: datetime | None = None  # the time of its last sample, for a window of samples
    last_id: int | None = None  # and that sample's id (several may share a time)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "rows": self.rows,
            "source": self.source,
            "made_at": self.made_at.isoformat(),
            "until": self.until.isoformat() if self.until else None,
            "last_id": self.last_id,
            "columns": {name: column.to_json() for name, column in self.columns.items()},
        }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Reference:
        """The reference; a ValueError says what is wrong with the document."""
        if not isinstance(body, Mapping) or body.get("format") != FORMAT:
            raise ValueError(f"not a drift reference: its 'format' must be {FORMAT!r}")
        try:
            columns = {name: sketch_from_json(c) for name, c in body["columns"].items()}
            until = body.get("until")
            return cls(
                columns,
                int(body["rows"]),
                str(body["source"]),
                datetime.fromisoformat(body["made_at"]),
                datetime.fromisoformat(until) if until else None,
                body.get("last_id"),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"a drift reference is missing or misshapes {exc}") from None


def build_reference(
    columns: Mapping[str, Sequence[Any] | npt.NDArray[Any]],
    *,
    source: str,
    kinds: Mapping[str, Kind] | None = None,
    until: datetime | None = None,
    last_id: int | None = None,
) -> Reference:
    """A reference from raw columns (a window of samples, or a model's training data); each
    column's kind is given or inferred (numbers, categories, 2-D embeddings). Columns with no
    values are left out."""
    sketches: dict[str, Sketch] = {}
    rows = 0
    for name, values in columns.items():
        kind = (kinds or {}).get(name) or infer_kind(values)
        rows = max(rows, len(values))
        made = sketch(prepare(values, kind))
        if made is not None:
            sketches[name] = made
    return Reference(sketches, rows, source, datetime.now(UTC), until, last_id)
