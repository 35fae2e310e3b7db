"""Shared fixtures: the loopback upstream, and real gateway servers built by create_app."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
import yaml
from sqlalchemy import Engine

from gateway.api.app import create_app
from gateway.api.server import uvicorn_options
from gateway.core.settings import Settings
from gateway.store.db import make_engine, migrate
from tests.fakes.upstream import FakeUpstream, running_upstream

MASTER_KEY = "test-master-key"
ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


class ServerThread:
    """A real uvicorn server on an ephemeral loopback port, in a background thread."""

    def __init__(self, app: Any, settings: Settings | None = None) -> None:
        options = uvicorn_options(settings)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", **options
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("gateway test server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    with running_upstream() as fake:
        yield fake


def fake_model(upstream: FakeUpstream, name: str, model: str, **params: Any) -> dict[str, Any]:
    """A model_list entry whose deployment is the loopback upstream."""
    entry: dict[str, Any] = {
        "model_name": name,
        "litellm_params": {"model": f"openai/{model}", "api_base": upstream.url, **params},
    }
    return entry


DEFAULT_MODELS: list[dict[str, Any]] = [
    {"model_name": "local/echo", "litellm_params": {"model": "local/echo"}},
    {
        "model_name": "local/all-MiniLM-L6-v2",
        "litellm_params": {"model": "local/all-MiniLM-L6-v2"},
        "model_info": {"mode": "embedding"},
    },
]


GatewayFactory = Callable[..., str]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayFactory]:
    """Builds a gateway from a config dict and serves it; returns its base URL."""
    servers: list[ServerThread] = []

    def start(config: dict[str, Any] | None = None, **settings: Any) -> str:
        config = config if config is not None else {"model_list": DEFAULT_MODELS}
        path = tmp_path / f"gateway-{len(servers)}.yaml"
        path.write_text(yaml.safe_dump(config))
        settings.setdefault("master_key", MASTER_KEY)
        settings.setdefault("data_dir", tmp_path / ".gateway")
        chosen = Settings(config=path, **settings)
        server = ServerThread(create_app(chosen), chosen)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


def sdk(base_url: str, key: str = MASTER_KEY, **kwargs: Any) -> openai.OpenAI:
    kwargs.setdefault("max_retries", 0)
    kwargs.setdefault("timeout", 30)
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, **kwargs)


def seen_within_a_second(since: float, changed: Callable[[], bool], what: str) -> None:
    """Asks until `changed()` holds. Fails when an asking begun a second or more after `since`
    still finds the old state: the time an answer takes to come back on a busy machine is
    not the replica's lag, so it does not count against it."""
    while True:
        began = time.monotonic()
        if changed():
            return
        assert began - since < 1.0, what
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _unreachable(what: str, exc: Exception) -> None:
    message = f"{what} is unreachable ({exc}); the storage tests need it"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    import uuid

    import psycopg

    name = f"gw_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        _unreachable("PostgreSQL", exc)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.OperationalError:
        pass  # a test that stopped the server restarts it; a leftover database is harmless


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database of each kind the gateway supports (the test runs on both)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'gateway.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    db = make_engine(url)
    migrate(db)
    migrate(db)  # idempotent: a second replica starting finds nothing to do
    yield db
    db.dispose()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A unique key prefix on the shared Redis, cleaned up afterwards."""
    import uuid

    import redis

    prefix = f"gwtest:{uuid.uuid4().hex[:10]}:"
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        _unreachable("Redis", exc)
    yield prefix
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
async def redis_pair(redis_prefix: str) -> AsyncIterator[tuple[Any, Any]]:
    """Two async Redis clients, standing for two replicas."""
    from redis.asyncio import Redis

    clients = [Redis.from_url(REDIS_URL, socket_connect_timeout=2) for _ in range(2)]
    yield clients[0], clients[1]
    for client in clients:
        await client.aclose()


@dataclass
class Project:
    root: Path
    upstream_model: str

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        return env | {
            "GATEWAY_CONFIG": str(self.root / "gateway.yaml"),
            "GATEWAY_PROMPTS_DIR": str(self.root / "prompts"),
            "GATEWAY_DATA_DIR": str(self.root / "data"),
            "GATEWAY_MASTER_KEY": MASTER_KEY,
            "GATEWAY_LOG_LEVEL": "warning",
        }

    def gateway(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway", *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
            env=self.env(),
        )

    def suite(self, name: str, **spec: Any) -> Path:
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec))
        return path

    def prompt(self, text: str) -> None:
        (self.root / "prompts" / "greet.prompt").write_text(text)


@pytest.fixture
def project(tmp_path: Path, upstream: FakeUpstream) -> Project:
    """A project folder (config, prompts, data) and the `gateway` command pointed at it."""
    model = f"id=project-{tmp_path.name}"
    config = {
        "model_list": [
            {"model_name": "local/echo", "litellm_params": {"model": "local/echo"}},
            fake_model(upstream, "fake", model),
        ]
    }
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "prompts").mkdir()
    return Project(tmp_path, model)


ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def gateway_process(
    data_dir: Path | None,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`gateway serve` in its own process on a free port, as an operator runs it, once
    /healthz answers; stopped with SIGTERM. None of the caller's GATEWAY_* settings leak in.
    Without a data_dir the gateway chooses its own (from the project it finds from `cwd`)."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    # This checkout's gateway, whatever folder it is started from.
    clean["PYTHONPATH"] = os.pathsep.join([str(ROOT), clean.get("PYTHONPATH", "")])
    if data_dir is not None:
        clean["GATEWAY_DATA_DIR"] = str(data_dir)
    clean |= env or {}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port), *args],
        cwd=cwd or ROOT,
        env=clean,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                output = process.stdout.read() if process.stdout else ""
                raise RuntimeError(f"gateway serve did not start:\n{output}")
            time.sleep(0.05)
        yield base, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
