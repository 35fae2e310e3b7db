"""A lean Redis client for the Lua scripts on the request path.

redis-py spends ~0.2 ms of CPU per command in its retry wrapper, connection-pool checkout,
`wait_for` timers and command packing: at one command per request that was a quarter of the
gateway's CPU. Metering needs one thing only, EVALSHA, so this client does just that: one
connection shared by every request, commands pipelined on it (Redis answers in order), replies
parsed by hiredis, one watchdog timer per connection instead of one per command. Errors are
redis-py's exception types, so callers handle both clients alike; everything else (seeding,
reports, tests) keeps using redis-py.

Deployments it serves, from the one URL both clients read (gateway/transport/redis_urls.py):
TLS (`rediss://`, with redis-py's `ssl_ca_certs`, `ssl_ca_path`, `ssl_certfile`, `ssl_keyfile`,
`ssl_cert_reqs` and `ssl_check_hostname` query parameters), ACL users (`user:password@`), and
Sentinel (`redis+sentinel://host:port,host:port/service/db`): the master's address is asked of
the sentinels at every (re)connect, and a connection whose server answers READONLY (a master
demoted by a failover) is dropped so the next command finds the new master. Redis Cluster is
served by redis-py's cluster client instead (redis_urls.ClusterScriptClient).
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


_TLS_PARAMS = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


@dataclass(frozen=True, slots=True)
class _Address:
    host: str
    port: int
    unix_path: str | None
    tls: bool
    username: str | None
    password: str | None
    db: int
    # Sentinel: the sentinels' addresses and the name of the master they watch.
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    cluster: bool = False
    nodes: tuple[tuple[str, int], ...] = ()  # a cluster's startup nodes
    options: tuple[tuple[str, str], ...] = ()  # the TLS query parameters, as redis-py's

    @classmethod
    def parse(cls, url: str) -> _Address:
        parts = urlsplit(url)
        base, _, mode = parts.scheme.partition("+")
        if base not in ("redis", "rediss", "unix") or mode not in ("", "sentinel", "cluster"):
            raise ValueError(
                "Redis URL must start with redis://, rediss://, unix://, redis+sentinel://, "
                f"rediss+sentinel://, redis+cluster:// or rediss+cluster://: {url}"
            )
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        options = tuple((k, unquote(v)) for k, v in query.items() if k in _TLS_PARAMS)
        options += tuple((k, unquote(v)) for k, v in query.items() if k == "ssl_check_hostname")
        path = [piece for piece in parts.path.split("/") if piece]
        service = None
        if mode == "sentinel":
            if not path:
                raise ValueError(f"a Sentinel URL names its master after the hosts: {url}")
            service, path = unquote(path[0]), path[1:]
        try:
            db = int(query.get("db", "0")) if base == "unix" else int(path[0]) if path else 0
        except ValueError:
            raise ValueError(f"the database in a Redis URL is a number: {url}") from None
        netloc = parts.netloc.rpartition("@")[2]
        hosts = tuple(_host_port(piece, url) for piece in netloc.split(",") if piece)
        host, port = hosts[0] if hosts and mode != "sentinel" else ("127.0.0.1", 6379)
        return cls(
            host=host,
            port=port,
            unix_path=parts.path if base == "unix" else None,
            tls=base == "rediss",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            db=db,
            sentinels=hosts if mode == "sentinel" else (),
            service=service,
            cluster=mode == "cluster",
            nodes=hosts if mode == "cluster" else (),
            options=options,
        )

    def tls_context(self) -> ssl.SSLContext | None:
        """As redis-py makes it from the same query parameters (certificate and host name
        checked unless ssl_cert_reqs / ssl_check_hostname say otherwise)."""
        if not self.tls:
            return None
        options = dict(self.options)
        context = ssl.create_default_context(
            cafile=options.get("ssl_ca_certs"), capath=options.get("ssl_ca_path")
        )
        reqs = _CERT_REQS.get(options.get("ssl_cert_reqs", "required").lower(), ssl.CERT_REQUIRED)
        check = options.get("ssl_check_hostname", "true").lower() in ("1", "true", "yes", "y")
        context.check_hostname = check and reqs != ssl.CERT_NONE
        context.verify_mode = reqs
        if options.get("ssl_certfile"):
            context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
        return context

    def __str__(self) -> str:
        if self.sentinels:
            return f"master {self.service!r} of sentinels " + ",".join(
                f"{host}:{port}" for host, port in self.sentinels
            )
        return self.unix_path or f"{self.host}:{self.port}"


def _host_port(piece: str, url: str) -> tuple[str, int]:
    if piece.startswith("["):
        host, _, rest = piece[1:].partition("]")
        port = rest[1:]
    else:
        host, _, port = piece.partition(":")
    if port and not port.isdigit():
        raise ValueError(f"not a port number in the Redis URL: {port!r} in {url}")
    return host or "127.0.0.1", int(port) if port else 6379


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
        self._tls: ssl.SSLContext | None = None

    async def run(self, script: LuaScript, keys: list[str], args: list[Any]) -> Any:
        reply = await self._command(b"EVALSHA", script.sha, len(keys), *keys, *args)
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            # First use on this server (or after SCRIPT FLUSH): EVAL also caches it.
            reply = await self._command(b"EVAL", script.source, len(keys), *keys, *args)
        if isinstance(reply, hiredis.ReplyError):
            if str(reply).startswith("READONLY") and self._connection is not None:
                # A replica now (a failover demoted it): the next command finds the master.
                self._connection.close()
                raise ConnectionLost(f"Redis at {self._address} is a read-only replica now")
            raise refusal_of_reply(str(reply)) or ResponseError(str(reply))
        return reply

    async def connect(self) -> None:
        """Opens the connection now (at startup) rather than on the first metered call,
        which may come in a burst that leaves the handshake waiting behind it."""
        await self._connect()

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
                        host, port = address.host, address.port
                        if address.sentinels:
                            host, port = await self._master()
                        await loop.create_connection(
                            lambda: connection, host, port, ssl=self._tls_context()
                        )
                    await self._handshake(connection)
            except TimeoutError as exc:
                connection.close()
                raise RedisConnectionError(
                    f"cannot connect to Redis at {address}: no answer within "
                    f"{self._connect_timeout} s"
                ) from exc
            except OSError as exc:
                connection.close()
                raise RedisConnectionError(f"cannot connect to Redis at {address}: {exc}") from exc
            self._connection = connection
            return connection

    def _tls_context(self) -> ssl.SSLContext | None:
        if self._tls is None and self._address.tls:
            self._tls = self._address.tls_context()
        return self._tls

    async def _master(self) -> tuple[str, int]:
        """The master's address, from the first sentinel that knows it (as redis-py's
        Sentinel client asks, with the same TLS settings and no credentials)."""
        loop, problems = asyncio.get_running_loop(), []
        for host, port in self._address.sentinels:
            sentinel = _Connection(self._timeout)
            try:
                await loop.create_connection(
                    lambda sentinel=sentinel: sentinel,
                    host,
                    port,
                    ssl=self._tls_context(),
                )
                reply = await sentinel.send(
                    (b"SENTINEL", b"get-master-addr-by-name", self._address.service)
                )
            except (OSError, RedisConnectionError) as exc:
                problems.append(f"{host}:{port}: {exc}")
                continue
            finally:
                sentinel.close()
            if isinstance(reply, list) and len(reply) == 2:
                return reply[0].decode(), int(reply[1])
            problems.append(f"{host}:{port} does not know master {self._address.service!r}")
        raise OSError("no sentinel named the master (" + "; ".join(problems) + ")")

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
