"""A lean pooled HTTP/1.1 client for the OpenAI-compatible fast path.

aiohttp's ClientSession.post cost about a fifth of the gateway's CPU per request (timeout
objects, timers, attrs classes, connector bookkeeping). The fast path needs much less: POST a
bytes body over a keep-alive connection and read the answer whole or as it arrives. httptools'
C parser does the framing (Content-Length, chunked, close-delimited); the rest is callbacks.

Timeouts are loop-time deadlines armed only while actually waiting for bytes, so an answer that
arrives in one packet costs one future and one timer handle.

What a deployment may need beyond that, none of it on the common path's cost:
- forward proxies from `HTTP_PROXY` / `HTTPS_PROXY` / `ALL_PROXY` / `NO_PROXY` as httpx reads
  them (proxies.py): https upstreams through a CONNECT tunnel, http ones in absolute form;
- TLS verified by default, with a deployment's CA bundle or client certificate (tls.py), SNI;
- at most `max_per_host` connections per upstream (callers past it wait for one, within their
  deadline); idle connections closed after `keepalive` seconds by one timer per client, and
  one a server closed while idle is never reused (its end was seen) or, if the close crossed
  our request, the request is sent again once on a new connection (the server never read it);
- 1xx interim answers (100 Continue, 103 Early Hints) skipped; gzip, deflate and br bodies
  decoded though we ask for identity (a proxy or server may compress anyway);
- redirects are not followed: the caller gets the 3xx (the provider turns it into a 502 that
  names the redirect), as a POST replayed elsewhere could run twice.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, cast
from urllib.parse import urlsplit

import httptools

from gateway.transport.proxies import Proxies, Proxy
from gateway.transport.tls import DEFAULT_TLS, TLSOptions, TLSSetupError, create_context

KEEPALIVE_SECONDS = 60.0  # an idle connection older than this may be gone at the server
_HIGH_WATER = 1 << 20  # bytes of unread body before we stop reading from the socket
_MAX_CONNECT_ANSWER = 16 * 1024  # a proxy's answer to CONNECT longer than this is not one


class _Key(NamedTuple):
    """One pool: an upstream, how its TLS is set up (None: plain HTTP), the proxy on the way."""

    host: str
    port: int
    tls: TLSOptions | None
    proxy: Proxy | None


class HTTPClientError(Exception):
    """Base of what this client raises, apart from TimeoutError."""


class InvalidURL(HTTPClientError):
    """Not an http(s) URL with a host."""


class ConnectFailed(HTTPClientError):
    def __init__(self, os_error: OSError) -> None:
        super().__init__(str(os_error))
        self.os_error = os_error


class ServerDisconnected(HTTPClientError):
    """The connection ended before a complete response head."""


class BodyIncomplete(HTTPClientError):
    """The connection ended in the middle of the response body."""


class MalformedResponse(HTTPClientError):
    """Bytes that are not an HTTP/1.1 response we can read."""


class ResponseTooLarge(HTTPClientError):
    """The body went past the limit its reader set."""


class ProxyError(HTTPClientError):
    """The forward proxy refused to open a tunnel, or is one this client cannot use."""


class TLSSettingsError(HTTPClientError):
    """A deployment's CA bundle or client certificate cannot be loaded."""


class _Target(NamedTuple):
    key: _Key
    request_line: str  # with the proxy's credentials after it, for an absolute-form request
    host_line: str


def _parse_url(url: str, tls: TLSOptions, proxies: Proxies | None) -> _Target:
    parts = urlsplit(url)
    try:
        secure = {"https": True, "http": False}[parts.scheme]
        port = parts.port or (443 if secure else 80)
    except (KeyError, ValueError):
        raise InvalidURL(f"not an http(s) URL: {url}") from None
    if not parts.hostname:
        raise InvalidURL(f"no host in URL: {url}")
    try:
        proxy = None if proxies is None else proxies.for_url(parts.scheme, parts.hostname, port)
    except ValueError as exc:
        raise ProxyError(str(exc)) from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    netloc = parts.netloc.rpartition("@")[2]
    request_line = f"POST {target} HTTP/1.1\r\n"
    if proxy is not None and not secure:
        # Plain HTTP through a proxy: the absolute form names the upstream to the proxy.
        request_line = f"POST http://{netloc}{target} HTTP/1.1\r\n"
        if proxy.authorization:
            request_line += f"proxy-authorization: {proxy.authorization}\r\n"
    key = _Key(parts.hostname, port, tls if secure else None, proxy)
    return _Target(key, request_line, f"host: {netloc}\r\n")


