"""Spend from the request log: restoring budget counters at start, and cost reports."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, case, func, select

from gateway.identity.keys import KeyCache
from gateway.metering.budgets import Budget, BudgetLedger, period_bounds
from gateway.observability.log_query import LogFilter
from gateway.observability.models import CostRow, GroupBy
from gateway.store.tables import request_log

GROUP_COLUMNS = {
    "key": request_log.c.key_id,
    "team": request_log.c.team,
    "model": request_log.c.alias,
    "prompt": request_log.c.prompt_name,
}


def spent_since(engine: Engine, column: Any, value: str, start: datetime | None) -> float:
    query = select(func.coalesce(func.sum(request_log.c.cost_usd), 0.0)).where(column == value)
    if start is not None:
        query = query.where(request_log.c.created_at >= start)
    with engine.connect() as connection:
        return float(connection.execute(query).scalar_one())


def period_spend(engine: Engine, scope: str, duration: str | None) -> float:
    """What `key:<id>` or `team:<id>` spent in its current budget period, from the log (what
    the CLI shows; a running gateway also counts the calls its writer has not stored yet)."""
    kind, _, value = scope.partition(":")
    column = request_log.c.key_id if kind == "key" else request_log.c.team
    _, start, _ = period_bounds(duration, datetime.now(UTC))
    return spent_since(engine, column, value, start)


async def seed_budgets(engine: Engine, keys: KeyCache, ledger: BudgetLedger) -> None:
    """Counters start from what the log says was spent this period (a restart forgets
    nothing; with Redis, a counter already there wins)."""
    now = datetime.now(UTC)
    budgets: list[tuple[Budget, Any, str]] = []
    for record in keys.by_hash.values():
        if record.max_budget is not None and not record.revoked:
            budget = Budget(f"key:{record.id}", record.max_budget, record.budget_duration)
            budgets.append((budget, request_log.c.key_id, record.id))
    for team in keys.teams.values():
        if team.max_budget is not None:
            budget = Budget(f"team:{team.id}", team.max_budget, team.budget_duration)
            budgets.append((budget, request_log.c.team, team.id))
    for budget, column, value in budgets:
        _, start, _ = period_bounds(budget.duration, now)
        spent = await asyncio.to_thread(spent_since, engine, column, value, start)
        await ledger.seed(budget, spent)


@dataclass(frozen=True, slots=True)
class DaySpend:
    day: str  # YYYY-MM-DD (UTC on SQLite, the session's zone on PostgreSQL, as cost reports)
    key_id: str | None
    deployment: str | None
    model: str | None  # the alias called
    cost_usd: float


def daily_spend(engine: Engine, filters: LogFilter) -> list[DaySpend]:
    """USD per day, key and deployment, over the rows the filters select, oldest day first."""
    c = request_log.c
    day = func.date(c.created_at)
    query = (
        select(day.label("day"), c.key_id, c.deployment, c.alias, func.sum(c.cost_usd))
        .where(*filters.conditions())
        .group_by(day, c.key_id, c.deployment, c.alias)
        .order_by(day)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [DaySpend(str(r[0]), r[1], r[2], r[3], float(r[4] or 0.0)) for r in rows]


def cost_report(
    engine: Engine, group_by: GroupBy, start: datetime | None, end: datetime | None
) -> list[CostRow]:
    if group_by == "day":
        group: Any = func.date(request_log.c.created_at)
    else:
        group = GROUP_COLUMNS[group_by]
    query = (
        select(
            group.label("group"),
            func.count().label("requests"),
            func.coalesce(func.sum(request_log.c.cost_usd), 0.0).label("cost_usd"),
            func.coalesce(func.sum(request_log.c.input_tokens), 0).label("input_tokens"),
            func.coalesce(func.sum(request_log.c.output_tokens), 0).label("output_tokens"),
            func.sum(case((request_log.c.status >= 400, 1), else_=0)).label("errors"),
        )
        .group_by(group)
        .order_by(func.sum(request_log.c.cost_usd).desc())
    )
    if start is not None:
        query = query.where(request_log.c.created_at >= start)
    if end is not None:
        query = query.where(request_log.c.created_at < end)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [
        CostRow.model_validate(
            {
                group_by: str(row.group) if row.group is not None else None,
                "requests": int(row.requests),
                "errors": int(row.errors or 0),
                "input_tokens": int(row.input_tokens),
                "output_tokens": int(row.output_tokens),
                "cost_usd": round(float(row.cost_usd), 10),
            }
        )
        for row in rows
    ]
