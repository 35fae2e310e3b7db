"""/readyz tells whether the database, Redis and Qdrant (when configured) answer: a
dependency that refuses connections and one that accepts and never answers are both reported
within the probe's bound, and never hang readiness."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from gateway.transport.probes import PROBE_TIMEOUT_S
from tests.conftest import REDIS_URL, GatewayFactory, free_port

# How long the test waits before calling /readyz hung: far above the probe's bound, so
# only a missing bound fails it (the test asserts words, not timings).
HUNG_S = 30.0
SILENT = f"did not answer within {PROBE_TIMEOUT_S:g} s"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel completes the handshake) and never
    answers: a hung dependency."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


class _QdrantReady(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/readyz" else 404
        body = b"all shards are ready" if status == 200 else b"not found"
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def qdrant_answering() -> Iterator[str]:
    """Qdrant's readiness endpoint as a Qdrant server answers it (no Qdrant runs here)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _QdrantReady)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _ready(base: str) -> httpx.Response:
    return httpx.get(f"{base}/readyz", timeout=HUNG_S)


def test_embedded_gateway_reports_only_its_database(gateway: GatewayFactory) -> None:
    answer = _ready(gateway())
    assert answer.status_code == 200
    assert set(answer.json()["checks"]) == {"database", "embeddings"}


def test_redis_and_qdrant_answering(
    gateway: GatewayFactory, redis_prefix: str, qdrant_answering: str
) -> None:
    base = gateway(redis_url=REDIS_URL, redis_prefix=redis_prefix, qdrant_url=qdrant_answering)
    answer = _ready(base)
    assert answer.status_code == 200, answer.text
    checks = answer.json()["checks"]
    assert (checks["database"], checks["redis"], checks["qdrant"]) == ("ok", "ok", "ok")


def test_qdrant_refusing_is_reported_and_not_held_against_readiness(
    gateway: GatewayFactory,
) -> None:
    base = gateway(qdrant_url=f"http://127.0.0.1:{free_port()}")
    answer = _ready(base)
    assert answer.status_code == 200
    assert answer.json()["checks"]["qdrant"].startswith("unreachable (ConnectError")


def test_qdrant_not_ready_is_reported(gateway: GatewayFactory, qdrant_answering: str) -> None:
    base = gateway(qdrant_url=f"{qdrant_answering}/wrong-prefix")
    checks = _ready(base).json()["checks"]
    assert checks["qdrant"] == (
        f"unreachable (QdrantNotReady: GET {qdrant_answering}/wrong-prefix/readyz answered 404)"
    )


@pytest.mark.parametrize(
    ("dependency", "setting", "url", "status"),
    [
        ("qdrant", "qdrant_url", "http://127.0.0.1:{port}", 200),  # reported only
        ("redis", "redis_url", "redis://127.0.0.1:{port}/0", 503),  # calls need it
    ],
)
def test_a_hanging_dependency_is_reported_within_the_bound(
    gateway: GatewayFactory, silent_port: int, dependency: str, setting: str, url: str, status: int
) -> None:
    base = gateway(**{setting: url.format(port=silent_port)})
    answer = _ready(base)
    assert answer.status_code == status
    assert answer.json()["checks"][dependency] == SILENT
    # Asked again while the first check may still hang: answered within the same bound.
    assert _ready(base).json()["checks"][dependency] == SILENT


def test_redis_refusing_makes_the_replica_not_ready(gateway: GatewayFactory) -> None:
    base = gateway(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    answer = _ready(base)
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "not ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("unreachable (ConnectionError")


def test_redis_fail_open_reports_redis_and_stays_ready(gateway: GatewayFactory) -> None:
    """With GATEWAY_REDIS_FAIL_OPEN calls go through without Redis: the replica still serves."""
    base = gateway(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_fail_open=True)
    answer = _ready(base)
    assert answer.status_code == 200
    assert answer.json()["checks"]["redis"].startswith("unreachable")
