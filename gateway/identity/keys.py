"""Virtual keys and teams: stored as SHA-256 hashes, served from an in-memory cache.

Every replica polls for rows changed since its last look (twice a second), so a revocation
made anywhere takes effect everywhere within a second without touching the request path.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import logging
import math
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from gateway.core.errors import BadRequest, NotFound
from gateway.identity.models import (
    KEY_FIELDS,
    MAX_BUDGET_USD,
    TEAM_FIELDS,
    TEAM_ID_MAX,
    KeyCreated,
    KeyInfo,
    TeamInfo,
)
from gateway.store.polling import POLL_SECONDS, Poller
from gateway.store.tables import api_keys, teams

log = logging.getLogger("gateway.keys")

KEY_PREFIX = "gw-"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def now_utc() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands datetimes back naive; everything we store is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    key_hash: str
    prefix: str
    name: str | None = None
    team: str | None = None
    models: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()
    max_budget: float | None = None
    budget_duration: str | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    expires_at: datetime | None = None
    revoked: bool = False
    log_bodies: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> KeyRecord:
        return cls(
            id=row["id"],
            key_hash=row["key_hash"],
            prefix=row["prefix"],
            name=row.get("name"),
            team=row.get("team"),
            models=tuple(row.get("models") or ()),
            prompts=tuple(row.get("prompts") or ()),
            max_budget=row.get("max_budget"),
            budget_duration=row.get("budget_duration"),
            rpm_limit=row.get("rpm_limit"),
            tpm_limit=row.get("tpm_limit"),
            expires_at=_aware(row.get("expires_at")),
            revoked=bool(row.get("revoked")),
            log_bodies=bool(row.get("log_bodies")),
            metadata=dict(row.get("metadata") or {}),
            created_at=_aware(row.get("created_at")),
            updated_at=_aware(row.get("updated_at")),
        )

    def allows_model(self, alias: str) -> bool:
        return not self.models or any(fnmatch.fnmatchcase(alias, g) for g in self.models)

    def allows_prompt(self, name: str) -> bool:
        return not self.prompts or any(fnmatch.fnmatchcase(name, g) for g in self.prompts)

    def public(self) -> KeyInfo:
        """What the API and the CLI show: everything but the hash."""
        return KeyInfo(**self._shown())

    def with_secret(self, key: str) -> KeyCreated:
        """The answer to minting or rotating it, the only one that carries the key itself."""
        return KeyCreated(key=key, **self._shown())

    def _shown(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key_prefix": self.prefix,
            "name": self.name,
            "team": self.team,
            "models": list(self.models),
            "prompts": list(self.prompts),
            "max_budget": self.max_budget,
            "budget_duration": self.budget_duration,
            "rpm_limit": self.rpm_limit,
            "tpm_limit": self.tpm_limit,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked": self.revoked,
            "log_bodies": self.log_bodies,
            "metadata": dict(self.metadata),
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


@dataclass(frozen=True, slots=True)
class TeamRecord:
    id: str
    max_budget: float | None = None
    budget_duration: str | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> TeamRecord:
        return cls(
            id=row["id"],
            max_budget=row.get("max_budget"),
            budget_duration=row.get("budget_duration"),
            rpm_limit=row.get("rpm_limit"),
            tpm_limit=row.get("tpm_limit"),
            metadata=dict(row.get("metadata") or {}),
            updated_at=_aware(row.get("updated_at")),
        )

    def public(self) -> TeamInfo:
        return TeamInfo(
            id=self.id,
            max_budget=self.max_budget,
            budget_duration=self.budget_duration,
            rpm_limit=self.rpm_limit,
            tpm_limit=self.tpm_limit,
            metadata=dict(self.metadata),
        )


def check_team_id(team: str, param: str = "team") -> str:
    if not 1 <= len(team) <= TEAM_ID_MAX or any(ord(c) < 32 or ord(c) == 127 for c in team):
        raise BadRequest(
            f"team id {team[:80]!r} must be 1 to {TEAM_ID_MAX} characters without control "
            f"characters",
            param=param,
        )
    return team


def _shown(team_id: str) -> str:
    """A team id as messages quote it: a hostile one is not echoed whole."""
    return repr(team_id) if len(team_id) <= TEAM_ID_MAX else repr(team_id[:TEAM_ID_MAX]) + "..."


def _check_budget(value: Any) -> None:
    # What identity.models refuses, refused here too for callers that skip the models: an
    # infinite budget would be stored as null (no budget) or break every later call.
    if value is not None and not (
        isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= MAX_BUDGET_USD
    ):
        raise BadRequest(
            f"max_budget must be a number of USD from 0 to {MAX_BUDGET_USD:.0f}, not {value!r} "
            f"(omit it for no budget)",
            param="max_budget",
        )


def _clean(fields: Mapping[str, Any], allowed: set[str]) -> dict[str, Any]:
    """Known fields only; an explicit null list or mapping means empty (columns are NOT NULL)."""
    values = {k: v for k, v in fields.items() if k in allowed}
    for name, empty in (("models", []), ("prompts", []), ("metadata", {}), ("log_bodies", False)):
        if name in values and values[name] is None:
            values[name] = empty
    _check_budget(values.get("max_budget"))
    if isinstance(values.get("team"), str):
        check_team_id(values["team"])
    return values


class KeyStore:
    """Synchronous database access for keys and teams (call it from a worker thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, fields: Mapping[str, Any], secret: str | None = None) -> tuple[KeyRecord, str]:
        """A new key; `secret` is its value when the caller brings one (a key moved from
        LiteLLM keeps working), else one is drawn."""
        key = secret or KEY_PREFIX + secrets.token_urlsafe(32)
        stamp = now_utc()
        row = {
            "id": "key_" + secrets.token_hex(8),
            "key_hash": hash_key(key),
            "prefix": key[:10],
            "models": [],
            "prompts": [],
            "metadata": {},
            "revoked": False,
            "log_bodies": False,
            **_clean(fields, KEY_FIELDS),
            "created_at": stamp,
            "updated_at": stamp,
        }
        try:
            with self.engine.begin() as connection:
                team = row.get("team")
                if isinstance(team, str) and team:
                    self._ensure_team(connection, team, stamp)
                connection.execute(api_keys.insert().values(**row))
        except IntegrityError:
            if secret is None:
                raise
            raise BadRequest("A key with this value already exists.", param="key") from None
        return KeyRecord.from_row(row), key

    @staticmethod
    def _ensure_team(connection: Any, team: str, stamp: datetime) -> None:
        exists = connection.execute(select(teams.c.id).where(teams.c.id == team)).first()
        if exists is None:
            connection.execute(
                teams.insert().values(id=team, metadata={}, created_at=stamp, updated_at=stamp)
            )

    def get(self, key_id: str) -> KeyRecord:
        with self.engine.connect() as connection:
            row = connection.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
        if row is None:
            raise NotFound(f"No key with id {key_id!r}.", param="id")
        return KeyRecord.from_row(row._mapping)

    def by_hash(self, key_hash: str) -> KeyRecord | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(api_keys).where(api_keys.c.key_hash == key_hash)
            ).first()
        return KeyRecord.from_row(row._mapping) if row else None

    def list_keys(self, team: str | None = None) -> list[KeyRecord]:
        query = select(api_keys).order_by(api_keys.c.created_at)
        if team is not None:
            query = query.where(api_keys.c.team == team)
        with self.engine.connect() as connection:
            return [KeyRecord.from_row(r._mapping) for r in connection.execute(query)]

    def update(self, key_id: str, fields: Mapping[str, Any]) -> KeyRecord:
        values = _clean(fields, KEY_FIELDS | {"revoked"})
        stamp = now_utc()
        with self.engine.begin() as connection:
            if values.get("team"):
                self._ensure_team(connection, values["team"], stamp)
            result = connection.execute(
                update(api_keys).where(api_keys.c.id == key_id).values(**values, updated_at=stamp)
            )
        if result.rowcount == 0:
            raise NotFound(f"No key with id {key_id!r}.", param="id")
        return self.get(key_id)

    def revoke(self, key_id: str) -> KeyRecord:
        return self.update(key_id, {"revoked": True})

    def rotate(self, key_id: str) -> tuple[KeyRecord, str]:
        """A new secret for the same key id, budget and history; the old secret stops working."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.engine.begin() as connection:
            result = connection.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id)
                .values(key_hash=hash_key(key), prefix=key[:10], updated_at=now_utc())
            )
        if result.rowcount == 0:
            raise NotFound(f"No key with id {key_id!r}.", param="id")
        return self.get(key_id), key

    def changed_since(self, since: datetime) -> tuple[list[KeyRecord], list[TeamRecord]]:
        with self.engine.connect() as connection:
            keys = connection.execute(select(api_keys).where(api_keys.c.updated_at >= since))
            key_records = [KeyRecord.from_row(r._mapping) for r in keys]
            team_rows = connection.execute(select(teams).where(teams.c.updated_at >= since))
            team_records = [TeamRecord.from_row(r._mapping) for r in team_rows]
        return key_records, team_records

    def upsert_team(self, team_id: str, fields: Mapping[str, Any]) -> TeamRecord:
        check_team_id(team_id, param="id")
        values = _clean(fields, TEAM_FIELDS)
        stamp = now_utc()
        with self.engine.begin() as connection:
            self._ensure_team(connection, team_id, stamp)
            connection.execute(
                update(teams).where(teams.c.id == team_id).values(**values, updated_at=stamp)
            )
        return self.team(team_id)

    def team(self, team_id: str) -> TeamRecord:
        with self.engine.connect() as connection:
            row = connection.execute(select(teams).where(teams.c.id == team_id)).first()
        if row is None:
            raise NotFound(f"No team {_shown(team_id)}.", param="team")
        return TeamRecord.from_row(row._mapping)

    def delete_teams(self, team_ids: Sequence[str]) -> list[KeyRecord]:
        """Deletes the teams and revokes their live keys, all or nothing: a team that does
        not exist is a NotFound and nothing changes. The keys' rows stay (the request log and
        spend name them), revoked: revocation reaches every replica as a key's does. Returns
        the keys revoked."""
        stamp = now_utc()
        with self.engine.begin() as connection:
            found = set(
                connection.execute(select(teams.c.id).where(teams.c.id.in_(team_ids))).scalars()
            )
            missing = [team for team in team_ids if team not in found]
            if missing:
                raise NotFound(f"No team {_shown(missing[0])}; nothing was deleted.", param="team")
            live = api_keys.c.team.in_(team_ids) & api_keys.c.revoked.is_(False)
            ids = list(connection.execute(select(api_keys.c.id).where(live)).scalars())
            connection.execute(update(api_keys).where(live).values(revoked=True, updated_at=stamp))
            connection.execute(delete(teams).where(teams.c.id.in_(team_ids)))
            if not ids:
                return []
            rows = connection.execute(select(api_keys).where(api_keys.c.id.in_(ids)))
            return [KeyRecord.from_row(r._mapping) for r in rows]

    def list_teams(self) -> list[TeamRecord]:
        with self.engine.connect() as connection:
            return [
                TeamRecord.from_row(r._mapping)
                for r in connection.execute(select(teams).order_by(teams.c.id))
            ]


class KeyCache:
    """Keys and teams by hash, kept fresh by polling.

    A hash that is not cached is answered from memory too: the caller waits for the next
    look at the rows changed since the last one, a look that starts after it asked, so a key
    minted on another replica a moment ago works on first use. Misses share that look, and
    looks run at most once per poll interval, so a flood of garbage keys costs the database
    one small query per interval however many requests it sends. Hashes found unknown are
    remembered (bounded) and answered at once; a poll that sees the key forgets the miss.
    """

    MISSES_KEPT = 10_000
    MISS_TTL = 60.0
    # A hung database must not hang the request: past this the key is treated as unknown.
    LOOK_WAIT = 5.0

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self.by_hash: dict[str, KeyRecord] = {}
        self._hash_by_id: dict[str, str] = {}
        self.teams: dict[str, TeamRecord] = {}
        self._misses: dict[str, float] = {}
        # The background poll and the misses' looks both read and apply rows from worker
        # threads: one at a time, so an older snapshot never lands after a newer one.
        self._loading = threading.Lock()
        self._lock = threading.Lock()
        self._poller = Poller("key-cache", self._load)
        self._next_look: asyncio.Task[bool] | None = None
        self._looks: set[asyncio.Task[bool]] = set()
        self._look_lock: asyncio.Lock | None = None
        self._last_look = -POLL_SECONDS
        self.looks = 0  # looks run for misses: each is one small query, whatever it served

    def _apply(self, keys: Iterable[KeyRecord], team_records: Iterable[TeamRecord]) -> None:
        with self._lock:
            for record in keys:
                # A rotated key changes hash: drop the old entry for the same id.
                old_hash = self._hash_by_id.get(record.id)
                if old_hash is not None and old_hash != record.key_hash:
                    self.by_hash.pop(old_hash, None)
                self.by_hash[record.key_hash] = record
                self._hash_by_id[record.id] = record.key_hash
                self._misses.pop(record.key_hash, None)
            for team in team_records:
                self.teams[team.id] = team

    def put(self, record: KeyRecord) -> None:
        """This replica's own writes apply at once; others see them on their next poll."""
        self._apply([record], [])

    def put_team(self, team: TeamRecord) -> None:
        self._apply([], [team])

    def drop_teams(self, team_ids: Iterable[str], revoked: Iterable[KeyRecord]) -> None:
        """A deletion made here. Other replicas learn of it by its revoked keys; they keep the
        team itself, which no live key names any more, until a new team takes its id."""
        self._apply(revoked, [])
        with self._lock:
            for team_id in team_ids:
                self.teams.pop(team_id, None)

    def _load(self, since: datetime) -> None:
        with self._loading:
            keys, team_records = self.store.changed_since(since)
            self._apply(keys, team_records)

    def refresh(self) -> None:
        self._poller.refresh()

    async def start(self) -> None:
        await self._poller.start()

    async def aclose(self) -> None:
        await self._poller.aclose()
        for task in self._looks:
            task.cancel()
        await asyncio.gather(*self._looks, return_exceptions=True)

    async def lookup(self, key_hash: str) -> KeyRecord | None:
        record = self.by_hash.get(key_hash)
        if record is not None:
            return record
        missed = self._misses.get(key_hash)
        if missed is not None and time.monotonic() - missed < self.MISS_TTL:
            return None
        try:
            looked = await asyncio.wait_for(asyncio.shield(self._look_soon()), self.LOOK_WAIT)
        except TimeoutError:
            log.warning("key lookup waited %ss for the database; answering unknown", self.LOOK_WAIT)
            return None
        record = self.by_hash.get(key_hash)
        if record is None and looked:
            self._remember_miss(key_hash)
        return record

    def _remember_miss(self, key_hash: str) -> None:
        with self._lock:
            if len(self._misses) >= self.MISSES_KEPT:
                del self._misses[next(iter(self._misses))]  # the oldest
            self._misses[key_hash] = time.monotonic()

    def _look_soon(self) -> asyncio.Task[bool]:
        """The look every miss from now on waits for: one queued, one in flight at most."""
        if self._next_look is None:
            self._next_look = asyncio.create_task(self._look(), name="key-cache-look")
            self._looks.add(self._next_look)
            self._next_look.add_done_callback(self._looks.discard)
        return self._next_look

    async def _look(self) -> bool:
        if self._look_lock is None:
            self._look_lock = asyncio.Lock()
        async with self._look_lock:
            wait = self._last_look + POLL_SECONDS - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            # Misses arriving from here on may ask for a key committed after this look began.
            self._next_look = None
            self._last_look = time.monotonic()
            self.looks += 1
            try:
                await asyncio.to_thread(self._poller.refresh)
            except SQLAlchemyError as exc:
                log.warning("key lookup failed (%s); unknown keys are refused meanwhile", exc)
                return False
            return True

    def team(self, team_id: str | None) -> TeamRecord | None:
        return self.teams.get(team_id) if team_id else None
