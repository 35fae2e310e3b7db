"""The gateway's keys, teams and request-log rows as LiteLLM shows them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from gateway.api.litellm_admin.models import LiteLLMTeam, SpendLog, SpendLogMetadata
from gateway.api.litellm_admin.requests import LITELLM
from gateway.identity.keys import KeyRecord, TeamRecord
from gateway.metering.budgets import period_bounds
from gateway.observability.models import LogRow
from gateway.observability.spend import period_spend
from gateway.providers import Deployment
from gateway.state import GatewayState

# LiteLLM's call types for the gateway's routes.
CALL_TYPES = {"chat": "acompletion", "embeddings": "aembedding"}
MASTER = "master"  # the request log's key_id, and LiteLLM's api_key, for the master key


def extras(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """LiteLLM's fields kept in metadata (user_id, team_alias, members...)."""
    kept = metadata.get(LITELLM)
    return dict(kept) if isinstance(kept, Mapping) else {}


def own_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metadata.items() if k != LITELLM}


def user_of(record: KeyRecord | None) -> str | None:
    user = extras(record.metadata).get("user_id") if record else None
    return user if isinstance(user, str) else None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def reset_at(duration: str | None, now: datetime) -> str | None:
    return _iso(period_bounds(duration, now)[2])


async def spent(state: GatewayState, scope: str, limits: KeyRecord | TeamRecord) -> float:
    """What LiteLLM calls spend: in the current budget period when there is one, else in all
    time. The meter counts budgeted scopes; the others are summed from the log (flush it
    first for calls that just ended)."""
    if limits.max_budget is not None:
        return await state.meter.spent(scope, limits.max_budget, limits.budget_duration)
    return await asyncio.to_thread(period_spend, state.engine, scope, limits.budget_duration)


def key_fields(record: KeyRecord, spend: float, now: datetime) -> dict[str, Any]:
    """LiteLLMKey's fields, for it and the answers built on it."""
    if record.revoked:
        status = "revoked"
    elif record.expires_at is not None and record.expires_at <= now:
        status = "expired"
    else:
        status = "active"
    return {
        "key_id": record.id,
        "key_name": f"{record.prefix}...",
        "key_alias": record.name,
        "spend": spend,
        "max_budget": record.max_budget,
        "budget_duration": record.budget_duration,
        "budget_reset_at": reset_at(record.budget_duration, now) if record.max_budget else None,
        "expires": _iso(record.expires_at),
        "models": list(record.models),
        "prompts": list(record.prompts),
        "user_id": user_of(record),
        "team_id": record.team,
        "metadata": own_metadata(record.metadata),
        "tpm_limit": record.tpm_limit,
        "rpm_limit": record.rpm_limit,
        "blocked": record.revoked,
        "status": status,
        "created_at": _iso(record.created_at),
        "updated_at": _iso(record.updated_at),
    }


async def key_shown(state: GatewayState, record: KeyRecord, now: datetime) -> dict[str, Any]:
    return key_fields(record, await spent(state, f"key:{record.id}", record), now)


async def team_shown(state: GatewayState, team: TeamRecord, now: datetime) -> LiteLLMTeam:
    kept = extras(team.metadata)
    return LiteLLMTeam(
        team_id=team.id,
        team_alias=kept.get("team_alias"),
        spend=await spent(state, f"team:{team.id}", team),
        max_budget=team.max_budget,
        budget_duration=team.budget_duration,
        budget_reset_at=reset_at(team.budget_duration, now) if team.max_budget else None,
        rpm_limit=team.rpm_limit,
        tpm_limit=team.tpm_limit,
        metadata=own_metadata(team.metadata),
        members_with_roles=kept.get("members_with_roles", []),
        members=kept.get("members", []),
        admins=kept.get("admins", []),
        updated_at=_iso(team.updated_at),
    )


def api_key_of(key_id: str | None, keys: Mapping[str, KeyRecord]) -> str:
    """LiteLLM's api_key: the key's SHA-256 (the gateway stores the same hash)."""
    if key_id == MASTER:
        return MASTER
    record = keys.get(key_id) if key_id else None
    return record.key_hash if record else ""


def spend_log(
    row: LogRow, keys: Mapping[str, KeyRecord], deployments: Mapping[str, Deployment]
) -> SpendLog:
    record = keys.get(row.key_id) if row.key_id else None
    deployment = deployments.get(row.deployment) if row.deployment else None
    status = "success" if row.status < 400 else "failure"
    started = datetime.fromisoformat(row.created_at)
    first_token = (
        _iso(started + timedelta(milliseconds=row.ttft_ms)) if row.ttft_ms is not None else None
    )
    prompt = f"{row.prompt_name}@{row.prompt_version}" if row.prompt_name else None
    return SpendLog(
        request_id=row.id,
        call_type=CALL_TYPES.get(row.route, row.route),
        api_key=api_key_of(row.key_id, keys),
        spend=row.cost_usd,
        total_tokens=row.input_tokens + row.output_tokens,
        prompt_tokens=row.input_tokens,
        completion_tokens=row.output_tokens,
        startTime=row.created_at,
        endTime=row.finished_at,
        completionStartTime=first_token,
        model=deployment.upstream_model if deployment else (row.model or ""),
        model_id=row.deployment,
        model_group=row.model,
        custom_llm_provider=row.provider,
        api_base=deployment.api_base if deployment else None,
        user=user_of(record) or "",
        team_id=row.team,
        metadata=SpendLogMetadata(
            user_api_key=api_key_of(row.key_id, keys),
            user_api_key_alias=record.name if record else None,
            user_api_key_team_id=row.team,
            user_api_key_user_id=user_of(record),
            status=status,
            http_status=row.status,
            error_type=row.error_type,
            stream=row.stream,
            attempts=row.attempts,
            deployment=row.deployment,
            prompt=prompt,
            cached_tokens=row.cached_tokens,
            reasoning_tokens=row.reasoning_tokens,
            usage_estimated=row.estimated,
            price_version=row.price_version,
            trace_id=row.trace_id,
        ),
        request_duration_ms=round(row.latency_ms),
        status=status,
    )
