"""The lean pipelined Redis client for metering scripts, against the real Redis."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.transport.resp import LuaScript, ScriptClient, _Address
from tests.conftest import REDIS_URL, free_port

ECHO = LuaScript.of("return {KEYS[1], ARGV[1], tonumber(ARGV[2]) * 2}")
INCR = LuaScript.of("return redis.call('INCRBY', KEYS[1], ARGV[1])")


@pytest.fixture
async def client() -> AsyncIterator[ScriptClient]:
    one = ScriptClient(REDIS_URL)
    yield one
    await one.aclose()


async def test_runs_a_script_loading_it_when_redis_does_not_know_it(
    client: ScriptClient, redis_pair: tuple[Redis, Redis]
) -> None:
    await redis_pair[0].script_flush()
    assert await client.run(ECHO, ["k"], ["v", 1.5]) == [b"k", b"v", 3]
    assert await client.run(ECHO, ["k2"], [b"w", 21]) == [b"k2", b"w", 42]


async def test_concurrent_commands_share_one_connection_and_get_their_own_replies(
    client: ScriptClient, redis_prefix: str, redis_pair: tuple[Redis, Redis]
) -> None:
    key = f"{redis_prefix}counter"
    before = await redis_pair[0].client_list()
    replies = await asyncio.gather(*(client.run(ECHO, [key], [i, i]) for i in range(300)))
    assert replies == [[key.encode(), str(i).encode(), 2 * i] for i in range(300)]
    await asyncio.gather(*(client.run(INCR, [key], [1]) for _ in range(300)))
    assert await redis_pair[0].get(key) == b"300"
    # One connection carried all of them.
    assert len(await redis_pair[0].client_list()) == len(before) + 1


async def test_a_script_error_is_a_response_error(client: ScriptClient) -> None:
    broken = LuaScript.of("return redis.call('NOSUCHCOMMAND')")
    with pytest.raises(ResponseError, match=r"NOSUCHCOMMAND|Unknown Redis command"):
        await client.run(broken, [], [])
    assert await client.run(ECHO, ["still"], ["fine", 1]) == [b"still", b"fine", 2]


async def test_unreachable_redis_fails_fast_with_a_connection_error() -> None:
    dead = ScriptClient(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.5)
    with pytest.raises(RedisConnectionError, match=r"cannot connect to Redis at 127\.0\.0\.1"):
        await dead.run(ECHO, ["k"], ["v", 1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers: a Redis that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


async def test_a_redis_that_stops_answering_times_out(silent_server: int) -> None:
    hung = ScriptClient(f"redis://127.0.0.1:{silent_server}", timeout=0.3)
    with pytest.raises(RedisTimeoutError, match=r"did not answer within 0.3 s"):
        await asyncio.wait_for(hung.run(ECHO, ["k"], ["v", 1]), timeout=5)
    await hung.aclose()


async def test_a_handshake_unanswered_past_the_connect_timeout_says_how_long_it_waited(
    silent_server: int,
) -> None:
    # The command timeout is longer: the connect timeout is the one that ends this wait.
    hung = ScriptClient(f"redis://127.0.0.1:{silent_server}", connect_timeout=0.2, timeout=5)
    with pytest.raises(RedisConnectionError, match=r"no answer within 0\.2 s$"):
        await asyncio.wait_for(hung.connect(), timeout=5)
    await hung.aclose()


async def test_connect_opens_the_connection_the_commands_then_use(
    client: ScriptClient, redis_pair: tuple[Redis, Redis]
) -> None:
    before = len(await redis_pair[1].client_list())
    await client.connect()
    assert len(await redis_pair[1].client_list()) == before + 1
    await client.connect()  # already open: nothing more
    assert await client.run(ECHO, ["k"], ["v", 1]) == [b"k", b"v", 2]
    assert len(await redis_pair[1].client_list()) == before + 1


async def test_a_connection_killed_while_idle_is_replaced_on_the_next_call(
    client: ScriptClient, redis_pair: tuple[Redis, Redis]
) -> None:
    before = {c["id"] for c in await redis_pair[1].client_list()}
    await client.run(ECHO, ["k"], ["v", 1])
    (ours,) = [c["id"] for c in await redis_pair[1].client_list() if c["id"] not in before]
    # Only this client's connection: other users of this Redis must not notice the test.
    await redis_pair[1].execute_command("CLIENT", "KILL", "ID", ours)
    await asyncio.sleep(0.05)
    assert await client.run(ECHO, ["k"], ["again", 2]) == [b"k", b"again", 4]


@pytest.fixture
async def hanging_up_server() -> AsyncIterator[int]:
    """Reads a command, then closes the connection without answering."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def test_commands_in_flight_fail_when_the_connection_drops(hanging_up_server: int) -> None:
    dropped = ScriptClient(f"redis://127.0.0.1:{hanging_up_server}")
    calls = [dropped.run(ECHO, ["k"], ["v", i]) for i in range(3)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, RedisConnectionError) for r in results), results
    assert "connection to Redis lost" in str(results[0])
    await dropped.aclose()


async def test_selects_the_database_of_the_url(
    redis_prefix: str, redis_pair: tuple[Redis, Redis]
) -> None:
    one = ScriptClient("redis://127.0.0.1:6379/3")
    key = f"{redis_prefix}in-db-3"
    try:
        await one.run(INCR, [key], [5])
    finally:
        await one.aclose()
    db3 = Redis.from_url("redis://127.0.0.1:6379/3")
    try:
        assert await db3.get(key) == b"5"
        await db3.delete(key)
    finally:
        await db3.aclose()
    assert await redis_pair[0].get(key) is None


async def test_a_refused_password_names_the_command() -> None:
    wrong = ScriptClient("redis://:not-the-password@127.0.0.1:6379/0")
    with pytest.raises(ResponseError, match="Redis refused AUTH"):
        await wrong.run(ECHO, ["k"], ["v", 1])


@pytest.mark.parametrize(
    ("url", "shown", "db", "tls"),
    [
        ("redis://127.0.0.1:6380/2", "127.0.0.1:6380", 2, False),
        ("rediss://user:p%40ss@cache.internal", "cache.internal:6379", 0, True),
        ("unix:///run/redis.sock?db=4", "/run/redis.sock", 4, False),
    ],
)
def test_urls(url: str, shown: str, db: int, tls: bool) -> None:
    address = _Address.parse(url)
    assert (str(address), address.db, address.tls) == (shown, db, tls)


def test_a_url_of_another_kind_is_refused_clearly() -> None:
    with pytest.raises(
        ValueError, match=r"must start with redis://, rediss://, unix://, redis\+sentinel://"
    ):
        _Address.parse("http://127.0.0.1:6379")
