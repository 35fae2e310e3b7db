"""Eval runs as the API returns them (what a run stores is `store.RunReport`, the JSON that
`gateway eval run --json` writes)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gateway.core.answers import Answer, ObjectList


class RunSummary(Answer):
    id: str
    suite: str
    target: str = Field(description="What the suite called: prompt:NAME@REF, model:ALIAS...")
    version: str = Field(
        description="What answered: prompt NAME@VERSION, a model alias or registry:NAME@N."
    )
    baseline_version: str | None
    passed: bool
    pass_rate: float
    mean_score: float
    cases: int
    failures: int
    errors: int
    cost_usd: float
    created_at: str


class RunDetail(RunSummary):
    report: dict[str, Any] = Field(description="The report as stored (gateway eval run --json).")


class RunList(ObjectList[RunSummary]):
    pass


class RunStored(Answer):
    id: str
