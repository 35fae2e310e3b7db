"""Who is calling: the master key for now (virtual keys build on this)."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import os
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.core.errors import AuthenticationFailed, ConfigError, PermissionDenied, RateLimited
from gateway.core.settings import Settings
from gateway.identity.keys import KeyCache, KeyRecord, TeamRecord, hash_key, now_utc
from gateway.store.db import is_shared

log = logging.getLogger("gateway.auth")

MASTER_KEY_FILE = "master_key"
SHARED_DATABASE_NEEDS_A_KEY = (
    "the database is shared (GATEWAY_DATABASE_URL is not SQLite), so every replica must be "
    "given the same master key: set GATEWAY_MASTER_KEY (or the config's "
    "general_settings.master_key, or LITELLM_MASTER_KEY); a key generated here would be this "
    "replica's alone, and the others would answer it with 401"
)


@dataclass(frozen=True, slots=True)
class Caller:
    key_id: str
    is_master: bool
    key: KeyRecord | None = None
    team: TeamRecord | None = None

    def check_prompt(self, name: str) -> None:
        if self.key is not None and not self.key.allows_prompt(name):
            raise PermissionDenied(
                f"Key {self.key.id} may not use prompt {name!r}.",
                param="prompt.name",
                code="prompt_not_allowed",
            )

    def check_model(self, alias: str) -> None:
        if self.key is not None and not self.key.allows_model(alias):
            raise PermissionDenied(
                f"Key {self.key.id} may not use model {alias!r} "
                f"(allowed: {', '.join(self.key.models)}).",
                param="model",
                code="model_not_allowed",
            )


def new_master_key() -> str:
    return "gw-master-" + secrets.token_urlsafe(32)


def resolve_master_key(settings: Settings) -> str:
    """GATEWAY_MASTER_KEY, else the key saved under the data dir, else a new one saved there.

    A new key is printed once, with where it is kept; the file is readable by its owner only.
    Over a shared database (PostgreSQL) the key must be given: a key kept in one replica's
    data dir is that replica's alone, and the others would answer it with 401 (ConfigError).
    """
    if settings.master_key:
        return settings.master_key
    if is_shared(settings.database_url):
        raise ConfigError(SHARED_DATABASE_NEEDS_A_KEY)
    path = Path(settings.data_dir) / MASTER_KEY_FILE
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        if key:
            log.info("master key read from %s", path)
            return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = new_master_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    os.chmod(path, 0o600)
    print(
        f"gateway: generated a master key (shown only this once): {key}\n"
        f"gateway: it is kept in {path.resolve()} (readable by its owner only); "
        f"set GATEWAY_MASTER_KEY to use your own.",
        file=sys.stderr,
        flush=True,
    )
    return key


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key as an Authorization value, from whichever header LiteLLM's proxy reads it:
    `x-litellm-api-key` (with or without "Bearer "), then `Authorization: Bearer`, then
    `api-key` (Azure OpenAI's SDKs) and `x-api-key` (Anthropic's)."""
    own = headers.get("x-litellm-api-key")
    if own:
        token = own.removeprefix("Bearer ").removeprefix("bearer ").strip()
        return f"Bearer {token}"
    authorization = headers.get("authorization")
    if authorization:
        return authorization
    other = headers.get("api-key") or headers.get("x-api-key")
    return f"Bearer {other.strip()}" if other else None


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def client_address(client: tuple[str, int] | None) -> str:
    """Who failed, for the failure limit: an IPv4 address, or an IPv6 /64 (one host usually
    holds a whole /64, so counting single addresses would let it walk around the limit)."""
    if not client:
        return "unknown"
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return client[0]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class FailureLimit:
    """A token bucket per client address, spent only by failed authentications: past it,
    an address's unknown keys are refused before they cost a lookup. Valid keys are
    checked first and never meet it. Bounded: the oldest addresses are forgotten first."""

    ADDRESSES_KEPT = 10_000

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}

    def _tokens(self, address: str, now: float) -> float:
        bucket = self._buckets.get(address)
        if bucket is None:
            return self.capacity
        tokens, at = bucket
        return min(self.capacity, tokens + (now - at) * self.rate)

    def check(self, address: str) -> None:
        tokens = self._tokens(address, time.monotonic())
        if tokens < 1:
            wait = (1 - tokens) / self.rate
            raise RateLimited(
                f"Too many failed authentications from this address (more than "
                f"{self.capacity:g} a minute); retry in {math.ceil(wait)} s with a valid key.",
                retry_after=max(1.0, wait),
            )

    def failed(self, address: str) -> None:
        now = time.monotonic()
        tokens = self._tokens(address, now) - 1
        buckets = self._buckets
        buckets.pop(address, None)
        if len(buckets) >= self.ADDRESSES_KEPT:
            del buckets[next(iter(buckets))]
        buckets[address] = (tokens, now)


class Authenticator:
    def __init__(
        self, master_key: str, keys: KeyCache | None = None, failures_per_minute: int = 60
    ) -> None:
        self._master = master_key.encode()
        self.keys = keys
        self.failures = FailureLimit(failures_per_minute)

    async def authenticate(
        self, authorization: str | None, client: tuple[str, int] | None = None
    ) -> Caller:
        token = bearer_token(authorization)
        if token is None:
            raise AuthenticationFailed(
                "Missing API key: send 'Authorization: Bearer <key>' (the gateway's master key "
                "or a virtual key)."
            )
        if hmac.compare_digest(token.encode(), self._master):
            return Caller(key_id="master", is_master=True)
        if self.keys is None:
            raise AuthenticationFailed("Invalid API key: it is not the master key.")
        # The cache is keyed by the SHA-256 of the key: a dict lookup on a hash compares
        # digests, not secrets, so it leaks nothing useful through timing.
        key_hash = hash_key(token)
        record = self.keys.by_hash.get(key_hash)
        if record is None:
            address = client_address(client)
            self.failures.check(address)
            record = await self.keys.lookup(key_hash)
            if record is None:
                self.failures.failed(address)
                raise AuthenticationFailed(
                    "Invalid API key: it is not the master key nor a known key."
                )
        if record.revoked:
            raise AuthenticationFailed(f"Key {record.id} has been revoked.", code="key_revoked")
        if record.expires_at is not None and record.expires_at <= now_utc():
            raise AuthenticationFailed(
                f"Key {record.id} expired at {record.expires_at.isoformat()}.", code="key_expired"
            )
        return Caller(
            key_id=record.id, is_master=False, key=record, team=self.keys.team(record.team)
        )

    def is_master(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self._master)

    def require_master(self, caller: Caller) -> None:
        if not caller.is_master:
            raise PermissionDenied(
                "This endpoint needs the master key.", code="master_key_required"
            )
