"""Redis as deployments run it: TLS with client certificates, ACL users, Sentinel (with a
failover), Redis Cluster. Each test starts its own redis-server processes on free ports in a
temporary folder (never the machine's Redis), and checks both of the gateway's clients: the
lean script client metering calls use, and redis-py's, built from the same URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.core.errors import ConfigError
from gateway.transport.redis_urls import redis_clients
from gateway.transport.resp import LuaScript, ScriptClient
from tests.conftest import free_port
from tests.tls_material import Material, make_material

REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS is None, reason="needs redis-server")

INCR = LuaScript.of("return redis.call('INCRBY', KEYS[1], ARGV[1])")
PAIR = LuaScript.of(
    "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[1]); "
    "return redis.call('MGET', KEYS[1], KEYS[2])"
)


class Servers:
    """redis-server processes started by one test, stopped at its end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, port: int | None = None, name: str = "redis") -> int:
        port = port or free_port()
        folder = self.folder / f"{name}-{port}"
        folder.mkdir()
        command = [REDIS or "redis-server", *args]
        if "--sentinel" not in args:
            command += ["--port", str(port), "--save", "", "--appendonly", "no"]
        command += ["--dir", str(folder), "--logfile", str(folder / "log")]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.processes.append(process)
        listening = port if "--tls-port" not in args else int(args[args.index("--tls-port") + 1])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log = folder / "log"
                raise RuntimeError(
                    f"redis-server exited: {log.read_text() if log.exists() else ''}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", listening), 0.2),
            ):
                return port
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not listen on {listening}")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    started = Servers(tmp_path)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Material:
    return make_material(tmp_path_factory.mktemp("tls"))


async def both_work(url: str, prefix: str = "gw:") -> None:
    """The script client runs scripts, and redis-py reads what they wrote."""
    redis, scripts = redis_clients(url, prefix, connect_timeout=2, timeout=2)
    try:
        key = f"{prefix}counter"
        assert await scripts.run(INCR, [key], [2]) == 2
        assert await scripts.run(INCR, [key], [3]) == 5
        assert await redis.get(key) == b"5"
        assert await redis.ping()
    finally:
        await scripts.aclose()
        await redis.aclose()


# --- TLS --------------------------------------------------------------------------------------


def tls_server(servers: Servers, tls: Material, *extra: str) -> int:
    port = free_port()
    servers.start(
        "--tls-port", str(port),
        "--tls-cert-file", str(tls.server.cert), "--tls-key-file", str(tls.server.key),
        "--tls-ca-cert-file", str(tls.client_ca), *extra,
    )  # fmt: skip
    return port


async def test_tls_with_a_client_certificate(servers: Servers, tls: Material) -> None:
    port = tls_server(servers, tls, "--tls-auth-clients", "yes")
    query = f"ssl_ca_certs={tls.ca}&ssl_certfile={tls.client.cert}&ssl_keyfile={tls.client.key}"
    await both_work(f"rediss://localhost:{port}/0?{query}")
    # Without a client certificate the server ends the connection (with TLS 1.3, after the
    # handshake: the first command fails, naming why when the server's alert arrives before
    # its reset, which it does not always).
    lean = ScriptClient(f"rediss://localhost:{port}/0?ssl_ca_certs={tls.ca}", connect_timeout=2)
    with pytest.raises(RedisConnectionError, match=r"certificate required|reset by peer"):
        await lean.run(INCR, ["gw:x"], [1])
    await lean.aclose()


async def test_tls_verifies_the_server(servers: Servers, tls: Material) -> None:
    port = tls_server(servers, tls, "--tls-auth-clients", "no")
    await both_work(f"rediss://localhost:{port}?ssl_ca_certs={tls.ca}")
    # The system's CAs do not know this server's: refused, for both clients alike.
    for client in (ScriptClient(f"rediss://localhost:{port}", connect_timeout=2),):
        with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.run(INCR, ["gw:x"], [1])
        await client.aclose()
    # ssl_cert_reqs=none, redis-py's switch, turns the check off.
    await both_work(f"rediss://localhost:{port}?ssl_cert_reqs=none", prefix="unchecked:")


# --- ACL users --------------------------------------------------------------------------------


async def test_acl_users(servers: Servers) -> None:
    port = servers.start(
        "--user", "default", "off",
        "--user", "meter", "on", ">s3cret:pw", "~gw:*", "+@all",
        "--user", "reader", "on", ">pw", "~*", "+@read", "+ping", "+hello", "+auth",
    )  # fmt: skip
    await both_work(f"redis://meter:s3cret%3Apw@127.0.0.1:{port}/0")
    wrong = ScriptClient(f"redis://meter:nope@127.0.0.1:{port}/0")
    with pytest.raises(AuthenticationError, match="Redis refused AUTH: WRONGPASS"):
        await wrong.run(INCR, ["gw:x"], [1])
    await wrong.aclose()
    reader = ScriptClient(f"redis://reader:pw@127.0.0.1:{port}/0")
    with pytest.raises(ResponseError, match="NOPERM"):
        await reader.run(INCR, ["gw:x"], [1])
    await reader.aclose()
    # A key outside the user's patterns is refused by Redis inside the script too.
    meter = ScriptClient(f"redis://meter:s3cret%3Apw@127.0.0.1:{port}/0")
    with pytest.raises(ResponseError, match=r"No permissions to access a key|NOPERM"):
        await meter.run(INCR, ["other:x"], [1])
    await meter.aclose()


