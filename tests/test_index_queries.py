"""Recent queries for index health's query drift: which embeddings answers the sampler keeps
(single inputs of a watched model, not the gateway's own calls), read back as float vectors
whether they came as floats or base64, and pruned to the latest rows per model, on SQLite
and PostgreSQL; then end to end, through a gateway's embeddings endpoint and its search route
into the check."""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from sqlalchemy import Engine

from gateway.drift.queries import QuerySampler, QueryStore, single_input, vector_of
from tests.conftest import MASTER_KEY, GatewayFactory, fake_model, sdk
from tests.fakes.upstream import FakeUpstream
from tests.index_collections import UNTIMED, Spec, build

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def _answer(vectors: list[list[float]], as_base64: bool = False) -> bytes:
    data = []
    for index, vector in enumerate(vectors):
        packed = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"index": index, "embedding": packed if as_base64 else vector})
    return orjson.dumps({"object": "list", "data": data})


def test_single_inputs_are_queries_and_batches_are_not() -> None:
    assert single_input({"input": "where is the refund policy?"})
    assert single_input({"input": ["one text"]})
    assert single_input({"input": [101, 2054, 102]})  # one text as tokens
    assert not single_input({"input": ["a document", "another document"]})
    assert not single_input({"input": [[101], [102]]})
    assert not single_input({"input": []})


def test_answers_are_read_as_float32_whatever_their_encoding() -> None:
    floats = vector_of(_answer([[0.5, -1.0, 2.0]]))
    packed = vector_of(_answer([[0.5, -1.0, 2.0]], as_base64=True))
    assert floats == packed == struct.pack("<3f", 0.5, -1.0, 2.0)
    assert vector_of(b"not json") is None
    assert vector_of(orjson.dumps({"data": []})) is None
    assert vector_of(orjson.dumps({"data": [{"embedding": "%%%"}]})) is None


def test_the_sampler_keeps_watched_single_queries_and_prunes(engine: Engine) -> None:
    store = QueryStore(engine, keep=5)
    sampler = QuerySampler({"embed"}, 1.0, store, skip={"index-checks"})
    one = {"input": "q"}
    for n in range(8):
        sampler.offer("embed", "key-1", one, _answer([[float(n), 1.0]], as_base64=n % 2 == 1))
    sampler.offer("embed", "key-1", {"input": ["a", "b"]}, _answer([[9.0, 9.0], [9.0, 9.0]]))
    sampler.offer("embed", "index-checks", one, _answer([[7.0, 7.0]]))  # a probe: the gateway's
    sampler.offer("other", "key-1", one, _answer([[6.0, 6.0]]))  # no collection uses it
    sampler.offer("embed", "key-1", one, b'{"error": "upstream"}')  # no vector in it
    asyncio.run(sampler.flush())
    assert sampler.written == 8
    assert store.count("embed") == 5  # the latest five kept
    assert store.recent("embed", 3) == [[5.0, 1.0], [6.0, 1.0], [7.0, 1.0]]  # newest last
    assert store.recent("other", 3) == []


def test_nothing_is_drawn_at_rate_zero(engine: Engine) -> None:
    sampler = QuerySampler({"embed"}, 0.0, QueryStore(engine))
    assert not sampler.on
    sampler.offer("embed", "key-1", {"input": "q"}, _answer([[1.0, 2.0]]))
    asyncio.run(sampler.flush())
    assert sampler.written == 0


def _until(what: str, check: Any, seconds: float = 120) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"never happened: {what}")


def test_queries_through_the_gateway_reach_the_drift_check(
    gateway: GatewayFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    dim = 16
    model = f"text-embedding-3-small,dim={dim},id=queries-{tmp_path.name}"
    entry = fake_model(upstream, "embed", model)
    entry["model_info"] = {"mode": "embedding"}
    # The collection holds the upstream's own embeddings of 25 passages; the same 25 texts
    # then come as queries, so both centroids are one (the fake's vectors are isotropic: any
    # other pair of samples would have centroids pointing anywhere).
    texts = [f"passage {n} about topic {n % 7}" for n in range(25)]
    base = gateway({"model_list": [entry]})
    made = sdk(base).embeddings.create(model="embed", input=texts)
    vectors = {n: np.asarray(d.embedding, np.float32) for n, d in enumerate(made.data)}
    spec = Spec(dim=dim, points=25, model=f"openai/{model}", vector=lambda n, _: vectors[n])
    build(tmp_path / "collections" / "support", spec)
    collection = {
        "name": "support",
        "location": str(tmp_path / "collections"),
        "model": "embed",
        "thresholds": UNTIMED,
    }
    config = {
        "model_list": [entry],
        "indexes": {"interval": 0, "query_sample_rate": 1.0, "collections": [collection]},
    }
    served = gateway(config)
    client = sdk(served)
    for text in texts[:20]:  # queries, each embedded alone
        client.embeddings.create(model="embed", input=text)
    client.embeddings.create(model="embed", input=["a document", "and another"])  # a batch
    for text in texts[20:]:  # the search route embeds its query through the same path
        found = httpx.post(
            f"{served}/v1/indexes/support/search", json={"query": text}, headers=ADMIN
        )
        assert found.status_code == 200, found.text

    def drift() -> dict[str, Any] | None:
        health = httpx.get(
            f"{served}/v1/monitoring/indexes/support",
            params={"refresh": "true"},
            headers=ADMIN,
            timeout=120,
        ).json()
        check = next(c for c in health["checks"] if c["name"] == "query_drift")
        flushed = check["status"] != "not available" and check["details"]["queries"] >= 25
        return check if flushed else None

    check = _until("the recorded queries reach the check", drift)
    # 25 queries: the batch and the check's own probe are not among them.
    assert check["details"]["queries"] == 25
    assert check["status"] == "ok"
    assert check["value"] < 1e-4
