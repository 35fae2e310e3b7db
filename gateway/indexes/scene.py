"""What one check run knows: the collection, its facts, and what the gateway measured before
(the model's dimension, embedded golden queries, the live source ids, recent queries), with
the samples the checks share computed once."""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from gateway.core.index_config import IndexCollection
from gateway.indexes.engine import Collection, Facts, Stored
from gateway.indexes.models import CheckResult, Status

MIN_QUERIES = 5
MAX_QUERIES = 100  # sampled points used as queries


@dataclass(slots=True)
class Golden:
    query: str
    vector: list[float]
    expected: list[str] = field(default_factory=list)
    filter: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prepared:
    """Gathered by the gateway before the collection is opened (embeddings go through its
    own embeddings path); plain data, so it can be handed to a worker process as JSON."""

    model_id: str  # the deployment model behind the alias, recorded in the metadata
    model_names: list[str]  # names a point's payload may give this model
    dimension: int | None = None  # the model's, measured by embedding a probe text
    dimension_reason: str | None = None  # why it is unknown
    golden: list[Golden] | None = None
    golden_problem: str | None = None
    sources: list[str] | None = None
    sources_problem: str | None = None
    queries: list[list[float]] | None = None  # recent queries' embeddings (query drift)
    queries_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Prepared:
        golden = data.get("golden")
        return cls(**{**data, "golden": [Golden(**g) for g in golden] if golden else golden})


@dataclass
class Query:
    vector: list[float]
    where: dict[str, Any]
    expected: list[str] = field(default_factory=list)


@dataclass
class Scene:
    config: IndexCollection
    collection: Collection
    facts: Facts
    prepared: Prepared
    now: datetime
    memo: dict[Any, Any] = field(default_factory=dict)  # results checks share

    def grade(self, threshold: str, value: float) -> Status:
        direction, warn, critical = self.config.threshold(threshold)
        if direction == "below":
            return "critical" if value < critical else "warn" if value < warn else "ok"
        return "critical" if value > critical else "warn" if value > warn else "ok"

    def bounds(self, threshold: str) -> str:
        direction, warn, critical = self.config.threshold(threshold)
        return f"warn {direction} {warn:g}, critical {direction} {critical:g}"

    @functools.cached_property
    def sample(self) -> list[Stored]:
        return self.collection.sample(self.config.sample_size) if self.facts.points else []

    @functools.cached_property
    def sources(self) -> Counter[str] | None:
        """Points per source id (None when no source_field is configured)."""
        name = self.config.source_field
        if name is None:
            return None
        return Counter(str(v) for v in self.collection.values(name) if v is not None)

    def queries(self, filtered: bool) -> tuple[list[Query], str]:
        """The recall queries, and where they come from ("golden" or "sampled")."""
        golden = self.prepared.golden
        if golden:
            chosen = [g for g in golden if bool(g.filter) == filtered]
            return [Query(g.vector, g.filter, g.expected) for g in chosen], "golden"
        points = [p for p in self.sample if p.vector is not None and _finite(p.vector)]
        points = points[:MAX_QUERIES]
        if not filtered:
            return [Query(p.vector.tolist(), {}) for p in points if p.vector is not None], "sampled"
        name = self.config.source_field
        if name is None:
            return [], "sampled"
        return [
            Query(p.vector.tolist(), {name: p.payload[name]})
            for p in points
            if p.vector is not None and isinstance(p.payload.get(name), str | int)
        ], "sampled"


def _finite(vector: np.ndarray[Any, Any]) -> bool:
    return bool(np.isfinite(vector).all()) and float(np.linalg.norm(vector)) > 1e-6


def unavailable(name: str, reason: str, summary: str | None = None) -> CheckResult:
    return CheckResult(name=name, status="not available", summary=summary or reason, reason=reason)