def _connect_request(key: _Key) -> bytes:
    assert key.proxy is not None
    host = f"[{key.host}]" if ":" in key.host else key.host
    # What httpx (httpcore) sends, so a proxy sees the same request from either client.
    lines = [
        f"CONNECT {host}:{key.port} HTTP/1.1\r\n",
        f"host: {host}:{key.port}\r\n",
        "accept: */*\r\n",
    ]
    if key.proxy.authorization:
        lines.append(f"proxy-authorization: {key.proxy.authorization}\r\n")
    return ("".join(lines) + "\r\n").encode()


class _Tunnel(asyncio.Protocol):
    """Reads a proxy's answer to CONNECT; the TLS connection then starts on its transport."""

    def __init__(self) -> None:
        self.answered: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head, found, _ = self.buffer.partition(b"\r\n\r\n")
        if not self.answered.done() and (found or len(self.buffer) > _MAX_CONNECT_ANSWER):
            self.answered.set_result(head)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            self.answered.set_exception(
                ProxyError(f"the proxy closed the connection before answering CONNECT: {exc}")
            )


class _Slot:
    """One of a pool's `max_per_host` places, given back exactly once."""

    __slots__ = ("client", "key", "taken")

    def __init__(self, client: HTTPClient, key: _Key) -> None:
        self.client, self.key, self.taken = client, key, True
        client.open[key] = client.open.get(key, 0) + 1

    def release(self) -> None:
        if self.taken:
            self.taken = False
            self.client.open[self.key] -= 1
            self.client.wake_waiter(self.key)


class _Connection(asyncio.Protocol):
    """One keep-alive connection and the state of the exchange in flight on it, if any."""

    def __init__(self, client: HTTPClient, key: _Key, slot: _Slot) -> None:
        self.client, self.key, self.slot = client, key, slot
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = self.reused = self.paused = False
        self.idle_since = 0.0
        self.reset()

    def reset(self) -> None:
        if self.paused and self.transport is not None:
            self.transport.resume_reading()  # else a body left unread would deafen the next
        self.busy = self.received = self.headers_done = self.complete = False
        self.keep_alive = self.eof_body = self.paused = self.interim = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.error: HTTPClientError | None = None
        self.waiter: asyncio.Future[None] | None = None

    async def wait(self, when: float | None) -> None:
        """Until the parser or the socket has news; TimeoutError at loop time `when`."""
        loop = self.client.loop
        waiter = self.waiter = loop.create_future()
        timer = None if when is None else loop.call_at(when, _expire, waiter)
        try:
            await waiter
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def close(self, graceful: bool = False) -> None:
        self.closed = True
        if self.transport is not None:
            if graceful:
                self.transport.close()
            else:
                self.transport.abort()

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.client.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if not self.busy or self.complete:
            self.close()  # bytes nobody asked for: the framing can no longer be trusted
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self.error = MalformedResponse(f"malformed HTTP response: {exc}")
            self.close()
        self.wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.client.connections.discard(self)
        self.slot.release()
        if not self.busy or self.complete or self.error is not None:
            return
        if self.headers_done and self.eof_body:
            self.complete = True  # a close-delimited body ends with the connection
        elif self.headers_done:
            self.error = BodyIncomplete("connection closed in the middle of the body")
        else:
            reason = f": {exc}" if exc else ""
            self.error = ServerDisconnected(f"connection closed before the response{reason}")
        self.wake()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        seen = self.headers.get(key)
        self.headers[key] = text if seen is None else f"{seen}, {text}"

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.status < 200:
            # 100 Continue, 103 Early Hints: an interim answer; the real one follows on the
            # same connection (101 never comes: we ask for no upgrade, httptools refuses it).
            self.interim = True
            self.headers.clear()
            return
        self.headers_done = True
        headers = self.headers
        self.eof_body = "content-length" not in headers and "chunked" not in headers.get(
            "transfer-encoding", ""
        )

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


