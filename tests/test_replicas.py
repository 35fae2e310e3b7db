"""Two gateway processes sharing PostgreSQL and Redis: limits, budgets, revocation and the
request log hold across replicas, and a database outage loses no row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, func, select

from gateway.store.tables import request_log
from tests.conftest import MASTER_KEY, REDIS_URL, fake_model, free_port, seen_within_a_second
from tests.fakes.postgres_server import postgres_server
from tests.fakes.upstream import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
USER = [{"role": "user", "content": "one two three"}]

pytestmark = pytest.mark.slow


class Replica:
    def __init__(self, tmp: Path, config: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp / f"replica-{self.port}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env={**env, "GATEWAY_CONFIG": str(config), "GATEWAY_DATA_DIR": str(tmp / "data")},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"replica exited: {Path(self.log.name).read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("replica did not become ready")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@contextmanager
def _two_replicas(
    tmp_path: Path, upstream: FakeUpstream, database_url: str, redis_prefix: str
) -> Iterator[list[Replica]]:
    entry = fake_model(upstream, "priced", "gpt-4o-mini")
    entry["model_info"] = {"input_cost_per_token": 0.001, "output_cost_per_token": 0.001}
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump({"model_list": [entry], "gateway": {"default_max_tokens": 10}})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {
        "GATEWAY_DATABASE_URL": database_url,
        "GATEWAY_REDIS_URL": REDIS_URL,
        "GATEWAY_REDIS_PREFIX": redis_prefix,
        "GATEWAY_MASTER_KEY": MASTER_KEY,
        "GATEWAY_LOG_LEVEL": "warning",
    }
    first = Replica(tmp_path, config, env)
    started = [first]
    try:
        first.wait_ready()  # the first one runs the migrations; the second finds them done
        second = Replica(tmp_path, config, env)
        started.append(second)
        second.wait_ready()
        yield started
    finally:
        for replica in started:
            replica.stop()


@pytest.fixture
def replicas(
    tmp_path: Path, upstream: FakeUpstream, pg_url: str, redis_prefix: str
) -> Iterator[tuple[list[Replica], str]]:
    with _two_replicas(tmp_path, upstream, pg_url, redis_prefix) as started:
        yield started, pg_url


def _chat(url: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "priced", "messages": USER, "max_tokens": 10},
        timeout=30,
    )


def _make_key(url: str, **fields: Any) -> dict[str, Any]:
    response = httpx.post(f"{url}/v1/keys", json=fields, headers=ADMIN)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def _count_rows(url: str, expected: int, timeout: float = 20.0) -> int:
    engine = create_engine(url)
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            count = int(
                connection.execute(select(func.count()).select_from(request_log)).scalar_one()
            )
        if count >= expected:
            break
        time.sleep(0.1)
    engine.dispose()
    return count


def _away_from_minute_edge() -> None:
    # Fixed one-minute windows: keep the burst inside one window.
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)


def test_limits_budget_revocation_and_log_across_two_replicas(
    replicas: tuple[list[Replica], str],
) -> None:
    (a, b), pg_url = replicas
    sent = 0

    # RPM: 60 concurrent calls through both replicas, one key limited to 20 per minute.
    rpm_key = _make_key(a.url, rpm_limit=20)["key"]
    _away_from_minute_edge()
    with ThreadPoolExecutor(12) as pool:
        statuses = Counter(
            r.status_code for r in pool.map(lambda i: _chat((a, b)[i % 2].url, rpm_key), range(60))
        )
    sent += 60
    assert abs(statuses[200] - 20) <= 1, statuses
    assert statuses[429] == 60 - statuses[200]

    # Budget: $0.30, each call costs $0.007 and reserves ~$0.09 (worst case) up front.
    budget_key = _make_key(a.url, max_budget=0.3)
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda i: _chat((a, b)[i % 2].url, budget_key["key"]), range(80)))
    sent += 80
    costs = [float(r.headers["x-gateway-cost-usd"]) for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert costs
    assert refused
    assert all(r.json()["error"]["code"] == "insufficient_quota" for r in refused)
    assert sum(costs) <= 0.3 + 1e-9
    shown = httpx.get(f"{b.url}/v1/keys/{budget_key['id']}", headers=ADMIN).json()
    assert shown["spend"] == pytest.approx(sum(costs))

    # Revocation on one replica is refused by the other within a second.
    victim = _make_key(a.url)
    time.sleep(1.0)  # let replica b learn the key
    assert _chat(b.url, victim["key"]).status_code == 200
    assert httpx.delete(f"{a.url}/v1/keys/{victim['id']}", headers=ADMIN).status_code == 200
    revoked_at = time.monotonic()
    asked = 0

    def refused() -> bool:
        nonlocal asked
        asked += 1
        return _chat(b.url, victim["key"]).status_code == 401

    seen_within_a_second(revoked_at, refused, "replica b still accepts a revoked key")
    sent += asked + 1
    assert _chat(a.url, victim["key"]).status_code == 401
    sent += 1

    # Exactly one request-log row per request sent, whichever replica served it.
    assert _count_rows(pg_url, sent) == sent
    time.sleep(0.5)
    assert _count_rows(pg_url, sent, timeout=0.1) == sent


def test_database_outage_mid_load_loses_no_row(
    tmp_path: Path, upstream: FakeUpstream, redis_prefix: str
) -> None:
    """The database stops mid-load (its own throwaway server: never the machine's) and
    comes back: every call is answered and every row reaches the database."""
    with (
        postgres_server() as pg,
        _two_replicas(tmp_path, upstream, pg.url, redis_prefix) as (a, b),
    ):
        statuses: Counter[int] = Counter()

        def burst(n: int) -> None:
            with ThreadPoolExecutor(8) as pool:
                for r in pool.map(lambda i: _chat((a, b)[i % 2].url, MASTER_KEY), range(n)):
                    statuses[r.status_code] += 1

        burst(40)
        pg.stop()
        try:
            burst(60)  # the request path needs no database: calls go on while it is down
        finally:
            pg.start()
        burst(40)
        assert statuses == {200: 140}
        assert _count_rows(pg.url, 140, timeout=30) == 140
        # The outage was real: rows went to the spool and came back from it.
        logs = "".join(Path(r.log.name).read_text() for r in (a, b))
        assert "spooling" in logs
