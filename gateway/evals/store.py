"""Eval runs in the database, linked to the prompt version or model they tested."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from gateway.errors import NotFound
from gateway.store.tables import eval_runs

SUMMARY_COLUMNS = (
    "id",
    "suite",
    "target",
    "version",
    "baseline_version",
    "passed",
    "pass_rate",
    "mean_score",
    "cases",
    "failures",
    "errors",
    "cost_usd",
    "created_at",
)


class EvalStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, report: dict[str, Any]) -> str:
        """Stores a run from its JSON report (what `gateway eval run --json` writes)."""
        candidate = report["candidate"]
        baseline = report.get("baseline") or {}
        run_id = "run_" + secrets.token_hex(8)
        with self.engine.begin() as connection:
            connection.execute(
                eval_runs.insert().values(
                    id=run_id,
                    suite=report["suite"],
                    target=candidate["target"],
                    version=candidate["version"],
                    baseline_version=baseline.get("version"),
                    passed=bool(report["verdict"]["passed"]),
                    pass_rate=float(candidate["pass_rate"]),
                    mean_score=float(candidate["mean_score"]),
                    cases=int(candidate["cases"]),
                    failures=int(candidate["failed"]),
                    errors=int(candidate["errors"]),
                    cost_usd=float(candidate["cost_usd"]),
                    created_at=datetime.now(UTC),
                    report=report,
                )
            )
        return run_id

    def runs(
        self, suite: str | None = None, version: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        columns = [eval_runs.c[name] for name in SUMMARY_COLUMNS]
        query = select(*columns).order_by(eval_runs.c.created_at.desc()).limit(limit)
        if suite is not None:
            query = query.where(eval_runs.c.suite == suite)
        if version is not None:
            query = query.where(eval_runs.c.version == version)
        with self.engine.connect() as connection:
            return [_summary(dict(r._mapping)) for r in connection.execute(query)]

    def run(self, run_id: str) -> dict[str, Any]:
        with self.engine.connect() as connection:
            row = connection.execute(select(eval_runs).where(eval_runs.c.id == run_id)).first()
        if row is None:
            raise NotFound(f"No eval run {run_id!r}.", param="id")
        data = dict(row._mapping)
        return {**_summary(data), "report": data["report"]}

    def passing_run(self, suite: str, version: str) -> str | None:
        """The id of the latest passing run of `suite` on `version`, if there is one."""
        query = (
            select(eval_runs.c.id)
            .where(eval_runs.c.suite == suite, eval_runs.c.version == version)
            .where(eval_runs.c.passed.is_(True))
            .order_by(eval_runs.c.created_at.desc())
            .limit(1)
        )
        with self.engine.connect() as connection:
            found = connection.execute(query).first()
        return None if found is None else str(found.id)

    def has_passing_run(self, suite: str, version: str) -> bool:
        return self.passing_run(suite, version) is not None


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    out = {name: row[name] for name in SUMMARY_COLUMNS}
    created = out["created_at"]
    if isinstance(created, datetime):
        out["created_at"] = (created if created.tzinfo else created.replace(tzinfo=UTC)).isoformat()
    out["passed"] = bool(out["passed"])
    return out