_Decode = Callable[[bytes], bytes]


def _decoder(encoding: str) -> _Decode:
    """Decodes a body sent with this content-encoding, piece by piece as it arrives."""
    steps: list[_Decode] = []
    for name in reversed([part.strip().lower() for part in encoding.split(",")]):
        if name in ("gzip", "x-gzip"):
            steps.append(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress)
        elif name == "deflate":
            steps.append(_Deflate().decode)
        elif name == "br":
            steps.append(_brotli())
        elif name != "identity":
            raise MalformedResponse(f"unsupported content-encoding {encoding!r}")
    if len(steps) == 1:
        return steps[0]

    def chain(data: bytes) -> bytes:
        for step in steps:
            data = step(data)
        return data

    return chain


class _Deflate:
    """`deflate` is meant to be zlib-wrapped, but some servers send the raw stream (as httpx
    and browsers, try the one and fall back to the other)."""

    def __init__(self) -> None:
        self.first = True
        self.stream = zlib.decompressobj()

    def decode(self, data: bytes) -> bytes:
        if self.first:
            self.first = False
            try:
                return self.stream.decompress(data)
            except zlib.error:
                self.stream = zlib.decompressobj(-zlib.MAX_WBITS)
        return self.stream.decompress(data)


def _brotli() -> _Decode:
    try:
        import brotli
    except ImportError:  # pragma: no cover - brotli is a locked dependency
        raise MalformedResponse("a br-encoded answer, and the brotli module is missing") from None
    return cast(_Decode, brotli.Decompressor().process)


