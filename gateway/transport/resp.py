"""A lean Redis client for the Lua scripts on the request path.

redis-py spends ~0.2 ms of CPU per command in its retry wrapper, connection-pool checkout,
`wait_for` timers and command packing: at one command per request that was a quarter of the
gateway's CPU. Metering needs one thing only, EVALSHA, so this client does just that: one
connection shared by every request, commands pipelined on it (Redis answers in order), replies
parsed by hiredis, one watchdog timer per connection instead of one per command. Errors are
redis-py's exception types, so callers handle both clients alike; everything else (seeding,
reports, tests) keeps using redis-py.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl
import time
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.transport.redis_refusal import refusal_of_reply


class ConnectionLost(RedisConnectionError):
    """An established connection dropped (Redis restarted, or the client was killed): the
    commands in flight fail, but the next command reconnects at once."""


@dataclass(frozen=True, slots=True)
class LuaScript:
    source: bytes
    sha: bytes

    @classmethod
    def of(cls, source: str) -> LuaScript:
        data = source.encode()
        return cls(data, hashlib.sha1(data, usedforsecurity=False).hexdigest().encode())


def _pack(args: tuple[Any, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, float):
            data = repr(arg).encode()
        else:
            data = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class _Address:
    host: str
    port: int
    unix_path: str | None
    tls: bool
    username: str | None
    password: str | None
    db: int

    @classmethod
    def parse(cls, url: str) -> _Address:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"Redis URL must start with redis://, rediss:// or unix://: {url}")
        db = 0
        if parts.scheme == "unix":
            query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
            db = int(query.get("db", "0"))
        elif parts.path.strip("/"):
            db = int(parts.path.strip("/"))
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            unix_path=parts.path if parts.scheme == "unix" else None,
            tls=parts.scheme == "rediss",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            db=db,
        )

    def __str__(self) -> str:
        return self.unix_path or f"{self.host}:{self.port}"


class _Connection(asyncio.Protocol):
    def __init__(self, timeout: float) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.pending: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.closed = False
        self._out: list[bytes] = []
        self.timeout = timeout
        self._watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            future, _ = self.pending.popleft()
            if not future.done():  # its caller may have been cancelled
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionLost(f"connection to Redis lost: {exc or 'closed by server'}"))

    def send(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((future, time.monotonic()))
        # Commands sent in one loop iteration leave in one write: one syscall per batch.
        if not self._out:
            loop.call_soon(self._write_out)
        self._out.append(_pack(args))
        if self._watchdog is None:
            self._watchdog = loop.call_later(self.timeout, self._check)
        return future

    def _write_out(self) -> None:
        out, self._out = self._out, []
        if self.transport is not None and not self.closed:
            self.transport.write(b"".join(out))

    def _check(self) -> None:
        """Closes a connection whose oldest command waited past the timeout: a Redis that
        stopped answering must fail calls fast, as an unreachable one does."""
        self._watchdog = None
        if not self.pending:
            return
        waited = time.monotonic() - self.pending[0][1]
        if waited >= self.timeout:
            self._fail(RedisTimeoutError(f"Redis did not answer within {self.timeout} s"))
            return
        self._watchdog = asyncio.get_running_loop().call_later(self.timeout - waited, self._check)

    def _fail(self, error: Exception) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self.pending:
            future, _ = self.pending.popleft()
            if not future.done():
                future.set_exception(error)

    def close(self) -> None:
        self._fail(RedisConnectionError("the Redis client was closed"))


class ScriptClient:
    def __init__(self, url: str, *, connect_timeout: float = 1.0, timeout: float = 2.0) -> None:
        self._address = _Address.parse(url)
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._connection: _Connection | None = None
        self._connecting = asyncio.Lock()

    async def run(self, script: LuaScript, keys: list[str], args: list[Any]) -> Any:
        reply = await self._command(b"EVALSHA", script.sha, len(keys), *keys, *args)
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            # First use on this server (or after SCRIPT FLUSH): EVAL also caches it.
            reply = await self._command(b"EVAL", script.source, len(keys), *keys, *args)
        if isinstance(reply, hiredis.ReplyError):
            raise refusal_of_reply(str(reply)) or ResponseError(str(reply))
        return reply

    async def _command(self, *args: Any) -> Any:
        connection = self._connection
        if connection is None or connection.closed:
            connection = await self._connect()
        return await connection.send(args)

    async def _connect(self) -> _Connection:
        async with self._connecting:
            if self._connection is not None and not self._connection.closed:
                return self._connection
            address, loop = self._address, asyncio.get_running_loop()
            connection = _Connection(self._timeout)
            try:
                async with asyncio.timeout(self._connect_timeout):
                    if address.unix_path is not None:
                        await loop.create_unix_connection(lambda: connection, address.unix_path)
                    else:
                        context = ssl.create_default_context() if address.tls else None
                        await loop.create_connection(
                            lambda: connection, address.host, address.port, ssl=context
                        )
                    await self._handshake(connection)
            except (OSError, TimeoutError) as exc:
                connection.close()
                raise RedisConnectionError(f"cannot connect to Redis at {address}: {exc}") from exc
            self._connection = connection
            return connection

    async def _handshake(self, connection: _Connection) -> None:
        address = self._address
        commands: list[tuple[Any, ...]] = []
        if address.password is not None and address.username:
            commands.append((b"AUTH", address.username, address.password))
        elif address.password is not None:
            commands.append((b"AUTH", address.password))
        else:
            # Whether Redis wants a password: it answers an unauthenticated script call not
            # with NOAUTH but with a protocol error, closing the connection.
            commands.append((b"PING",))
        if address.db:
            commands.append((b"SELECT", address.db))
        for command in commands:
            reply = await connection.send(command)
            if isinstance(reply, hiredis.ReplyError):
                connection.close()
                context = f"Redis refused {command[0].decode()}: "
                raise refusal_of_reply(str(reply), context) or ResponseError(context + str(reply))

    async def aclose(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
