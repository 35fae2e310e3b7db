"""Index health as the API returns it, the CLI prints it and the metrics count it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.core.answers import Answer

Status = Literal["ok", "warn", "critical", "not available"]
RANK: dict[str, int] = {"not available": -1, "ok": 0, "warn": 1, "critical": 2}
Measure = float | int | str | bool | None


class CheckResult(Answer):
    """One check: its status, what it measured, and why it could not when it could not."""

    name: str
    status: Status
    value: float | None = Field(default=None, description="The headline measure (see unit).")
    unit: str | None = None
    summary: str = Field(description="One line: what was measured, against what.")
    reason: str | None = Field(default=None, description="Why the check is not available.")
    details: dict[str, Measure] = Field(default_factory=dict)


class EfPoint(Answer):
    """Recall and latency of the approximate search at one `hnsw_ef`."""

    hnsw_ef: int
    recall: float
    p50_ms: float
    p95_ms: float


class CollectionHealth(Answer):
    object: Literal["index.health"] = "index.health"
    name: str
    engine: Literal["qdrant-edge", "qdrant"]
    location: str
    model: str = Field(description="The embedding model alias the config names.")
    status: Status = Field(description="The worst check's status.")
    checked_at: str
    seconds: float = Field(description="How long the whole check took.")
    points: int | None = None
    checks: list[CheckResult]
    ef_curve: list[EfPoint] = Field(
        default_factory=list, description="Recall and latency per hnsw_ef (unfiltered queries)."
    )

    def check(self, name: str) -> CheckResult:
        return next(c for c in self.checks if c.name == name)


class IndexesHealth(Answer):
    object: Literal["list"] = "list"
    status: Status = Field(description="The worst collection's status.")
    data: list[CollectionHealth]


def worst(statuses: list[Status]) -> Status:
    """The worst of some statuses; "not available" only when nothing else was measured."""
    return max(statuses, key=RANK.__getitem__, default="not available")


class SearchRequest(Answer):
    query: str = Field(min_length=1, max_length=20_000, description="Text to search for.")
    limit: int = Field(default=5, ge=1, le=100)
    filter: dict[str, str | int | bool] = Field(
        default_factory=dict, description="Payload fields the points must equal."
    )


class SearchHit(Answer):
    id: int | str
    score: float
    payload: dict[str, object]


class SearchAnswer(Answer):
    object: Literal["list"] = "list"
    collection: str
    model: str = Field(description="The alias that embedded the query.")
    data: list[SearchHit]