class Response:
    """An answer whose head has arrived. Read it with read() or chunk() until b"".

    Both leave the connection back in the pool (body complete) or closed (anything else);
    close() does the same for a body left unread, and is always safe to call again.
    `deadline` (loop time) and `idle` (seconds per wait) bound every wait for more body.
    """

    __slots__ = ("_conn", "deadline", "headers", "idle", "status")

    def __init__(self, conn: _Connection, deadline: float | None, idle: float | None) -> None:
        self._conn: _Connection | None = conn
        self.deadline, self.idle = deadline, idle
        self.status = 0
        self.headers: Mapping[str, str] = conn.headers  # names lower-cased

    def when(self, conn: _Connection) -> float | None:
        if self.idle is None:
            return self.deadline
        when = conn.client.loop.time() + self.idle
        return when if self.deadline is None else min(when, self.deadline)

    async def chunk(self) -> bytes:
        """The body received since the last call (waiting if none); b"" once it is complete."""
        conn = self._conn
        if conn is None:
            return b""
        try:
            while not conn.chunks:
                if conn.complete:
                    self.close()
                    return b""
                if conn.error is not None:
                    raise conn.error
                await conn.wait(self.when(conn))
        except BaseException:
            self._conn = None
            conn.close()
            raise
        chunks = conn.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        conn.buffered = 0
        if conn.paused and conn.transport is not None:
            conn.paused = False
            conn.transport.resume_reading()
        if conn.complete:
            self.close()  # back to the pool now, not when the caller gets round to it
        return data

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body; past `limit` bytes the connection is closed and ResponseTooLarge
        raised, so an answer that never ends cannot fill the memory."""
        parts = []
        size = 0
        while data := await self.chunk():
            size += len(data)
            if limit is not None and size > limit:
                self.close()
                raise ResponseTooLarge(f"response body over {limit} bytes")
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if conn.complete:
                conn.client.release(conn)
            else:
                conn.close()  # a half-read connection is never reused


class _DecodedResponse(Response):
    """An answer with a gzip, deflate or br body: chunk() gives it decoded (its own class, so
    the common, unencoded answer pays nothing for it)."""

    __slots__ = ("_decode",)

    def __init__(self, plain: Response, decode: _Decode) -> None:
        assert plain._conn is not None
        super().__init__(plain._conn, plain.deadline, plain.idle)
        self._decode = decode

    async def chunk(self) -> bytes:
        while data := await super().chunk():
            try:
                decoded = self._decode(data)
            except Exception as exc:  # zlib.error, brotli.error: the encoding's own errors
                self.close()
                raise MalformedResponse(f"cannot decode the body: {exc}") from None
            if decoded:
                return decoded  # else a piece too short to decode anything yet
        return b""


class HTTPClient:
    """Keep-alive connections per upstream (host, port, TLS settings, proxy), owned by one
    provider; build it inside the running loop. `tls` replaces the default TLS context (the
    one for deployments with no TLS settings of their own); `max_per_host` bounds each pool
    (None: unbounded, like the aiohttp connector this replaced); `keepalive` is how long an
    idle connection is kept; `proxies` defaults to the environment's."""

    def __init__(
        self,
        tls: ssl.SSLContext | None = None,
        *,
        max_per_host: int | None = None,
        keepalive: float = KEEPALIVE_SECONDS,
        proxies: Proxies | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.connections: set[_Connection] = set()  # every open one, busy or idle
        self.open: dict[_Key, int] = {}  # connections per pool, connecting ones included
        self.max_per_host, self.keepalive = max_per_host, keepalive
        self._idle: dict[_Key, deque[_Connection]] = {}
        self._waiters: dict[_Key, deque[asyncio.Future[None]]] = {}
        self._targets: dict[Any, _Target] = {}
        self._proxies = Proxies.from_environment() if proxies is None else proxies
        # Made on the first https connection that needs one (the CA files are read then).
        self._contexts: dict[TLSOptions, ssl.SSLContext] = {}
        if tls is not None:
            self._contexts[DEFAULT_TLS] = tls
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        total: float,
        idle: float | None = None,
        tls: TLSOptions | None = None,
    ) -> Response:
        """POST and wait for the response head. `total` seconds bound connect, send and every
        wait until the Response's deadline is lifted; `idle` seconds bound each wait for bytes.
        `tls`: the deployment's TLS settings, when it has its own.

        `headers` names are lower-case; host defaults to the URL's, content-length and
        accept-encoding (identity: we decode a compressed answer, but never ask for one) are
        always ours."""
        target = self._targets.get(url if tls is None else (url, tls))
        if target is None:
            target = _parse_url(url, tls or DEFAULT_TLS, self._proxies)
            self._targets[url if tls is None else (url, tls)] = target
        deadline = self.loop.time() + total
        request = _render(target, headers, body)
        conn = self._acquire(target.key)
        while True:
            if conn is None:
                conn = await self._connection(target.key, deadline)
            assert conn.transport is not None
            conn.busy = True
            conn.transport.write(request)
            response = Response(conn, deadline, idle)
            try:
                while not conn.headers_done:
                    if conn.error is not None:
                        raise conn.error
                    await conn.wait(response.when(conn))
                encoding = conn.headers.get("content-encoding")
                if encoding is not None and encoding != "identity":
                    response = _DecodedResponse(response, _decoder(encoding))
            except ServerDisconnected:
                conn.close()
                # The server closed a kept-alive connection while our request was on its way:
                # it never saw the request, so sending it again is safe. A fresh connection
                # is never `reused`, so this happens at most once.
                if conn.reused and not conn.received:
                    conn = None
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            response.status = conn.status
            return response

    def _acquire(self, key: _Key) -> _Connection | None:
        idle = self._idle.get(key)
        now = self.loop.time()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be closed
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                continue
            if now - conn.idle_since > self.keepalive:
                conn.close(graceful=True)
                continue
            conn.reused = True
            return conn
        return None

    async def _connection(self, key: _Key, deadline: float) -> _Connection:
        """A new connection, or with a full pool the first one another call gives back."""
        limit = self.max_per_host
        while limit is not None and self.open.get(key, 0) >= limit:
            waiter = self.loop.create_future()
            waiters = self._waiters.setdefault(key, deque())
            waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self.wake_waiter(key)  # the turn it was given goes to the next in line
                elif waiter in waiters:
                    waiters.remove(waiter)
                raise
            conn = self._acquire(key)
            if conn is not None:
                return conn
        return await self._connect(key, deadline)

    def wake_waiter(self, key: _Key) -> None:
        waiters = self._waiters.get(key)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _context(self, options: TLSOptions) -> ssl.SSLContext:
        context = self._contexts.get(options)
        if context is None:
            try:
                context = self._contexts[options] = create_context(options)
            except TLSSetupError as exc:
                raise TLSSettingsError(str(exc)) from None
        return context

    async def _connect(self, key: _Key, deadline: float) -> _Connection:
        context = None if key.tls is None else self._context(key.tls)
        slot = _Slot(self, key)
        try:
            async with asyncio.timeout_at(deadline):
                if key.proxy is None:
                    _, conn = await self.loop.create_connection(
                        lambda: _Connection(self, key, slot),
                        key.host,
                        key.port,
                        ssl=context,
                        server_hostname=key.host if context else None,
                    )
                elif context is None:  # plain HTTP: requests go to the proxy in absolute form
                    _, conn = await self.loop.create_connection(
                        lambda: _Connection(self, key, slot), key.proxy.host, key.proxy.port
                    )
                else:
                    conn = await self._tunnel(key, context, slot)
        except BaseException as exc:
            slot.release()
            if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
                # TimeoutError is an OSError too, but it means "too slow", not "cannot connect"
                raise ConnectFailed(exc) from None
            raise
        return conn

    async def _tunnel(self, key: _Key, context: ssl.SSLContext, slot: _Slot) -> _Connection:
        """TLS to the upstream inside a CONNECT tunnel through the proxy (SNI: the upstream's
        name, which the certificate is checked against)."""
        assert key.proxy is not None
        raw, tunnel = await self.loop.create_connection(_Tunnel, key.proxy.host, key.proxy.port)
        try:
            raw.write(_connect_request(key))
            head = await tunnel.answered
            status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                raise ProxyError(f"the proxy answered CONNECT with {status_line[:100]!r}")
            if not 200 <= int(parts[1]) < 300:
                raise ProxyError(
                    f"the proxy at {key.proxy.host}:{key.proxy.port} refused CONNECT to "
                    f"{key.host}:{key.port}: {status_line[:200]}"
                )
            conn = _Connection(self, key, slot)
            transport = await self.loop.start_tls(raw, conn, context, server_hostname=key.host)
        except BaseException:
            raw.abort()
            raise
        if transport is None:  # the loop's signature allows it; a closed tunnel
            raise ProxyError("the tunnel closed during the TLS handshake")
        conn.connection_made(transport)
        return conn

    def release(self, conn: _Connection) -> None:
        if conn.closed or not conn.keep_alive or self._closed:
            conn.close(graceful=True)
            return
        conn.reset()
        conn.idle_since = now = self.loop.time()
        idle = self._idle.setdefault(conn.key, deque())
        idle.append(conn)
        # After a burst the oldest connections are the unused ones: retire one per release.
        oldest = idle[0]
        if oldest.closed or now - oldest.idle_since > self.keepalive:
            idle.popleft().close(graceful=True)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self.keepalive, self._sweep)
        if self._waiters:
            self.wake_waiter(conn.key)

    def _sweep(self) -> None:
        """Closes the connections idle for `keepalive` seconds: a quiet upstream's sockets
        are not held for ever, and a server's own idle timeout rarely gets to close them."""
        self._sweeper = None
        now, soonest = self.loop.time(), None
        for idle in self._idle.values():
            while idle and (idle[0].closed or now - idle[0].idle_since >= self.keepalive):
                idle.popleft().close(graceful=True)
            if idle:
                due = idle[0].idle_since + self.keepalive
                soonest = due if soonest is None else min(soonest, due)
        if soonest is not None and not self._closed:
            self._sweeper = self.loop.call_at(soonest, self._sweep)

    async def aclose(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._idle.clear()
        for conn in list(self.connections):
            conn.close()
        await asyncio.sleep(0)  # let connection_lost run, so no transport is left unclosed


def _render(target: _Target, headers: Mapping[str, str], body: bytes) -> bytes:
    lines = [target.request_line]
    if "host" not in headers:
        lines.append(target.host_line)
    for name, value in headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise ValueError(f"newline in the value of HTTP header {name!r}")
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"content-length: {len(body)}\r\naccept-encoding: identity\r\n\r\n")
    return "".join(lines).encode() + body
