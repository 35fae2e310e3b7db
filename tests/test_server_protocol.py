"""The protocol the gateway serves with: uvicorn's, writing each loop iteration's bytes once."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.api.server import CoalescingTransport
from tests.conftest import ServerThread


class RecordingTransport(asyncio.Transport):
    """Records what reaches the socket layer, so the test can count writes."""

    def __init__(self) -> None:
        super().__init__(extra={"peername": ("127.0.0.1", 4242)})
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


async def test_writes_of_one_iteration_leave_as_one() -> None:
    real = RecordingTransport()
    transport = CoalescingTransport(real, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"ok")
    assert real.writes == []  # held until the iteration ends
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert real.writes[1:] == [b"next"]


async def test_a_reused_buffer_is_copied_and_close_flushes_first() -> None:
    real = RecordingTransport()
    transport = CoalescingTransport(real, asyncio.get_running_loop())
    buffer = bytearray(b"abc")
    transport.write(buffer)
    buffer[:] = b"xyz"
    transport.close()
    assert real.writes == [b"abc"]
    assert real.closed
    await asyncio.sleep(0)  # the scheduled flush finds nothing left to send
    assert real.writes == [b"abc"]


async def test_abort_drops_pending_bytes_and_a_closed_socket_gets_nothing() -> None:
    real = RecordingTransport()
    transport = CoalescingTransport(real, asyncio.get_running_loop())
    transport.write(b"lost")
    transport.abort()
    await asyncio.sleep(0)
    assert real.writes == []
    assert real.aborted

    closed = RecordingTransport()
    closed.closed = True
    late = CoalescingTransport(closed, asyncio.get_running_loop())
    late.write(b"too late")
    await asyncio.sleep(0)
    assert closed.writes == []
    assert late.get_extra_info("peername") == ("127.0.0.1", 4242)  # the rest is delegated


BIG = b"x" * (8 * 2**20)  # far beyond the socket buffers: the writes must respect flow control


async def sample_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["path"] == "/big":
        payload = BIG
    elif scope["path"] == "/chunks":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    else:
        payload = b"echo:" + body
    headers = [(b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


@pytest.fixture(scope="module")
def sample_server() -> Iterator[tuple[str, int]]:
    server = ServerThread(sample_app)
    base = server.start()
    host, port = base.removeprefix("http://").split(":")
    yield host, int(port)
    server.stop()


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[bytes, bytes]:
    """One response off the socket: (head, body), leaving any following bytes in buffer."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-head: {bytes(buffer)!r}"
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    del buffer[:end]
    if b"transfer-encoding: chunked" in head:
        body = bytearray()
        while True:
            while b"\r\n" not in buffer:
                buffer += sock.recv(65536)
            line_end = buffer.index(b"\r\n")
            size = int(buffer[:line_end], 16)
            while len(buffer) < line_end + 2 + size + 2:
                buffer += sock.recv(65536)
            body += buffer[line_end + 2 : line_end + 2 + size]
            del buffer[: line_end + 2 + size + 2]
            if size == 0:
                return head, bytes(body)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(buffer) < length:
        chunk = sock.recv(1 << 20)
        assert chunk, "connection closed mid-body"
        buffer += chunk
    body = bytes(buffer[:length])
    del buffer[:length]
    return head, body


def test_pipelined_requests_on_one_connection_each_get_their_answer(
    sample_server: tuple[str, int],
) -> None:
    with socket.create_connection(sample_server, timeout=10) as sock:
        requests = b"".join(
            b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n\r\n%s" % (len(b), b)
            for b in (b"first", b"second", b"third")
        )
        sock.sendall(requests)
        buffer = bytearray()
        bodies = [read_response(sock, buffer)[1] for _ in range(3)]
    assert bodies == [b"echo:first", b"echo:second", b"echo:third"]


def test_a_large_body_arrives_whole_and_connection_close_is_honoured(
    sample_server: tuple[str, int],
) -> None:
    with socket.create_connection(sample_server, timeout=10) as sock:
        sock.sendall(b"GET /big HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        buffer = bytearray()
        head, body = read_response(sock, buffer)
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert body == BIG
        assert sock.recv(1) == b""  # the server closed after flushing everything


def test_a_streamed_response_arrives_part_by_part(sample_server: tuple[str, int]) -> None:
    with socket.create_connection(sample_server, timeout=10) as sock:
        sock.sendall(b"GET /chunks HTTP/1.1\r\nhost: t\r\n\r\n")
        head, body = read_response(sock, bytearray())
    assert b"transfer-encoding: chunked" in head
    assert body == b"one,two,three"
