"""Unknown keys are answered from memory: a flood of garbage keys costs the database a
bounded number of small queries (one coalesced look per poll interval), not one per request,
and failed attempts from one address are refused with 429 before they reach the key lookup."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import Engine, event

from gateway.api.app import create_app
from gateway.core.settings import Settings
from gateway.identity.keys import KeyStore
from gateway.state import GatewayState
from gateway.store.db import make_engine
from gateway.store.polling import POLL_SECONDS
from tests.conftest import DEFAULT_MODELS, MASTER_KEY, ServerThread

CHAT = {"model": "local/echo", "messages": [{"role": "user", "content": "hi"}]}
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


class KeyQueries:
    """Counts, on an engine, the statements that read the key tables and those that look a
    single key up by its hash: the database work the gateway really does."""

    def __init__(self, engine: Engine) -> None:
        self.statements = 0
        self.by_hash = 0
        event.listen(engine, "before_cursor_execute", self._statement)

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "api_keys" in statement or "teams" in statement:
            self.statements += 1
        if "key_hash =" in statement:
            self.by_hash += 1


@contextmanager
def serving(tmp_path: Path, **settings: Any) -> Iterator[tuple[str, GatewayState]]:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({"model_list": DEFAULT_MODELS}))
    settings.setdefault("data_dir", tmp_path / ".gateway")
    app = create_app(Settings(config=path, master_key=MASTER_KEY, **settings))
    server = ServerThread(app)
    base = server.start()
    try:
        yield base, app.state.gateway
    finally:
        server.stop()


async def flood(base: str, keys: list[str], clients: int = 100) -> list[httpx.Response]:
    # Kept-alive connections are dropped well before the server's idle timeout, so none is
    # reused at the very moment the server closes it.
    limits = httpx.Limits(max_connections=clients, keepalive_expiry=1)
    async with httpx.AsyncClient(
        base_url=base, limits=limits, timeout=httpx.Timeout(30, pool=None)
    ) as client:
        return await asyncio.gather(
            *(
                client.post(
                    "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {k}"}
                )
                for k in keys
            )
        )


def garbage(n: int) -> list[str]:
    return ["gw-" + secrets.token_urlsafe(32) for _ in range(n)]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "sqlite":
        return {}
    return {"database_url": request.getfixturevalue("pg_url")}


def test_a_flood_of_unknown_keys_costs_a_bounded_number_of_queries(
    tmp_path: Path, database: dict[str, Any]
) -> None:
    with serving(tmp_path, auth_failures_per_minute=1_000_000, **database) as (base, state):
        queries = KeyQueries(state.engine)
        keys = garbage(250)
        started = time.monotonic()
        responses = asyncio.run(flood(base, keys))
        elapsed = time.monotonic() - started
        for response in responses:
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] == "invalid_api_key"
        # No key is looked up on its own: misses share a look at the rows changed since the
        # last one, at most one per poll interval (the background poll adds as many), and
        # each look reads the two key tables once.
        assert queries.by_hash == 0
        intervals = elapsed / POLL_SECONDS + 1
        assert state.key_cache.looks <= intervals, (state.key_cache.looks, elapsed)
        assert queries.statements <= 2 * 2 * (intervals + 1), (queries.statements, elapsed)
        print(
            f"\n{len(keys)} unknown keys in {elapsed:.1f} s: {state.key_cache.looks} looks, "
            f"{queries.statements} key-table statements"
        )
        # The same keys again are answered from memory: no look at all.
        looks = state.key_cache.looks
        again = asyncio.run(flood(base, keys))
        assert {r.status_code for r in again} == {401}
        assert state.key_cache.looks == looks


def test_a_key_minted_by_another_replica_works_on_first_use(
    tmp_path: Path, database: dict[str, Any]
) -> None:
    with serving(tmp_path, auth_failures_per_minute=1_000_000, **database) as (base, _state):
        url = database.get("database_url") or f"sqlite:///{tmp_path / '.gateway' / 'gateway.db'}"
        other_replica = KeyStore(make_engine(url))
        for _ in range(3):
            # Right after a flood of misses, so the new key's miss meets a look that has
            # just run: it must wait for the next one, not be answered from a stale view.
            asyncio.run(flood(base, garbage(50)))
            _, key = other_replica.create({"name": "elsewhere"})
            response = httpx.post(
                f"{base}/v1/chat/completions",
                json=CHAT,
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
        other_replica.engine.dispose()


def test_failed_authentication_is_rate_limited_per_address(tmp_path: Path) -> None:
    with serving(tmp_path, auth_failures_per_minute=5) as (base, state):
        created = httpx.post(f"{base}/v1/keys", json={"name": "good"}, headers=ADMIN).json()
        good = {"Authorization": f"Bearer {created['key']}"}
        looks = state.key_cache.looks
        queries = KeyQueries(state.engine)
        responses = [
            httpx.post(
                f"{base}/v1/chat/completions",
                json=CHAT,
                headers={"Authorization": f"Bearer {key}"},
            )
            for key in garbage(30)
        ]
        statuses = [r.status_code for r in responses]
        assert statuses[:5] == [401] * 5
        assert set(statuses[5:]) == {429}, statuses
        refused = responses[-1]
        assert int(refused.headers["retry-after"]) >= 1
        error = refused.json()["error"]
        assert error["type"] == "rate_limit_error"
        assert "failed authentication" in error["message"].lower()
        # The refused attempts never reached the key lookup: no look beyond the five
        # failures' (which may share looks), no key read on its own.
        assert state.key_cache.looks <= looks + 5
        looks = state.key_cache.looks
        for key in garbage(10):
            refused = httpx.post(
                f"{base}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"}
            )
            assert refused.status_code == 429
        assert state.key_cache.looks == looks
        assert queries.by_hash == 0
        # A valid key and the master key from the same address are still served.
        ok = httpx.post(f"{base}/v1/chat/completions", json=CHAT, headers=good)
        assert ok.status_code == 200, ok.text
        assert httpx.get(f"{base}/v1/keys", headers=ADMIN).status_code == 200
        # Another address is not held responsible for this one's failures.
        transport = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(transport=transport) as other:
            response = other.post(
                f"{base}/v1/chat/completions",
                json=CHAT,
                headers={"Authorization": "Bearer gw-not-a-key"},
            )
        assert response.status_code == 401, response.text
