"""The request log, read back: `GET /v1/logs` (filtered keyset pages) and `GET /v1/logs/{id}`.

The master key reads every row. A virtual key reads its own rows only: its list is narrowed
to them (asking for another key's is 403) and another key's row is answered as if it did
not exist (404), as prompts and the registry answer what a key may not use.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from gateway.api.deps import CallerDep, StateDep, ValidInput
from gateway.core.errors import PermissionDenied
from gateway.identity.auth import Caller
from gateway.observability.log_query import DEFAULT_LIMIT, LogFilter, get_log, list_logs, no_row
from gateway.observability.models import LogDetail, LogPage

router = APIRouter(dependencies=[ValidInput])


def _visible(caller: Caller, filters: LogFilter) -> LogFilter:
    if caller.is_master:
        return filters
    if filters.key_id not in (None, caller.key_id):
        raise PermissionDenied(
            f"A virtual key reads only its own request log: leave 'key_id' out or give "
            f"{caller.key_id!r}; the master key reads every key's rows.",
            param="key_id",
            code="not_your_key",
        )
    return filters.only_key(caller.key_id)


@router.get("/v1/logs")
async def list_request_log(
    state: StateDep,
    caller: CallerDep,
    key_id: str | None = None,
    team: str | None = None,
    model: str | None = None,
    prompt: str | None = None,
    model_version: str | None = None,
    status: str | None = None,
    error: bool | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int = DEFAULT_LIMIT,
    after: str | None = None,
) -> LogPage:
    """Calls, newest first, without their bodies. `model_version` is a registry version that
    answered (NAME@N) or every version of one (NAME); `status` is a code (429) or a class (4xx);
    `error=true` is every status from 400; `since` (included) and `until` (excluded) are
    ISO 8601; `after` is the `next` of the previous page."""
    filters = LogFilter.parse(
        key_id=key_id,
        team=team,
        model=model,
        prompt=prompt,
        model_version=model_version,
        status=status,
        error=error,
        since=since,
        until=until,
    )
    filters = _visible(caller, filters)
    await state.request_log.flush()  # a read right after a call must include it
    return await asyncio.to_thread(list_logs, state.engine, filters, limit, after)


@router.get("/v1/logs/{request_id}")
async def get_request_log(request_id: str, state: StateDep, caller: CallerDep) -> LogDetail:
    """One call in full, with its request and response bodies when its key logs them."""
    await state.request_log.flush()
    row = await asyncio.to_thread(get_log, state.engine, request_id)
    if not caller.is_master and row.key_id != caller.key_id:
        raise no_row(request_id)
    return row
