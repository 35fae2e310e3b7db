"""Running the app: uvicorn (httptools + uvloop), with one change to how responses are written.

uvicorn writes a response's head and its body with two `transport.write` calls. On a socket,
each write is a syscall that also runs the peer's receive path, and under load those two
writes were the largest single item in the gateway's profile. The protocol here hands
uvicorn a transport that holds writes until the current event-loop iteration ends and then
sends them as one: the head and body of a response leave in one syscall, and nothing waits
longer than the iteration that produced it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.core.errors import GatewayError
from gateway.core.settings import Settings

log = logging.getLogger("gateway.server")


class CoalescingTransport:
    """A transport proxy that joins the writes of one loop iteration into one write."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        # A caller may reuse a mutable buffer after write() returns; keep our own copy.
        self._pending.append(data if type(data) is bytes else bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if self._transport.is_closing():
            return
        self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:
        # Everything else (reading control, extra info, buffer limits) is the real transport's.
        return getattr(self._transport, name)


@dataclass
class ConnectionLimits:
    """What a connection may hold: a complete request head within `header_timeout` seconds
    of opening or of its previous response, and one of `max_connections` per worker."""

    header_timeout: float = 5.0
    max_connections: int = 4096
    refused_warned_at: float = -60.0  # one warning a minute while connections are refused


def _canned(status: str, error: GatewayError, *headers: bytes) -> bytes:
    body = error.json_bytes()
    head = [f"HTTP/1.1 {status}".encode(), b"content-type: application/json"]
    head += [*headers, b"content-length: %d" % len(body), b"connection: close", b"", b""]
    return b"\r\n".join(head) + body


class TooManyConnections(GatewayError):
    status = 503
    type = "server_error"
    code = "too_many_connections"


class HeadTimedOut(GatewayError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


REFUSED = _canned(
    "503 Service Unavailable",
    TooManyConnections(
        "The gateway is serving as many connections as it allows (GATEWAY_MAX_CONNECTIONS); "
        "retry shortly."
    ),
    b"retry-after: 1",
)
HEAD_TIMED_OUT = _canned(
    "408 Request Timeout",
    HeadTimedOut(
        "The request head did not arrive in time (GATEWAY_HEADER_TIMEOUT); send it whole."
    ),
)


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a CoalescingTransport, closing
    connections that do not send a request head in time and refusing those over the cap.

    uvicorn arms no timer until a first response has been sent, and its keep-alive timer is
    cancelled by the first byte that arrives, so idle connections, and clients sending a head
    a byte at a time, were held forever. Here a timer runs from the connection's opening and
    from each keep-alive idle start until a head is complete. The idle-start timer is
    uvicorn's own keep-alive timer, taken over so that arriving bytes no longer cancel it
    (uvicorn_options sets its delay to the header timeout): no extra timer per request.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        limits: ConnectionLimits | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits or ConnectionLimits()
        self.head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
        if len(self.connections) > self.limits.max_connections:
            self._refuse()
            return
        self.head_timer = self.loop.call_later(
            self.limits.header_timeout, self.timeout_keep_alive_handler
        )

    def _refuse(self) -> None:
        # At once, without reading: waiting for this client's head would spend the very
        # descriptors the cap protects. Connections already served are not touched.
        self.transport.write(REFUSED)
        self.transport.close()
        now = self.loop.time()
        if now - self.limits.refused_warned_at >= 60:
            self.limits.refused_warned_at = now
            self.logger.warning(
                "refusing new connections: %d open, GATEWAY_MAX_CONNECTIONS is %d",
                len(self.connections) - 1,
                self.limits.max_connections,
            )

    def on_headers_complete(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # idle now: the next head's clock starts
            self.head_timer = self.timeout_keep_alive_task
            self.timeout_keep_alive_task = None

    def timeout_keep_alive_handler(self) -> None:
        self.head_timer = None
        if self.transport.is_closing():
            return
        if self.scope is not None and "method" not in self.scope:
            self.transport.write(HEAD_TIMED_OUT)  # part of a head came: say why it ends
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        super().connection_lost(exc)


# Descriptors kept for everything but client connections: the database pool, log files,
# the spool, listening sockets, upstream pools.
RESERVED_FILES = 256


def fit_open_files(max_connections: int) -> int:
    """The connection cap this process can honour. A proxied call holds two descriptors (the
    client's connection and an upstream one), so the soft RLIMIT_NOFILE is raised toward
    the hard limit to fit `2 * max_connections` plus a reserve; if it cannot be, the cap is
    lowered to what fits, loudly. Workers inherit the limit."""
    import resource

    needed = 2 * max_connections + RESERVED_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    if soft != unlimited and soft < needed:
        target = needed if hard == unlimited else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == unlimited or soft >= needed:
        return max_connections
    fitted = max(1, (soft - RESERVED_FILES) // 2)
    log.warning(
        "the open-file limit (ulimit -n %d, hard %s) fits %d connections per worker, not "
        "GATEWAY_MAX_CONNECTIONS=%d; serving at most %d (raise the limit to serve more)",
        soft,
        hard,
        fitted,
        max_connections,
        fitted,
    )
    return fitted


def configure_logging(level: str) -> None:
    """The gateway's own log lines (warnings, the access log) on stderr at `level`. Called
    by `gateway serve` and again in each worker process, which starts with no handler (its
    INFO lines were lost); a no-op where logging is already set up (tests, embedders)."""
    logging.basicConfig(level=level.upper(), format="%(levelname)s %(name)s: %(message)s")


def uvicorn_options(settings: Settings | None = None) -> dict[str, Any]:
    """How the gateway runs under uvicorn; tests start their servers with the same options."""
    settings = settings or Settings()
    limits = ConnectionLimits(settings.header_timeout, settings.max_connections)
    return {
        "loop": "uvloop",
        "http": functools.partial(GatewayHttpProtocol, limits=limits),
        "ws": "none",
        "access_log": False,
        "server_header": False,
        "date_header": False,
        # X-Forwarded-* rewriting costs ~3% of a proxied call; the gateway does not use it.
        "proxy_headers": False,
        # The delay of the timer a connection's next head must beat (GatewayHttpProtocol).
        "timeout_keep_alive": settings.header_timeout,
    }


def run_uvicorn(settings: Settings) -> None:
    import uvicorn

    max_connections = fit_open_files(settings.max_connections)
    uvicorn.run(
        "gateway.api.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        **uvicorn_options(settings.model_copy(update={"max_connections": max_connections})),
    )


def run_granian(settings: Settings) -> None:
    """granian, to compare servers (a dev dependency), not to serve production traffic.
    Measured with granian 2.8.9: its header_read_timeout cuts a head sent slowly, but
    connections that send nothing stay open, and it has no connection cap (its backpressure
    option makes new clients wait behind idle connections instead of refusing them)."""
    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.http import HTTP1Settings

    log.warning(
        "granian is for comparison only: it keeps connections that send nothing open and "
        "ignores GATEWAY_MAX_CONNECTIONS; serve with uvicorn (the default) in production"
    )
    Granian(
        "gateway.api.app:app_from_env",
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        factory=True,
        loop=Loops.uvloop,
        log_access=False,
        http1_settings=HTTP1Settings(header_read_timeout=round(settings.header_timeout * 1000)),
    ).serve()
