"""LiteLLM's key and team operations over the gateway's key store: a key is named by
itself, its SHA-256 (LiteLLM's `token`) or its alias; deleting one revokes it (its row stays,
so its spend stays in the log and reports)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

from gateway.api.litellm_admin import answers
from gateway.api.litellm_admin.models import (
    KeyGenerated,
    KeyInfoAnswer,
    KeyRequest,
    KeysDeleted,
    KeyUpdated,
    ListedTeam,
    LiteLLMKey,
    LiteLLMTeam,
    TeamInfoAnswer,
    TeamKey,
    TeamRequest,
    TeamsDeleted,
    TeamUpdated,
)
from gateway.api.litellm_admin.requests import (
    custom_key,
    key_fields,
    team_fields,
    team_update_fields,
)
from gateway.core.errors import BadRequest, NotFound, PermissionDenied
from gateway.identity.auth import Caller
from gateway.identity.keys import KeyRecord, hash_key
from gateway.state import GatewayState

SHA256 = re.compile(r"[0-9a-f]{64}")


def no_key(given: str) -> NotFound:
    shown = given if SHA256.fullmatch(given) else f"{given[:6]}..."
    return NotFound(f"Key {shown!r} not found (give the key itself or its SHA-256).", param="key")


def _find(state: GatewayState, given: str) -> KeyRecord | None:
    """The key, by itself or by its SHA-256 (LiteLLM accepts both everywhere)."""
    record = state.keys.by_hash(hash_key(given))
    if record is None and SHA256.fullmatch(given):
        record = state.keys.by_hash(given)
    return record


def _by_alias(state: GatewayState, alias: str) -> list[KeyRecord]:
    return [r for r in state.keys.list_keys() if r.name == alias and not r.revoked]


def _alias_free(state: GatewayState, alias: str | None, key_id: str | None = None) -> None:
    if alias and any(r.id != key_id for r in _by_alias(state, alias)):
        raise BadRequest(
            f"Key with alias {alias!r} already exists: aliases are unique among live keys.",
            param="key_alias",
        )


def _now() -> datetime:
    return datetime.now(UTC)


async def generate(state: GatewayState, request: KeyRequest) -> KeyGenerated:
    fields = key_fields(request, _now(), existing=None)
    secret = None
    if request.key is not None:
        secret = custom_key(request.key)
        if state.auth.is_master(secret):
            raise BadRequest("key must not be the master key.", param="key")
    await asyncio.to_thread(_alias_free, state, fields.get("name"))
    record, key = await asyncio.to_thread(state.keys.create, fields, secret)
    if request.blocked:
        record = await asyncio.to_thread(state.keys.revoke, record.id)
    state.key_cache.put(record)
    shown = answers.key_fields(record, 0.0, _now())
    return KeyGenerated(**shown, key=key, token=record.key_hash, token_id=record.key_hash)


async def info(state: GatewayState, caller: Caller, key: str | None) -> KeyInfoAnswer:
    """Without `key`, the caller's own key (LiteLLM's default)."""
    if key is None:
        if caller.key is None:
            raise BadRequest(
                "No key given: pass ?key= (the key or its SHA-256); the master key is not a "
                "virtual key.",
                param="key",
            )
        record: KeyRecord | None = caller.key
        key = ""
    else:
        record = await asyncio.to_thread(_find, state, key)
    if record is None:
        raise no_key(key)
    if not caller.is_master and (caller.key is None or caller.key.id != record.id):
        raise PermissionDenied("A virtual key may read only its own info.", param="key")
    await state.request_log.flush()  # spend includes the calls that just ended
    shown = await answers.key_shown(state, record, _now())
    return KeyInfoAnswer(key=key or "", info=LiteLLMKey(**shown))


async def update(state: GatewayState, request: KeyRequest) -> KeyUpdated:
    if request.key is not None:
        record = await asyncio.to_thread(_find, state, request.key)
        if record is None:
            raise no_key(request.key)
    elif request.key_alias is not None:
        found = await asyncio.to_thread(_by_alias, state, request.key_alias)
        if not found:
            raise NotFound(f"No live key with alias {request.key_alias!r}.", param="key_alias")
        if len(found) > 1:  # keys minted by POST /v1/keys, whose names need not be unique
            raise BadRequest(
                f"{len(found)} live keys have the alias {request.key_alias!r}: name the key "
                f"itself (key: the key or its SHA-256).",
                param="key_alias",
            )
        record = found[0]
    else:
        raise BadRequest("Give the key to update: key (or its SHA-256), or key_alias.", param="key")
    fields = key_fields(request, _now(), existing=record)
    if request.blocked is False and record.revoked:
        raise BadRequest(
            "A revoked key stays revoked here: generate a new key instead.", param="blocked"
        )
    if request.blocked:
        fields["revoked"] = True
    if "name" in fields:
        await asyncio.to_thread(_alias_free, state, fields["name"], record.id)
    if fields:
        record = await asyncio.to_thread(state.keys.update, record.id, fields)
        state.key_cache.put(record)
    await state.request_log.flush()
    shown = await answers.key_shown(state, record, _now())
    return KeyUpdated(**shown, key=request.key if request.key is not None else record.key_hash)


async def delete(state: GatewayState, keys: list[str], aliases: list[str]) -> KeysDeleted:
    """Every key named must exist (else nothing is deleted: a 404), as in LiteLLM."""
    if not keys and not aliases:
        raise BadRequest("Give keys (the keys or their SHA-256) or key_aliases.", param="keys")

    def found() -> list[KeyRecord]:
        if keys:
            records = [(given, _find(state, given)) for given in keys]
            missing = [given for given, record in records if record is None]
            if missing:
                raise no_key(missing[0])
            return [record for _, record in records if record is not None]
        named = [r for alias in aliases for r in _by_alias(state, alias)]
        known = {r.name for r in named}
        missing = [alias for alias in aliases if alias not in known]
        if missing:
            raise NotFound(f"No live key with alias {missing[0]!r}.", param="key_aliases")
        return named

    for record in await asyncio.to_thread(found):
        revoked = await asyncio.to_thread(state.keys.revoke, record.id)
        state.key_cache.put(revoked)
    return KeysDeleted(deleted_keys=keys or aliases)


async def new_team(state: GatewayState, request: TeamRequest) -> LiteLLMTeam:
    team_id, fields = team_fields(request)

    def create() -> None:
        try:
            state.keys.team(team_id)
        except NotFound:
            team = state.keys.upsert_team(team_id, fields)
            state.key_cache.put_team(team)
            return
        raise BadRequest(
            f"Team id = {team_id} already exists. Please use a different team id.",
            param="team_id",
        )

    await asyncio.to_thread(create)
    team = await asyncio.to_thread(state.keys.team, team_id)
    return await answers.team_shown(state, team, _now())


async def update_team(state: GatewayState, request: TeamRequest) -> TeamUpdated:
    """The team named by team_id must exist (a 404 otherwise: this does not create one)."""
    if not request.team_id:
        raise BadRequest("Give the team to update: team_id.", param="team_id")
    team_id = request.team_id
    existing = await asyncio.to_thread(state.keys.team, team_id)
    fields = team_update_fields(request, existing)
    team = await asyncio.to_thread(state.keys.upsert_team, team_id, fields)
    state.key_cache.put_team(team)
    return TeamUpdated(team_id=team_id, data=await answers.team_shown(state, team, _now()))


async def delete_teams(state: GatewayState, team_ids: list[str]) -> TeamsDeleted:
    """Every team named must exist (else nothing is deleted: a 404), as in LiteLLM."""
    revoked = await asyncio.to_thread(state.keys.delete_teams, team_ids)
    state.key_cache.drop_teams(team_ids, revoked)
    return TeamsDeleted(deleted_teams=team_ids)


async def team_info(state: GatewayState, caller: Caller, team_id: str | None) -> TeamInfoAnswer:
    if not team_id:
        raise BadRequest("Pass ?team_id=.", param="team_id")
    if not caller.is_master and (caller.key is None or caller.key.team != team_id):
        raise PermissionDenied(
            "Only the master key or a key of the team may read a team's info.", param="team_id"
        )
    team = await asyncio.to_thread(state.keys.team, team_id)
    records = await asyncio.to_thread(state.keys.list_keys, team_id)
    now = _now()
    await state.request_log.flush()
    return TeamInfoAnswer(
        team_id=team_id,
        team_info=await answers.team_shown(state, team, now),
        keys=await _live_keys(state, records, now),
    )


async def team_list(state: GatewayState, caller: Caller) -> list[ListedTeam]:
    """Every team for the master key; a virtual key sees its own team, if it has one."""
    teams = await asyncio.to_thread(state.keys.list_teams)
    own = None
    if not caller.is_master:
        own = caller.key.team if caller.key is not None else None
        teams = [t for t in teams if t.id == own]
        if not teams:
            return []
    records = await asyncio.to_thread(state.keys.list_keys, own)
    by_team: dict[str, list[KeyRecord]] = {}
    for record in records:
        if record.team:
            by_team.setdefault(record.team, []).append(record)
    now = _now()
    await state.request_log.flush()
    listed = []
    for team in teams:
        shown = await answers.team_shown(state, team, now)
        keys = await _live_keys(state, by_team.get(team.id, []), now)
        listed.append(ListedTeam(**shown.model_dump(), keys=keys))
    return listed


async def _live_keys(state: GatewayState, records: list[KeyRecord], now: datetime) -> list[TeamKey]:
    live = [r for r in records if not r.revoked and (r.expires_at is None or r.expires_at > now)]
    shown = await asyncio.gather(*(answers.key_shown(state, r, now) for r in live))
    return [TeamKey(**fields, token=r.key_hash) for fields, r in zip(shown, live, strict=True)]