# --- Sentinel ---------------------------------------------------------------------------------


async def redis_py(port: int) -> Any:
    import redis.asyncio as aioredis

    return aioredis.Redis(host="127.0.0.1", port=port)


def start_sentinel(servers: Servers, master: int) -> int:
    port = free_port()
    conf = servers.folder / f"sentinel-{port}.conf"
    conf.write_text(
        f"port {port}\n"
        f"sentinel monitor mymaster 127.0.0.1 {master} 1\n"
        "sentinel down-after-milliseconds mymaster 1000\n"
        "sentinel failover-timeout mymaster 5000\n"
    )
    servers.start(str(conf), "--sentinel", port=port, name="sentinel")
    return port


async def test_sentinel_finds_the_master_and_follows_a_failover(servers: Servers) -> None:
    first = servers.start()
    second = servers.start("--replicaof", "127.0.0.1", str(first))
    sentinel = start_sentinel(servers, first)
    url = f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{sentinel}/mymaster/0"
    await both_work(url)  # the first sentinel listed is down: the next one answers

    lean = ScriptClient(url, connect_timeout=2, timeout=2)
    assert await lean.run(INCR, ["gw:failover"], [1]) == 1
    control = await redis_py(sentinel)
    # The sentinel must have seen the replica before it can promote it.
    deadline = time.monotonic() + 30
    while not await control.execute_command("SENTINEL", "REPLICAS", "mymaster"):
        assert time.monotonic() < deadline, "the sentinel never saw the replica"
        await asyncio.sleep(0.2)
    replica = await redis_py(second)
    while (await replica.info("replication"))["master_link_status"] != "up":
        assert time.monotonic() < deadline, "the replica never synchronised"
        await asyncio.sleep(0.2)
    await control.execute_command("SENTINEL", "FAILOVER", "mymaster")
    while (await replica.info("replication"))["role"] != "master":
        assert time.monotonic() < deadline, "no failover"
        await asyncio.sleep(0.2)
    # Until the sentinel demotes the old master it still takes writes (Redis Sentinel's own
    # window, for every client); once demoted it answers READONLY and the client moves on.
    old = await redis_py(first)
    while (await old.info("replication"))["role"] != "slave":
        assert time.monotonic() < deadline, "the old master was never demoted"
        await asyncio.sleep(0.2)
    await old.aclose()
    # Calls in flight during the switch may fail; then the client reaches the new master.
    total = None
    while total is None:
        assert time.monotonic() < deadline, "the client never reached the new master"
        try:
            total = await lean.run(INCR, ["gw:failover"], [1])
        except RedisError:
            await asyncio.sleep(0.2)
    assert total == 2  # the count replicated before the switch, and goes on there
    assert await replica.get("gw:failover") == b"2"
    await lean.aclose()
    await control.aclose()
    await replica.aclose()


def test_sentinel_url_must_name_the_master() -> None:
    with pytest.raises(ValueError, match="names its master"):
        ScriptClient("redis+sentinel://127.0.0.1:26379")


# --- Cluster ----------------------------------------------------------------------------------


def cluster_port() -> int:
    """A free port a cluster node can take: Redis also listens 10,000 above it (its bus), so
    it must be at most 55535 with that one free too; the OS's free ports are often higher."""
    for _ in range(200):
        port = random.randint(20000, 55535)
        try:
            with socket.socket() as low, socket.socket() as bus:
                low.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis cluster node")


async def test_cluster_through_redis_py_with_a_hash_tagged_prefix(servers: Servers) -> None:
    ports = [servers.start("--cluster-enabled", "yes", port=cluster_port()) for _ in range(3)]
    create = await asyncio.create_subprocess_exec(
        "redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
        "--cluster-replicas", "0", "--cluster-yes",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(create.communicate(), 60)
    assert create.returncode == 0, output.decode()
    checker = await redis_py(ports[0])
    deadline = time.monotonic() + 30
    while (await checker.execute_command("CLUSTER", "INFO")).find(b"cluster_state:ok") < 0:
        assert time.monotonic() < deadline, "the cluster never became ready"
        await asyncio.sleep(0.2)
    await checker.aclose()

    url = f"redis+cluster://127.0.0.1:{ports[1]}"
    with pytest.raises(ConfigError, match=r"hash tag, e\.g\. \{gw\}:"):
        redis_clients(url, "gw:")
    await both_work(url, prefix="{gw}:")
    redis, scripts = redis_clients(url, "{gw}:")
    try:
        # Two keys of one script, on whichever node owns the tag's slot.
        assert await scripts.run(PAIR, ["{gw}:a", "{gw}:b"], ["v"]) == [b"v", b"v"]
        owners = {await _owner(redis, key) for key in ("{gw}:a", "{gw}:b", "{gw}:counter")}
        assert len(owners) == 1
    finally:
        await redis.aclose()


async def _owner(cluster: Any, key: str) -> str:
    node = cluster.get_node_from_key(key)
    return f"{node.host}:{node.port}"
