"""The Qdrant server path (qdrant-client over REST) against a loopback HTTP server answering
in Qdrant's documented JSON shapes: no Qdrant server can run where this is built (README,
"What was tested where"), so this is the server path's contract with qdrant-client's parsing,
not with Qdrant itself. The server reports what qdrant-edge cannot (collection status, the
optimizer's error) and fails every search: those checks say so, never a made-up value."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from gateway.indexes.engine import METADATA_KEY, Place
from gateway.indexes.runner import check_collection
from tests.index_collections import MODEL, NOW, UNTIMED, Spec, config, prepared

DIM = 32


def _info(status: str, optimizer: Any) -> dict[str, Any]:
    """GET /collections/{name}'s result, as Qdrant's OpenAPI (CollectionInfo) describes it."""
    return {
        "status": status,
        "optimizer_status": optimizer,
        "indexed_vectors_count": 4900,
        "points_count": 5000,
        "segments_count": 3,
        "config": {
            "params": {
                "vectors": {"size": DIM, "distance": "Cosine"},
                "shard_number": 1,
                "replication_factor": 1,
                "write_consistency_factor": 1,
                "on_disk_payload": True,
            },
            "hnsw_config": {
                "m": 16,
                "ef_construct": 100,
                "full_scan_threshold": 10000,
                "max_indexing_threads": 0,
                "on_disk": False,
            },
            "optimizer_config": {
                "deleted_threshold": 0.2,
                "vacuum_min_vector_number": 1000,
                "default_segment_number": 0,
                "max_segment_size": None,
                "memmap_threshold": None,
                "indexing_threshold": 10000,
                "flush_interval_sec": 5,
                "max_optimization_threads": None,
            },
            "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
            "quantization_config": None,
            "metadata": {METADATA_KEY: {"model": MODEL, "dimension": DIM}},
        },
        "payload_schema": {"updated_at": {"data_type": "datetime", "points": 5000}},
    }


class FakeQdrant:
    """One collection, `support`; every other request is a 500 in Qdrant's error shape."""

    def __init__(self, status: str, optimizer: Any) -> None:
        self.info = _info(status, optimizer)
        self.seen: list[str] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    async def _answer(self, request: web.Request) -> web.Response:
        self.seen.append(f"{request.method} {request.path}")
        if request.method == "GET" and request.path == "/":  # qdrant-client asks the version
            return web.json_response(
                {"title": "qdrant - vector search engine", "version": "1.20.0"}
            )
        if request.method == "GET" and request.path == "/collections/support":
            return web.json_response({"result": self.info, "status": "ok", "time": 0.001})
        if request.path.startswith("/collections/support/optimizations"):
            error = {"status": {"error": "Not found"}, "time": 0.0}
            return web.json_response(error, status=404)  # an older server
        error = {"status": {"error": "Service internal error: disk unreadable"}, "time": 0.0}
        return web.json_response(error, status=500)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._started.set()
        self._loop.run_forever()

    def __enter__(self) -> FakeQdrant:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def failing_optimizer() -> Iterator[FakeQdrant]:
    with FakeQdrant("red", {"error": "No space left on device"}) as server:
        yield server


def test_the_servers_own_facts_are_read_and_failed_searches_reported(
    failing_optimizer: FakeQdrant,
) -> None:
    place = Place(failing_optimizer.url, None)
    chosen = config("support", thresholds=UNTIMED)
    health = check_collection(chosen, place, prepared(Spec(dim=DIM)), now=NOW)
    checks = {c.name: c for c in health.checks}
    assert health.engine == "qdrant"
    assert checks["status"].status == "critical"
    assert checks["status"].summary == "the optimizer failed: No space left on device"
    assert checks["status"].details["status"] == "red"
    # An older server without /optimizations: its queue is unknown, not zero.
    assert checks["status"].details["queued_optimizations"] is None
    assert checks["indexed"].status == "ok"  # 100 unindexed: below the indexing threshold
    assert checks["segments"].value == 3
    assert checks["dimension"].status == "ok"
    assert checks["metadata"].status == "ok"
    for name in ("model_mix", "vectors", "duplicates", "recall", "latency", "staleness"):
        assert checks[name].status == "not available", name
        assert "500" in (checks[name].reason or ""), (name, checks[name].reason)
    assert "GET /collections/support" in failing_optimizer.seen


def test_a_grey_collection_warns_with_the_way_out() -> None:
    with FakeQdrant("grey", "ok") as server:
        health = check_collection(
            config("support", thresholds=UNTIMED),
            Place(server.url, None),
            prepared(Spec(dim=DIM)),
            now=NOW,
        )
    status = health.check("status")
    assert status.status == "warn"
    assert "optimizations are pending" in status.summary
