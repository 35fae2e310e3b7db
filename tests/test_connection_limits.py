"""Connections that send no complete request head in time are closed, and past the cap new
connections are refused at once: idle and slow clients cannot use up the gateway's file
descriptors, and clients with a request to send are served throughout."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import yaml

from gateway.api.server import RESERVED_FILES
from tests.conftest import DEFAULT_MODELS, ROOT, GatewayFactory, gateway_process

WAIT = 15.0  # a bound on every wait below, never an expected duration


def address(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").split(":")
    return host, int(port)


def closed_by_server(sock: socket.socket, deadline: float) -> bytes | None:
    """What the server sent before closing the connection, or None if it was still open at
    the deadline."""
    received = bytearray()
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return None
        except ConnectionResetError:
            return bytes(received)
        if not chunk:
            return bytes(received)
        received += chunk
    return None


@contextmanager
def idle_connections(base: str, n: int) -> Iterator[list[socket.socket]]:
    with ExitStack() as stack:
        yield [
            stack.enter_context(socket.create_connection(address(base), timeout=5))
            for _ in range(n)
        ]


def served_while_waiting(base: str, idle: list[socket.socket]) -> list[bytes | None]:
    """Waits for the server to close every idle connection, sending a normal request on a new
    connection between two checks; every one of those must be answered."""
    deadline = time.monotonic() + WAIT
    outcomes: list[bytes | None] = []
    for sock in idle:
        assert httpx.get(f"{base}/healthz", timeout=WAIT).status_code == 200
        outcomes.append(closed_by_server(sock, deadline))
    assert httpx.get(f"{base}/healthz", timeout=WAIT).status_code == 200
    return outcomes


def trickle(sock: socket.socket, head: bytes) -> bytes | None:
    """Sends `head` and then a header value one byte at a time, never finishing the head;
    returns what the server sent before closing, or None if it never closed."""
    sock.sendall(head + b"x-slow: ")
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            sock.sendall(b"a")
        except (BrokenPipeError, ConnectionResetError):
            return closed_by_server(sock, deadline) or b""
        answer = closed_by_server(sock, min(deadline, time.monotonic() + 0.1))
        if answer is not None:
            return answer
    return None


def test_idle_connections_are_closed_and_others_served(gateway: GatewayFactory) -> None:
    base = gateway(header_timeout=0.5, max_connections=200)
    with idle_connections(base, 50) as idle:
        outcomes = served_while_waiting(base, idle)
    assert outcomes == [b""] * 50  # closed, without a response nobody asked for


def test_a_head_sent_a_byte_at_a_time_is_cut_off(gateway: GatewayFactory) -> None:
    base = gateway(header_timeout=0.5, max_connections=200)
    head = b"GET /healthz HTTP/1.1\r\nhost: gateway\r\n"
    with socket.create_connection(address(base), timeout=5) as sock:
        sock.sendall(head)  # and nothing more: the server says why it closes
        answer = closed_by_server(sock, time.monotonic() + WAIT)
    assert answer is not None
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"GATEWAY_HEADER_TIMEOUT" in answer
    # A client still sending when the server closes may see a reset instead of the 408
    # (the kernel drops what it had not read): closed either way is what counts.
    with socket.create_connection(address(base), timeout=5) as sock:
        answer = trickle(sock, head)
    assert answer is not None, "the server kept a slow head's connection open"
    assert answer in (b"",) or answer.startswith(b"HTTP/1.1 408"), answer
    # The same on a kept-alive connection, after a first request was answered.
    with socket.create_connection(address(base), timeout=5) as sock:
        sock.sendall(head + b"\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first
        answer = trickle(sock, head)
    assert answer is not None, "the server kept a slow head's connection open"
    assert answer in (b"",) or answer.startswith(b"HTTP/1.1 408"), answer


def test_past_the_cap_new_connections_are_refused_and_existing_ones_served(
    gateway: GatewayFactory,
) -> None:
    base = gateway(header_timeout=30, max_connections=20)
    with socket.create_connection(address(base), timeout=5) as working:
        request = b"GET /healthz HTTP/1.1\r\nhost: gateway\r\n\r\n"
        working.sendall(request)
        assert working.recv(65536).startswith(b"HTTP/1.1 200")
        with idle_connections(base, 19) as idle:
            with socket.create_connection(address(base), timeout=5) as extra:
                refused = closed_by_server(extra, time.monotonic() + WAIT)
            assert refused is not None
            assert refused.startswith(b"HTTP/1.1 503"), refused
            assert b"connection: close" in refused
            assert b"GATEWAY_MAX_CONNECTIONS" in refused
            response = httpx.get(f"{base}/healthz", timeout=WAIT)  # a client sending at once
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "too_many_connections"
            working.sendall(request)  # the connections already served go on
            assert working.recv(65536).startswith(b"HTTP/1.1 200")
            for sock in idle[:5]:
                sock.close()
            deadline = time.monotonic() + WAIT
            while httpx.get(f"{base}/healthz", timeout=WAIT).status_code != 200:
                assert time.monotonic() < deadline, "connections freed but still refused"
                time.sleep(0.05)


def _project(tmp_path: Path) -> Path:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"model_list": DEFAULT_MODELS}))
    return config


def test_gateway_serve_with_workers_closes_idle_connections(tmp_path: Path) -> None:
    env = {"GATEWAY_CONFIG": str(_project(tmp_path)), "GATEWAY_HEADER_TIMEOUT": "0.5"}
    with (
        gateway_process(tmp_path / "data", "--workers", "2", env=env) as (base, _),
        idle_connections(base, 40) as idle,
    ):
        assert served_while_waiting(base, idle) == [b""] * 40


def test_gateway_serve_refuses_connections_past_the_cap(tmp_path: Path) -> None:
    env = {
        "GATEWAY_CONFIG": str(_project(tmp_path)),
        "GATEWAY_HEADER_TIMEOUT": "30",
        "GATEWAY_MAX_CONNECTIONS": "5",
    }
    with (
        gateway_process(tmp_path / "data", env=env) as (base, _),
        idle_connections(base, 5),
        socket.create_connection(address(base), timeout=5) as extra,
    ):
        refused = closed_by_server(extra, time.monotonic() + WAIT)
        assert refused is not None
        assert refused.startswith(b"HTTP/1.1 503"), refused


def _fitted(soft: int, hard: int, cap: int) -> tuple[int, int]:
    """fit_open_files in a fresh process whose open-file limit is (soft, hard)."""
    script = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))\n"
        "from gateway.api.server import fit_open_files\n"
        f"print(fit_open_files({cap}), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    cap_served, soft_after = done.stdout.split()
    assert "open-file limit" in done.stderr or int(cap_served) == cap
    return int(cap_served), int(soft_after)


def test_the_cap_fits_the_open_file_limit() -> None:
    # Room under the hard limit: the soft limit is raised to fit two descriptors a connection.
    assert _fitted(512, 4096, 1000) == (1000, 2 * 1000 + RESERVED_FILES)
    # No room: the cap is lowered to what fits, and said so.
    assert _fitted(512, 512, 1000) == ((512 - RESERVED_FILES) // 2, 512)
