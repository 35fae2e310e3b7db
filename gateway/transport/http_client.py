"""A lean pooled HTTP/1.1 client for the OpenAI-compatible fast path.

aiohttp's ClientSession.post cost about a fifth of the gateway's CPU per request (timeout
objects, timers, attrs classes, connector bookkeeping). The fast path needs much less: POST a
bytes body over a keep-alive connection and read the answer whole or as it arrives. httptools'
C parser does the framing (Content-Length, chunked, close-delimited); the rest is callbacks.

Timeouts are loop-time deadlines armed only while actually waiting for bytes, so an answer that
arrives in one packet costs one future and one timer handle.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Mapping
from typing import NamedTuple, cast
from urllib.parse import urlsplit

import httptools

KEEPALIVE_SECONDS = 60.0  # an idle connection older than this may be gone at the server
_HIGH_WATER = 1 << 20  # bytes of unread body before we stop reading from the socket

_Key = tuple[str, int, bool]  # host, port, TLS


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


class _Target(NamedTuple):
    key: _Key
    request_line: str
    host_line: str


def _parse_url(url: str) -> _Target:
    parts = urlsplit(url)
    try:
        tls = {"https": True, "http": False}[parts.scheme]
        port = parts.port or (443 if tls else 80)
    except (KeyError, ValueError):
        raise InvalidURL(f"not an http(s) URL: {url}") from None
    if not parts.hostname:
        raise InvalidURL(f"no host in URL: {url}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    netloc = parts.netloc.rpartition("@")[2]
    return _Target(
        (parts.hostname, port, tls), f"POST {target} HTTP/1.1\r\n", f"host: {netloc}\r\n"
    )


class _Connection(asyncio.Protocol):
    """One keep-alive connection and the state of the exchange in flight on it, if any."""

    def __init__(self, client: HTTPClient, key: _Key) -> None:
        self.client, self.key = client, key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = self.reused = self.paused = False
        self.idle_since = 0.0
        self.reset()

    def reset(self) -> None:
        if self.paused and self.transport is not None:
            self.transport.resume_reading()  # else a body left unread would deafen the next
        self.busy = self.received = self.headers_done = self.complete = False
        self.keep_alive = self.eof_body = self.paused = False
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
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


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


class HTTPClient:
    """Keep-alive connections per (host, port, TLS), owned by one provider; build it inside
    the running loop. Pool size is unlimited, like the aiohttp connector it replaces."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.connections: set[_Connection] = set()  # every open one, busy or idle
        self._idle: dict[_Key, deque[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._tls = tls  # None: the system's CAs, loaded on the first https connection
        self._closed = False

    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        total: float,
        idle: float | None = None,
    ) -> Response:
        """POST and wait for the response head. `total` seconds bound connect, send and every
        wait until the Response's deadline is lifted; `idle` seconds bound each wait for bytes.

        `headers` names are lower-case; host defaults to the URL's, content-length and
        accept-encoding (identity: we never decompress) are always ours."""
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = _parse_url(url)
        deadline = self.loop.time() + total
        request = _render(target, headers, body)
        conn = self._acquire(target.key)
        while True:
            if conn is None:
                conn = await self._connect(target.key, deadline)
            assert conn.transport is not None
            conn.busy = True
            conn.transport.write(request)
            response = Response(conn, deadline, idle)
            try:
                while not conn.headers_done:
                    if conn.error is not None:
                        raise conn.error
                    await conn.wait(response.when(conn))
                encoding = conn.headers.get("content-encoding", "identity")
                if encoding != "identity":
                    raise MalformedResponse(f"unrequested content-encoding {encoding!r}")
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
            if now - conn.idle_since > KEEPALIVE_SECONDS:
                conn.close(graceful=True)
                continue
            conn.reused = True
            return conn
        return None

    async def _connect(self, key: _Key, deadline: float) -> _Connection:
        host, port, tls = key
        if tls and self._tls is None:
            self._tls = ssl.create_default_context()
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await self.loop.create_connection(
                    lambda: _Connection(self, key),
                    host,
                    port,
                    ssl=self._tls if tls else None,
                    server_hostname=host if tls else None,
                )
        except TimeoutError:
            raise  # an OSError too, but it means "too slow", not "cannot connect"
        except OSError as exc:
            raise ConnectFailed(exc) from None
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
        if oldest.closed or now - oldest.idle_since > KEEPALIVE_SECONDS:
            idle.popleft().close(graceful=True)

    async def aclose(self) -> None:
        self._closed = True
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
