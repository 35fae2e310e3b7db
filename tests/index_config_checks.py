"""The `indexes:` keys of the config schema, each seen acting on a real gateway's index
checks (tests/test_config_fields.py runs these beside its own): a synthetic qdrant-edge
collection, a gateway whose embeddings model is the loopback upstream, and the check's
answer at GET /v1/monitoring/indexes/{name}."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import httpx
from aiohttp import web

from tests.conftest import MASTER_KEY, fake_model, sdk
from tests.index_collections import Spec, build, source_of

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
DIM = 32


def _embed_model(h: Any) -> tuple[str, dict[str, Any]]:
    model = h.tag(f"text-embedding-3-small,dim={DIM}")
    entry = fake_model(h.upstream, "cf-embed", model)
    return f"openai/{model}", entry


def _serve(h: Any, collection: dict[str, Any], interval: float = 0) -> str:
    _, entry = _embed_model(h)
    config = {"model_list": [entry], "indexes": {"interval": interval, "collections": [collection]}}
    base: str = h.gateway(config)
    return base


def _checked(h: Any, spec: Spec | None = None, **fields: Any) -> dict[str, Any]:
    """Builds a healthy collection, serves a gateway watching it with `fields`, checks it."""
    deployment, _ = _embed_model(h)
    spec = spec or Spec(dim=DIM, points=300, model=deployment)
    folder = h.data_dir.parent / "collections"
    name = fields.pop("name", "cf-index")
    build(folder / name, spec)
    collection = {"name": name, "location": str(folder), "model": "cf-embed", **fields}
    base = _serve(h, collection)
    url = f"{base}/v1/monitoring/indexes/{name}"
    response = httpx.get(url, params={"refresh": "true"}, headers=ADMIN, timeout=120)
    assert response.status_code == 200, response.text
    health: dict[str, Any] = response.json()
    return health


def _check(health: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in health["checks"] if c["name"] == name)
    return found


def interval(h: Any) -> None:
    collection = {"name": "cf-never", "location": str(h.data_dir / "none"), "model": "cf-embed"}
    base = _serve(h, collection, interval=0.5)
    deadline = time.monotonic() + 60
    while 'gateway_index_status{collection="cf-never"}' not in httpx.get(f"{base}/metrics").text:
        assert time.monotonic() < deadline, "no background check"
        time.sleep(0.2)


def query_sample_rate(h: Any) -> None:
    """At 1.0 every single-input embeddings call for the collection's model is a recorded
    query: twenty of them reach the query drift check."""
    deployment, entry = _embed_model(h)
    folder = h.data_dir.parent / "collections"
    build(folder / "cf-queries", Spec(dim=DIM, points=300, model=deployment))
    collection = {"name": "cf-queries", "location": str(folder), "model": "cf-embed"}
    indexes = {"interval": 0, "query_sample_rate": 1.0, "collections": [collection]}
    base: str = h.gateway({"model_list": [entry], "indexes": indexes})
    client = sdk(base)
    for n in range(20):
        client.embeddings.create(model="cf-embed", input=f"question {n}")
    url = f"{base}/v1/monitoring/indexes/cf-queries"
    deadline = time.monotonic() + 120
    while True:
        health = httpx.get(url, params={"refresh": "true"}, headers=ADMIN, timeout=120).json()
        drift = _check(health, "query_drift")
        if drift["status"] != "not available" and drift["details"]["queries"] == 20:
            return
        assert time.monotonic() < deadline, drift
        time.sleep(0.5)


def name(h: Any) -> None:
    health = _checked(h, name="cf-named")
    assert health["name"] == "cf-named"
    assert health["location"].endswith("/collections/cf-named")
    assert health["points"] == 300


def location(h: Any) -> None:
    deployment, _ = _embed_model(h)
    build(h.data_dir / "cf-relative" / "cf-here", Spec(dim=DIM, points=300, model=deployment))
    collection = {"name": "cf-here", "location": "cf-relative", "model": "cf-embed"}
    base = _serve(h, collection)
    health = httpx.get(f"{base}/v1/monitoring/indexes/cf-here", headers=ADMIN, timeout=120).json()
    assert health["location"] == str(h.data_dir / "cf-relative" / "cf-here")  # in the data dir
    assert health["points"] == 300


async def _recording_server(seen: list[dict[str, str]]) -> tuple[web.AppRunner, str]:
    async def anything(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        body = {"status": {"error": "Not found: Collection `cf-remote` doesn't exist!"}}
        return web.json_response(body, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def api_key(h: Any) -> None:
    """The key reaches the server's wire as Qdrant reads it (an `api-key` header); the
    listener is a plain loopback recorder, not a Qdrant: the answer is a 404."""
    seen: list[dict[str, str]] = []
    runner, url = await _recording_server(seen)
    os.environ["CF_QDRANT_KEY"] = "qk-cf-secret"
    try:
        collection = {
            "name": "cf-remote",
            "location": url,
            "api_key": "os.environ/CF_QDRANT_KEY",
            "model": "cf-embed",
        }
        base = await asyncio.to_thread(_serve, h, collection)
        response = await asyncio.to_thread(
            httpx.get, f"{base}/v1/monitoring/indexes/cf-remote", headers=ADMIN, timeout=120
        )
    finally:
        del os.environ["CF_QDRANT_KEY"]
        await runner.cleanup()
    assert response.json()["checks"][0]["status"] == "critical"  # no such collection there
    assert any(headers.get("api-key") == "qk-cf-secret" for headers in seen)


def model(h: Any) -> None:
    deployment, _ = _embed_model(h)
    health = _checked(h)
    assert h.upstream.calls(deployment.removeprefix("openai/")) >= 1  # the probe went there
    assert _check(health, "dimension")["details"]["source"] == "measured by embedding a probe text"


def golden_queries(h: Any) -> None:
    path = h.data_dir.parent / "golden.jsonl"
    path.write_text("".join(json.dumps({"query": f"question {i}"}) + "\n" for i in range(6)))
    health = _checked(h, golden_queries=str(path))
    assert _check(health, "recall")["details"]["source"] == "golden"
    assert _check(health, "recall")["details"]["queries"] == 6


def model_field(h: Any) -> None:
    deployment, _ = _embed_model(h)

    def moved(index: int, payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "vector_model": payload.pop("embedding_model")}

    spec = Spec(dim=DIM, points=300, model=deployment, payload=moved)
    health = _checked(h, spec, model_field="vector_model")
    assert _check(health, "model_mix")["status"] == "ok"
    assert _check(health, "model_mix")["value"] == 0


def timestamp_field(h: Any) -> None:
    health = _checked(h, timestamp_field="updated_at")
    assert _check(health, "staleness")["details"]["newest"].startswith("2030-05-31")


def source_field(h: Any) -> None:
    health = _checked(h, source_field="source")
    assert _check(health, "recall_filtered")["details"]["queries"] >= 5


def sources(h: Any) -> None:
    path = h.data_dir.parent / "sources.txt"
    path.write_text("\n".join(sorted({source_of(i) for i in range(150)})) + "\n")
    health = _checked(h, source_field="source", sources=str(path))
    assert _check(health, "orphans")["details"]["orphan_points"] == 150


def sample_size(h: Any) -> None:
    health = _checked(h, sample_size=40)
    assert _check(health, "vectors")["details"]["sample"] == 40


def k(h: Any) -> None:
    health = _checked(h, k=5)
    assert _check(health, "recall")["unit"] == "recall@5"


def hnsw_ef(h: Any) -> None:
    health = _checked(h, hnsw_ef=24)
    assert _check(health, "recall")["details"]["hnsw_ef"] == 24
    assert 24 in [p["hnsw_ef"] for p in health["ef_curve"]]


def thresholds(h: Any) -> None:
    health = _checked(h, thresholds={"segments": [0, 1000]})
    assert _check(health, "segments")["status"] == "warn"  # any segment is "above 0" now


INDEX_CHECKS = {
    "indexes.interval": interval,
    "indexes.query_sample_rate": query_sample_rate,
    "indexes.collections[].name": name,
    "indexes.collections[].location": location,
    "indexes.collections[].api_key": api_key,
    "indexes.collections[].model": model,
    "indexes.collections[].golden_queries": golden_queries,
    "indexes.collections[].model_field": model_field,
    "indexes.collections[].timestamp_field": timestamp_field,
    "indexes.collections[].source_field": source_field,
    "indexes.collections[].sources": sources,
    "indexes.collections[].sample_size": sample_size,
    "indexes.collections[].k": k,
    "indexes.collections[].hnsw_ef": hnsw_ef,
    "indexes.collections[].thresholds": thresholds,
}
