"""A database that accepts connections but never answers (a throwaway PostgreSQL, SIGSTOPped)
hangs nothing: every call ends with an error, the request log spools and replays, readiness
says not ready, admin routes answer 503, and SIGTERM completes with every row kept."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import OperationalError

from gateway.observability.request_log import RequestLogWriter
from gateway.store.db import make_engine, migrate
from gateway.store.tables import request_log
from tests.conftest import MASTER_KEY, ROOT, free_port
from tests.fakes.postgres_server import PostgresServer, postgres_server

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
USER = [{"role": "user", "content": "one two three"}]
TIMEOUT_S = 1.0  # GATEWAY_DATABASE_TIMEOUT in these tests: the bounds they rely on
DEADLINE_S = 60.0  # how long a test waits before calling something hung


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def _finishes(function: Callable[[], Any]) -> Any:
    """Runs `function` in a thread; fails the test if it has not returned (or raised) within
    DEADLINE_S, the test's definition of "hangs". Returns its result or exception."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(function())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLINE_S)
    assert not thread.is_alive(), f"{function} hung on a silent database"
    return outcome[0]


def _count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(request_log)).scalar_one())


def _row(request_id: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": request_id,
        "created_at": now,
        "finished_at": now,
        "route": "chat",
        "status": 200,
        "latency_ms": 1.0,
    }


def test_every_call_on_a_silent_database_ends(pg: PostgresServer) -> None:
    engine = make_engine(pg.url, TIMEOUT_S)
    migrate(engine)
    with engine.connect() as connection:  # a pooled connection, as a running gateway has
        connection.execute(text("SELECT 1"))
    pg.pause()
    try:
        for _ in range(2):  # the pooled connection, then a new one
            failed = _finishes(lambda: engine.connect().execute(text("SELECT 1")))
            assert isinstance(failed, OperationalError), failed
        failed = _finishes(lambda: migrate(engine))
        assert isinstance(failed, OperationalError), failed
    finally:
        pg.resume()
    with engine.connect() as connection:  # and it recovers once the server answers
        assert connection.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


def test_a_long_statement_is_cancelled_by_the_server(pg: PostgresServer) -> None:
    engine = make_engine(pg.url, TIMEOUT_S)
    with engine.connect() as connection:
        failed = _finishes(lambda: connection.execute(text("SELECT pg_sleep(30)")))
    assert isinstance(failed, OperationalError)
    assert "statement timeout" in str(failed)
    engine.dispose()


def test_the_request_log_spools_while_the_database_hangs_and_replays_after(
    pg: PostgresServer, tmp_path: Path
) -> None:
    engine = make_engine(pg.url, TIMEOUT_S)
    migrate(engine)
    spool = tmp_path / "spool"

    async def scenario() -> RequestLogWriter:
        writer = RequestLogWriter(engine, spool, batch_size=10, retry_interval=0.2)
        writer.start()
        for index in range(5):
            writer.record(_row(f"before{index}"))
        await writer.flush()
        pg.pause()
        try:
            for index in range(25):
                writer.record(_row(f"during{index}"))
            await asyncio.wait_for(writer.flush(), DEADLINE_S)
            assert writer.spooled == 25
            assert not writer.healthy
            for index in range(10):  # once known to hang: straight to the spool
                writer.record(_row(f"later{index}"))
            await asyncio.wait_for(writer.flush(), DEADLINE_S)
            assert writer.spooled == 35
        finally:
            pg.resume()
        deadline = time.monotonic() + DEADLINE_S
        while list(spool.glob("*.jsonl")) and time.monotonic() < deadline:
            writer.record(_row(f"after{time.monotonic_ns()}"))
            await writer.flush()  # starts the replay in the background
            await asyncio.sleep(0.1)
        await asyncio.wait_for(writer.close(), DEADLINE_S)
        return writer

    writer = asyncio.run(scenario())
    assert not list(spool.glob("*.jsonl"))
    with engine.connect() as connection:
        ids = set(connection.execute(select(request_log.c.id)).scalars())
    expected = {f"before{i}" for i in range(5)} | {f"during{i}" for i in range(25)}
    expected |= {f"later{i}" for i in range(10)}
    assert expected <= ids
    assert writer.dropped == 0
    engine.dispose()


