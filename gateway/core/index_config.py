"""The `indexes:` section: the vector collections the gateway watches, where they live (a
Qdrant server, or a folder for the embedded qdrant-edge engine), the embedding model alias
that makes their vectors, and what their health checks compare against.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from gateway.core.errors import ConfigError
from gateway.core.yamlfile import YamlDocument, format_loc, one_line

# Which way each threshold points: "below" is bad for recall, "above" for everything else.
Direction = Literal["below", "above"]
THRESHOLDS: dict[str, tuple[Direction, float, float]] = {
    # name: (bad when the value is ..., warn at, critical at)
    "recall": ("below", 0.9, 0.7),
    "latency_p95_ms": ("above", 100.0, 1000.0),
    "unindexed_share": ("above", 0.1, 0.5),
    "segments": ("above", 64, 256),
    "other_model_share": ("above", 0.0, 0.05),
    "bad_vector_share": ("above", 0.0, 0.01),
    "duplicate_share": ("above", 0.05, 0.2),
    "age_days": ("above", 7.0, 30.0),
    "missing_share": ("above", 0.0, 0.05),
    "orphan_share": ("above", 0.0, 0.05),
    # Cosine distance between the centroids of recent queries and of the collection. Queries
    # and passages differ by nature: with the bundled model, questions about the project's
    # docs sat at 0.47 from the docs' centroid, unrelated questions at 0.89 (README).
    "query_drift": ("above", 0.6, 0.75),
}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
URL = re.compile(r"^https?://", re.I)

Pair = tuple[float, float]


class Thresholds(TypedDict, total=False):
    """[warn, critical] per check; recall is bad below its values, the rest above theirs."""

    __pydantic_config__ = ConfigDict(extra="forbid", allow_inf_nan=False)  # type: ignore[misc]

    recall: Pair
    latency_p95_ms: Pair
    unindexed_share: Pair
    segments: Pair
    other_model_share: Pair
    bad_vector_share: Pair
    duplicate_share: Pair
    age_days: Pair
    missing_share: Pair
    orphan_share: Pair
    query_drift: Pair


class IndexCollection(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(json_schema_extra={"pattern": NAME.pattern})
    # A Qdrant server's URL, or a folder holding embedded (qdrant-edge) collections; relative
    # folders are inside the data dir. Default: GATEWAY_QDRANT_URL, else <data dir>/indexes.
    location: str | None = None
    api_key: str | None = None  # a server's API key; `os.environ/NAME` reads it at check time
    model: str = Field(min_length=1)  # the embedding model alias (served here) of the vectors
    # Query texts, one JSON object a line: {"query": "...", "expected": [ids or source ids],
    # "filter": {"field": value}}; relative to the config file's folder. Without it, sampled
    # points serve as queries.
    golden_queries: Path | None = None
    model_field: str = "embedding_model"  # payload key naming the model of a point's vector
    timestamp_field: str | None = None  # payload key of a point's time (ISO 8601 or epoch s)
    source_field: str | None = None  # payload key of a point's source document id
    # The source ids that exist now, one a line (relative to the config file's folder):
    # points of other sources are orphans; sources without points are missing.
    sources: Path | None = None
    sample_size: int = Field(default=500, ge=10, le=10_000)
    k: int = Field(default=10, ge=1, le=100)  # recall@k
    hnsw_ef: int | None = Field(default=None, ge=1)  # the ef applications search with
    thresholds: Thresholds = Field(default_factory=lambda: Thresholds())

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("a collection name is letters, digits, '_', '-' and '.'")
        return value

    @field_validator("thresholds")
    @classmethod
    def _ordered(cls, value: Thresholds) -> Thresholds:
        given: dict[str, Any] = dict(value)
        for name, (warn, critical) in given.items():
            direction = THRESHOLDS[name][0]
            if (critical > warn) if direction == "below" else (critical < warn):
                word = "above" if direction == "below" else "below"
                raise ValueError(
                    f"{name}: [warn, critical] with critical {word} warn: {name} is bad "
                    f"{direction} its thresholds"
                )
        return value

    def threshold(self, name: str) -> tuple[Direction, float, float]:
        direction, warn, critical = THRESHOLDS[name]
        given: Any = self.thresholds.get(name)
        return (direction, *given) if given else (direction, warn, critical)


class IndexesSection(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # Seconds between background checks of every collection (0: none; checks then run on
    # demand: `gateway index check`, GET /v1/monitoring/indexes?refresh=true).
    interval: float = Field(default=900.0, ge=0)
    # Share of the embeddings calls for a collection's model whose answer is kept (off the
    # request path) as a recent query for query drift; only single-input calls count.
    query_sample_rate: float = Field(default=0.1, ge=0, le=1)
    collections: list[IndexCollection] = Field(default_factory=list)


def check_indexes(
    section: IndexesSection, routes: Callable[[str], bool], aliases: list[str], doc: YamlDocument
) -> None:
    """Names are unique and each model alias is served here (file:line when not)."""
    seen: set[str] = set()
    for index, collection in enumerate(section.collections):
        loc: tuple[str | int, ...] = ("indexes", "collections", index)
        if collection.name in seen:
            at = (*loc, "name")
            raise ConfigError(
                one_line(f"{doc.where(at)}: {format_loc(at)}: {collection.name!r} is listed twice")
            )
        seen.add(collection.name)
        if not routes(collection.model):
            at = (*loc, "model")
            known = ", ".join(sorted(aliases)) or "none"
            raise ConfigError(
                one_line(
                    f"{doc.where(at)}: {format_loc(at)}: {collection.model!r} is not a "
                    f"model_name in model_list (known: {known}); the vectors' embedding model "
                    f"must be served by this gateway"
                )
            )
