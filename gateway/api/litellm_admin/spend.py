"""LiteLLM's GET /spend/logs from the request log: one row per call (newest first, at most
10,000, as LiteLLM caps it), or with start_date and end_date and summarize (its default) the
spend of each day by key, user and model."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from gateway.api.litellm_admin.answers import MASTER, api_key_of, spend_log, user_of
from gateway.api.litellm_admin.models import SpendDay, SpendLog
from gateway.core.errors import BadRequest, NotFound, PermissionDenied
from gateway.identity.auth import Caller
from gateway.identity.keys import KeyRecord, hash_key
from gateway.observability.log_query import MAX_LIMIT, LogFilter, get_log, list_logs
from gateway.observability.spend import daily_spend
from gateway.providers import Deployment
from gateway.state import GatewayState

ROWS_CAP = 10_000  # LiteLLM's SPEND_LOGS_PAGINATION_COUNT_CAP


@dataclass(frozen=True, slots=True)
class SpendQuery:
    api_key: str | None = None
    user_id: str | None = None
    request_id: str | None = None
    start_date: str | None = None
    end_date: str | None = None
    summarize: bool = True


@dataclass(frozen=True, slots=True)
class SpendAnswer:
    rows: list[SpendLog] | list[SpendDay]
    truncated: bool = False


def _day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} must be a date, YYYY-MM-DD, not {value!r}.", param=name) from None


def _midnight(day: date | None) -> datetime | None:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) if day else None


def _key_id(given: str, keys: Mapping[str, KeyRecord]) -> str | None:
    """LiteLLM's api_key filter: the key, its SHA-256, or "master"."""
    if given == MASTER:
        return MASTER
    hashes = {given, hash_key(given)}
    return next((r.id for r in keys.values() if r.key_hash in hashes), None)


def _scope(query: SpendQuery, caller: Caller, keys: Mapping[str, KeyRecord]) -> LogFilter | None:
    """Which rows; None when the filters match no key at all."""
    key_id = None
    if query.api_key is not None:
        key_id = _key_id(query.api_key, keys)
        if key_id is None:
            return None
    if not caller.is_master:
        if key_id not in (None, caller.key_id):
            raise PermissionDenied(
                "A virtual key reads only its own spend logs: leave api_key out or give your "
                "own key; the master key reads every key's.",
                param="api_key",
                code="not_your_key",
            )
        key_id = caller.key_id
    key_ids = None
    if query.user_id is not None:
        key_ids = tuple(k for k, r in keys.items() if user_of(r) == query.user_id)
        if not key_ids:
            return None
    start, end = _day(query.start_date, "start_date"), _day(query.end_date, "end_date")
    # LiteLLM's range ends at end_date's midnight, that instant included.
    midnight = _midnight(end)
    until = midnight + timedelta(microseconds=1) if midnight else None
    return LogFilter(key_id=key_id, key_ids=key_ids, since=_midnight(start), until=until)


def spend_logs(
    state: GatewayState, caller: Caller, query: SpendQuery, deployments: Mapping[str, Deployment]
) -> SpendAnswer:
    """Synchronous database reads: call it from a worker thread."""
    keys = {r.id: r for r in state.keys.list_keys()}
    scope = _scope(query, caller, keys)
    if scope is None:
        return SpendAnswer([])
    if query.request_id is not None:
        try:
            row = get_log(state.engine, query.request_id)
        except NotFound:
            return SpendAnswer([])
        rows = [row] if _selects(scope, row.key_id, row.created_at) else []
        return SpendAnswer([spend_log(r, keys, deployments) for r in rows])
    if query.summarize and query.start_date and query.end_date:
        return SpendAnswer(_days(state, scope, query, keys, deployments))
    found: list[SpendLog] = []
    after = None
    while len(found) < ROWS_CAP:
        page = list_logs(state.engine, scope, min(MAX_LIMIT, ROWS_CAP - len(found)), after)
        found.extend(spend_log(row, keys, deployments) for row in page.data)
        if not page.has_more:
            return SpendAnswer(found)
        after = page.next
    return SpendAnswer(found, truncated=True)


def _selects(scope: LogFilter, key_id: str | None, created_at: str) -> bool:
    moment = datetime.fromisoformat(created_at)
    return (
        (scope.key_id is None or key_id == scope.key_id)
        and (scope.key_ids is None or key_id in scope.key_ids)
        and (scope.since is None or moment >= scope.since)
        and (scope.until is None or moment < scope.until)
    )


@dataclass
class _Day:
    spend: float = 0.0
    keys: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    users: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    models: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def _days(
    state: GatewayState,
    scope: LogFilter,
    query: SpendQuery,
    keys: Mapping[str, KeyRecord],
    deployments: Mapping[str, Deployment],
) -> list[SpendDay]:
    """LiteLLM's summary: a row per day with spend, then zero days up to end_date."""
    by_day: dict[str, _Day] = defaultdict(_Day)
    for part in daily_spend(state.engine, scope):
        day = by_day[part.day]
        day.spend += part.cost_usd
        api_key = api_key_of(part.key_id, keys)
        if api_key:
            day.keys[api_key] += part.cost_usd
        user = user_of(keys.get(part.key_id)) if part.key_id else None
        if user:
            day.users[user] += part.cost_usd
        deployment = deployments.get(part.deployment) if part.deployment else None
        day.models[deployment.upstream_model if deployment else (part.model or "")] += part.cost_usd
    days = [
        SpendDay(
            startTime=name,
            spend=day.spend,
            users=dict(day.users),
            models=dict(day.models),
            **dict(day.keys),
        )
        for name, day in by_day.items()
    ]
    end = _day(query.end_date, "end_date")
    if days and end is not None:
        last = date.fromisoformat(days[-1].startTime)
        for offset in range(1, (end - last).days + 1):
            padding = last + timedelta(days=offset)
            days.append(SpendDay(startTime=str(padding), spend=0, users={}, models={}))
    return days


async def read(state: GatewayState, caller: Caller, query: SpendQuery) -> SpendAnswer:
    await state.request_log.flush()  # a read right after a call must include it
    deployments = {d.id: d for d in state.deployments}
    return await asyncio.to_thread(spend_logs, state, caller, query, deployments)
