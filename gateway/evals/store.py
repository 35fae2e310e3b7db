"""Eval runs in the database, linked to the prompt version or model they tested."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError
from sqlalchemy import Engine, select

from gateway.core.errors import BadRequest, NotFound
from gateway.core.validation import dotted, first_problem
from gateway.evals.models import RunDetail, RunSummary
from gateway.store.tables import eval_runs

SUMMARY_COLUMNS = tuple(RunSummary.model_fields)


Count = Annotated[int, Field(ge=0, le=2**31 - 1)]  # stored as 32-bit integers
Share = Annotated[float, Field(ge=0, le=1)]


class RunSide(BaseModel):
    """The fields of a report's candidate (or baseline) that the columns keep; the rest of the
    report is kept as it came."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    target: str = Field(min_length=1, max_length=300)
    version: str = Field(min_length=1, max_length=300)


class Candidate(RunSide):
    pass_rate: Share
    mean_score: float = Field(ge=-1e9, le=1e9)
    cases: Count
    failed: Count
    errors: Count
    cost_usd: float = Field(ge=0, le=1e9)


class Verdict(BaseModel):
    model_config = ConfigDict(extra="allow")

    passed: StrictBool  # "false" must not count as a pass


class RunReport(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    suite: str = Field(min_length=1, max_length=200)
    verdict: Verdict
    candidate: Candidate
    baseline: RunSide | None = None


def check_report(report: dict[str, Any]) -> RunReport:
    try:
        return RunReport.model_validate(report)
    except ValidationError as exc:
        loc, message = first_problem(exc)
        where = dotted(loc)
        raise BadRequest(
            f"eval report: {where}: {message} (write reports with gateway eval run --json)",
            param=where,
        ) from None


class EvalStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, report: dict[str, Any]) -> str:
        """Stores a run from its JSON report (what `gateway eval run --json` writes)."""
        checked = check_report(report)
        candidate = checked.candidate
        run_id = "run_" + secrets.token_hex(8)
        with self.engine.begin() as connection:
            connection.execute(
                eval_runs.insert().values(
                    id=run_id,
                    suite=checked.suite,
                    target=candidate.target,
                    version=candidate.version,
                    baseline_version=checked.baseline.version if checked.baseline else None,
                    passed=checked.verdict.passed,
                    pass_rate=candidate.pass_rate,
                    mean_score=candidate.mean_score,
                    cases=candidate.cases,
                    failures=candidate.failed,
                    errors=candidate.errors,
                    cost_usd=candidate.cost_usd,
                    created_at=datetime.now(UTC),
                    report=report,
                )
            )
        return run_id

    def runs(
        self,
        suite: str | None = None,
        version: str | None = None,
        limit: int = 100,
        visible: Callable[[RunSummary], bool] | None = None,
    ) -> list[RunSummary]:
        """The latest runs, newest first; with `visible`, the latest `limit` that it allows."""
        columns = [eval_runs.c[name] for name in SUMMARY_COLUMNS]
        query = select(*columns).order_by(eval_runs.c.created_at.desc(), eval_runs.c.id)
        if suite is not None:
            query = query.where(eval_runs.c.suite == suite)
        if version is not None:
            query = query.where(eval_runs.c.version == version)
        if visible is None:
            query = query.limit(limit)
        found: list[RunSummary] = []
        with self.engine.connect() as connection:
            rows = connection.execution_options(yield_per=500).execute(query)
            for row in rows:
                summary = _summary(dict(row._mapping))
                if visible is None or visible(summary):
                    found.append(summary)
                    if len(found) >= limit:
                        break
            rows.close()
        return found

    def run(self, run_id: str) -> RunDetail:
        with self.engine.connect() as connection:
            row = connection.execute(select(eval_runs).where(eval_runs.c.id == run_id)).first()
        if row is None:
            raise NotFound(f"No eval run {run_id!r}.", param="id")
        data = dict(row._mapping)
        return RunDetail(**dict(_summary(data)), report=data["report"])

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

    def latest_failure(self, suite: str, version: str) -> str | None:
        """Why the latest run of `suite` on `version` failed, as its verdict says (a model
        test names each metric that missed its threshold); None when it passed or says
        nothing."""
        query = (
            select(eval_runs.c.id, eval_runs.c.passed, eval_runs.c.report)
            .where(eval_runs.c.suite == suite, eval_runs.c.version == version)
            .order_by(eval_runs.c.created_at.desc())
            .limit(1)
        )
        with self.engine.connect() as connection:
            found = connection.execute(query).first()
        if found is None or found.passed:
            return None
        verdict = found.report.get("verdict") if isinstance(found.report, dict) else None
        reasons = verdict.get("reasons") if isinstance(verdict, dict) else None
        if not isinstance(reasons, list) or not reasons:
            return None
        return f"{found.id}: " + "; ".join(str(r) for r in reasons[:5])

    def has_passing_run(self, suite: str, version: str) -> bool:
        return self.passing_run(suite, version) is not None


def _summary(row: dict[str, Any]) -> RunSummary:
    out = {name: row[name] for name in SUMMARY_COLUMNS}
    created = out["created_at"]
    if isinstance(created, datetime):
        out["created_at"] = (created if created.tzinfo else created.replace(tzinfo=UTC)).isoformat()
    out["passed"] = bool(out["passed"])
    return RunSummary(**out)
