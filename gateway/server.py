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
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a CoalescingTransport."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]


def uvicorn_options() -> dict[str, Any]:
    """How the gateway runs under uvicorn; tests start their servers with the same options."""
    return {
        "loop": "uvloop",
        "http": GatewayHttpProtocol,
        "ws": "none",
        "access_log": False,
        "server_header": False,
        "date_header": False,
        # X-Forwarded-* rewriting costs ~3% of a proxied call; the gateway does not use it.
        "proxy_headers": False,
    }


def run_uvicorn(host: str, port: int, workers: int, log_level: str) -> None:
    import uvicorn

    uvicorn.run(
        "gateway.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        **uvicorn_options(),
    )


def run_granian(host: str, port: int, workers: int) -> None:
    from granian import Granian  # optional dev dependency, for comparison
    from granian.constants import Interfaces, Loops

    Granian(
        "gateway.app:app_from_env",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        factory=True,
        loop=Loops.uvloop,
        log_access=False,
    ).serve()