def _serve(data_dir: Path, database_url: str) -> tuple[str, subprocess.Popen[str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    env |= {
        "GATEWAY_DATA_DIR": str(data_dir),
        "GATEWAY_DATABASE_URL": database_url,
        "GATEWAY_DATABASE_TIMEOUT": str(TIMEOUT_S),
        "GATEWAY_MASTER_KEY": MASTER_KEY,
        "GATEWAY_CONFIG": str(data_dir.parent / "gateway.yaml"),
        "GATEWAY_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return base, process
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"gateway serve did not start:\n{process.communicate()[0]}")
        time.sleep(0.1)


def _chats(base: str, n: int, key: str = MASTER_KEY) -> list[int]:
    def one(_: int) -> int:
        response = httpx.post(
            f"{base}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "local/echo", "messages": USER},
            timeout=DEADLINE_S,
        )
        return response.status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def _spooled_ids(spool: Path) -> set[str]:
    return {
        orjson.loads(line)["id"]
        for path in spool.glob("*.jsonl")
        for line in path.read_bytes().splitlines()
        if line
    }


def test_gateway_with_a_hung_database_serves_spools_reports_and_stops(
    pg: PostgresServer, tmp_path: Path
) -> None:
    (tmp_path / "gateway.yaml").write_text(
        "model_list:\n  - model_name: local/echo\n    litellm_params: {model: local/echo}\n"
    )
    data_dir = tmp_path / "data"
    base, process = _serve(data_dir, pg.url)
    output = ""
    try:
        assert _chats(base, 20) == [200] * 20
        pg.pause()
        try:
            # The request path needs no database: calls go on while it hangs.
            assert _chats(base, 30) == [200] * 30
            # /readyz reuses its last answer for up to a second (the probe's cache), so the
            # hang shows within that second: poll, bounded.
            deadline = time.monotonic() + DEADLINE_S
            while (ready := httpx.get(f"{base}/readyz", timeout=DEADLINE_S)).status_code == 200:
                assert time.monotonic() < deadline, "/readyz still ready with the database hung"
                time.sleep(0.1)
            assert ready.status_code == 503
            assert ready.json()["checks"]["database"].startswith("did not answer")
            keys = httpx.get(f"{base}/v1/keys", headers=ADMIN, timeout=DEADLINE_S)
            assert keys.status_code == 503, keys.text
            error = keys.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert error["code"] == "database_unavailable"
            unknown = httpx.post(
                f"{base}/v1/chat/completions",
                headers={"Authorization": "Bearer sk-unknown-key"},
                json={"model": "local/echo", "messages": USER},
                timeout=DEADLINE_S,
            )
            assert unknown.status_code == 401
            assert _chats(base, 10) == [200] * 10
            process.send_signal(signal.SIGTERM)
            try:
                output = process.communicate(timeout=DEADLINE_S)[0]
            except subprocess.TimeoutExpired:
                process.kill()
                output = process.communicate()[0]
                pytest.fail(f"SIGTERM did not stop the gateway with the database hung:\n{output}")
            # uvicorn re-raises the SIGTERM it handled once shut down: -15 is a clean stop.
            assert process.returncode in (0, -signal.SIGTERM), output
        finally:
            pg.resume()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    # 61 calls (one refused for its key) were answered; each one's row is in the database or
    # on the disk, and a new gateway replays the disk.
    engine = make_engine(pg.url)
    spool = data_dir / "spool"
    with engine.connect() as connection:
        stored = set(connection.execute(select(request_log.c.id)).scalars())
    assert len(stored | _spooled_ids(spool)) == 61, output
    assert "spooling" in output
    assert not list(spool.glob("*.tmp"))
    base, process = _serve(data_dir, pg.url)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while _count(engine) < 61 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _count(engine) == 61
        assert not list(spool.glob("*.jsonl"))
        assert httpx.get(f"{base}/readyz", timeout=DEADLINE_S).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=DEADLINE_S)
        engine.dispose()
