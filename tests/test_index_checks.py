"""Each index-health check catches its own fault and only it: collections are broken on
purpose, one fault each, in the embedded engine (qdrant-edge, a real HNSW index), and a
healthy collection is ok on every check the engine can answer."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.indexes.adopt import AdoptionRefused, adopt, metadata_entry
from gateway.indexes.edge import EdgeCollection
from gateway.indexes.engine import Place
from gateway.indexes.models import CollectionHealth
from gateway.indexes.runner import NAMES, check_collection
from tests.index_collections import (
    MODEL,
    NOW,
    TOO_LOW,
    Spec,
    build,
    clustered,
    config,
    prepared,
    source_of,
)


def check(
    folder: Path, spec: Spec, settings: dict[str, Any] | None = None, **facts: Any
) -> CollectionHealth:
    build(folder, spec)
    chosen = config(folder.name, **(settings or {}))
    return check_collection(chosen, Place(None, folder), prepared(spec, **facts), now=NOW)


def faults(health: CollectionHealth) -> dict[str, str]:
    return {c.name: c.status for c in health.checks if c.status in ("warn", "critical")}


def test_a_healthy_collection_is_ok_on_every_check_the_engine_answers(tmp_path: Path) -> None:
    health = check(tmp_path / "healthy", Spec())
    statuses = {c.name: c.status for c in health.checks}
    assert statuses == {name: "ok" for name in NAMES} | {"status": "not available"}
    status = health.check("status")
    assert status.reason is not None
    assert "qdrant-edge" in status.reason
    assert health.status == "ok"
    assert health.points == 3000
    recall = health.check("recall")
    assert recall.value is not None
    assert recall.value >= 0.95
    assert recall.details["source"] == "sampled"
    assert health.check("recall_filtered").details["queries"] == 100
    assert health.check("staleness").value == pytest.approx(0.5, abs=0.5)  # half a day or so
    assert [p.hnsw_ef for p in health.ef_curve] == [16, 32, 64, 128, 256, 512]
    assert all(0 <= p.recall <= 1 and p.p50_ms <= p.p95_ms for p in health.ef_curve)


def _other_model(index: int, payload: dict[str, Any]) -> dict[str, Any]:
    if index % 10 == 0:
        return {**payload, "embedding_model": "openai/text-embedding-3-small"}
    return payload


def _zero(index: int, vector: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.zeros_like(vector) if index % 20 == 0 else vector


def _stale(index: int, payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "updated_at": (NOW - timedelta(days=60 + index % 5)).isoformat()}


def _copies(spec: Spec) -> list[tuple[int, np.ndarray[Any, Any], dict[str, Any]]]:
    vectors = clustered(spec.points, spec.dim, spec.seed)
    noise = np.random.default_rng(3).standard_normal(vectors.shape).astype(np.float32) * 1e-3
    return [
        (
            100_000 + i,
            vectors[i] + noise[i],
            {"embedding_model": MODEL, "source": source_of(i), "updated_at": NOW.isoformat()},
        )
        for i in range(0, spec.points, 3)  # a copy of every third point
    ]


def test_wrong_dimension_is_critical_and_only_that(tmp_path: Path) -> None:
    spec = Spec(dim=48)
    # The model makes 32-dimension vectors; this collection's have 48.
    health = check(tmp_path / "dim", spec, dimension=32, queries=None)
    assert faults(health) == {"dimension": "critical"}
    dimension = health.check("dimension")
    assert dimension.value == 48
    assert dimension.details["model_dimension"] == 32
    assert health.status == "critical"


def test_points_of_another_model_are_caught_by_model_mix_only(tmp_path: Path) -> None:
    health = check(tmp_path / "mix", Spec(payload=_other_model))
    assert faults(health) == {"model_mix": "critical"}
    assert health.check("model_mix").value == pytest.approx(0.1)
    assert health.check("model_mix").details["other_model_points"] == 300


def test_a_few_points_of_another_model_warn(tmp_path: Path) -> None:
    def few(index: int, payload: dict[str, Any]) -> dict[str, Any]:
        return _other_model(index, payload) if index < 30 else payload

    health = check(tmp_path / "few", Spec(payload=few))
    assert faults(health) == {"model_mix": "warn"}  # 1%: above 0, below 5%


def test_zero_vectors_are_caught_by_the_vector_check_only(tmp_path: Path) -> None:
    # The check reads a random sample; sampling every point makes the share exact (1 in 20).
    health = check(tmp_path / "zero", Spec(vector=_zero), {"sample_size": 3000})
    assert faults(health) == {"vectors": "critical"}
    vectors = health.check("vectors")
    assert vectors.details["zero_norm"]
    assert vectors.details["sample"] == 3000
    assert vectors.value == pytest.approx(0.05)


def test_non_finite_vectors_are_caught_too(tmp_path: Path) -> None:
    def nan(index: int, vector: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.full_like(vector, np.nan) if index % 25 == 0 else vector

    health = check(tmp_path / "nan", Spec(vector=nan))
    assert faults(health)["vectors"] == "critical"
    assert health.check("vectors").details["non_finite"]
    # NaN distances also break the HNSW graph built over them: recall is hit for real.
    assert set(faults(health)) <= {"vectors", "recall"}


def test_near_duplicates_are_caught_by_the_duplicate_check_only(tmp_path: Path) -> None:
    spec = Spec()
    spec.extra = _copies(spec)
    health = check(tmp_path / "dup", spec)
    assert faults(health) == {"duplicates": "critical"}
    assert health.check("duplicates").value == pytest.approx(0.5, abs=0.15)  # 2 in 4 points


def test_stale_timestamps_are_caught_by_staleness_only(tmp_path: Path) -> None:
    health = check(tmp_path / "stale", Spec(payload=_stale))
    assert faults(health) == {"staleness": "critical"}
    assert health.check("staleness").value == pytest.approx(60, abs=0.01)


def test_staleness_reads_timestamps_without_a_range_index(tmp_path: Path) -> None:
    health = check(tmp_path / "scan", Spec(payload=_stale, timestamp_index=False))
    assert faults(health) == {"staleness": "critical"}
    assert health.check("staleness").value == pytest.approx(60, abs=0.01)


def test_orphans_are_caught_by_the_orphan_check_only(tmp_path: Path) -> None:
    spec = Spec()
    listed = sorted({source_of(i) for i in range(spec.points)})
    health = check(tmp_path / "orphans", spec, sources=listed[: int(len(listed) * 0.9)])
    assert faults(health) == {"orphans": "critical"}
    orphans = health.check("orphans")
    assert orphans.details["orphan_sources"] == 100
    assert orphans.value == pytest.approx(0.1)


def test_sources_without_points_make_the_index_stale(tmp_path: Path) -> None:
    spec = Spec()
    listed = [*sorted({source_of(i) for i in range(spec.points)}), "doc-new-1", "doc-new-2"]
    health = check(tmp_path / "missing", spec, sources=listed)
    assert faults(health) == {"staleness": "warn"}  # 2 of 1002: above 0, below 5%
    assert health.check("staleness").details["missing_sources"] == 2


def test_an_hnsw_graph_tuned_too_low_is_caught_by_recall_only(tmp_path: Path) -> None:
    health = check(tmp_path / "low", Spec(**TOO_LOW))
    assert faults(health) == {"recall": "critical"}
    recall = health.check("recall")
    assert recall.value is not None
    assert recall.value < 0.7
    # Filtered queries go through the payload index (a keyword index on `source`): apart.
    assert health.check("recall_filtered").status == "ok"
    curve = {p.hnsw_ef: p.recall for p in health.ef_curve}
    assert curve[512] > curve[16]  # recall moves with hnsw_ef


def test_recall_at_the_hnsw_ef_applications_use(tmp_path: Path) -> None:
    spec = Spec(m=4, ef_construct=16)
    build(tmp_path / "ef", spec)
    place = Place(None, tmp_path / "ef")
    low = check_collection(config("ef", hnsw_ef=10), place, prepared(spec), now=NOW)
    high = check_collection(config("ef", hnsw_ef=512), place, prepared(spec), now=NOW)
    low_recall, high_recall = low.check("recall").value, high.check("recall").value
    assert low_recall is not None
    assert high_recall is not None
    assert low_recall < high_recall
    assert high.check("recall").details["hnsw_ef"] == 512


def test_search_latency_is_graded_by_its_thresholds(tmp_path: Path) -> None:
    # Warn above 0 ms: any search that takes time at all, so no clock decides the outcome.
    health = check(tmp_path / "slow", Spec(), {"thresholds": {"latency_p95_ms": [0.0, 1e9]}})
    assert faults(health) == {"latency": "warn"}
    latency = health.check("latency")
    assert latency.details["p50_ms"] <= latency.details["p95_ms"]


def test_unindexed_vectors_are_caught_by_the_indexed_check_only(tmp_path: Path) -> None:
    # 8,000 x 384 float32 (12 MB) never optimized: above the 10,000 KB indexing threshold.
    spec = Spec(points=8000, dim=384, optimize=False)
    health = check(tmp_path / "grey", spec)
    assert faults(health) == {"indexed": "critical"}
    assert health.check("indexed").details == {"points": 8000, "indexed": 0, "unindexed": 8000}


def test_query_drift_is_caught_by_the_drift_check_only(tmp_path: Path) -> None:
    spec = Spec()
    elsewhere = (np.random.default_rng(5).standard_normal((200, spec.dim)) + 3.0).tolist()
    # The collection's centroid comes from a random sample; a sample of every point makes it
    # exact (from 300 of these clustered points it ranged 0.86 to 0.99, and once fell below 0.75).
    health = check(tmp_path / "drift", spec, {"sample_size": 3000}, queries=elsewhere)
    assert faults(health) == {"query_drift": "critical"}
    drift = health.check("query_drift")
    assert drift.value is not None
    assert drift.value > 0.75
    # The drift room's MMD², computed beside it, agrees.
    assert drift.details["mmd"] > drift.details["mmd_threshold"]


def test_another_model_in_the_metadata_is_critical(tmp_path: Path) -> None:
    spec = Spec()
    build(tmp_path / "meta", spec)
    collection = EdgeCollection.open(tmp_path / "meta")
    collection.set_metadata(metadata_entry("openai/text-embedding-3-small", "openai", 32))
    collection.close()
    health = check_collection(
        config("meta"), Place(None, tmp_path / "meta"), prepared(spec), now=NOW
    )
    assert faults(health) == {"metadata": "critical"}


def test_adoption_refuses_a_collection_the_model_did_not_make(tmp_path: Path) -> None:
    build(tmp_path / "adopt", Spec(dim=48))
    collection = EdgeCollection.open(tmp_path / "adopt")
    try:
        with pytest.raises(AdoptionRefused, match="48 dimensions"):
            adopt(collection, MODEL, MODEL, 32)
        collection.set_metadata(metadata_entry("other/model", "other", 48))
        with pytest.raises(AdoptionRefused, match="--force"):
            adopt(collection, MODEL, MODEL, 48)
        assert adopt(collection, MODEL, MODEL, 48, force=True)["model"] == MODEL
    finally:
        collection.close()


def test_a_missing_collection_says_so_and_how_to_build_the_example(tmp_path: Path) -> None:
    place = Place(None, tmp_path / "indexes" / "gateway-docs")
    health = check_collection(config("gateway-docs"), place, prepared(Spec()), now=NOW)
    status = health.check("status")
    assert status.status == "critical"
    assert health.status == "critical"
    assert "does not exist" in status.summary or "no qdrant-edge collection" in status.summary
    assert "gateway index build-example" in status.summary
    assert {c.status for c in health.checks[1:]} == {"not available"}


def test_a_shard_another_process_holds_is_not_available_not_critical(tmp_path: Path) -> None:
    spec = Spec(points=300)
    build(tmp_path / "busy", spec)
    holder = EdgeCollection.open(tmp_path / "busy")
    try:
        health = check_collection(
            config("busy"), Place(None, tmp_path / "busy"), prepared(spec), now=NOW, busy_wait=0.5
        )
    finally:
        holder.close()
    assert health.status == "not available"
    assert "open in another process" in (health.check("status").reason or "")


def test_a_check_waits_for_a_shard_held_for_a_moment(tmp_path: Path) -> None:
    spec = Spec(points=300)
    build(tmp_path / "moment", spec)
    holder = EdgeCollection.open(tmp_path / "moment")
    threading.Timer(1.0, holder.close).start()  # another process's short check, ending
    health = check_collection(
        config("moment"), Place(None, tmp_path / "moment"), prepared(spec), now=NOW, busy_wait=30
    )
    assert health.status == "ok"


def test_a_broken_golden_file_is_named_with_its_line(tmp_path: Path) -> None:
    from gateway.core.config import GatewayConfig
    from gateway.indexes.prepare import Preparer

    (tmp_path / "golden.jsonl").write_text('{"query": "fine"}\n{"query": \n')
    chosen = config("golden", golden_queries="golden.jsonl")
    preparer = Preparer(GatewayConfig(), tmp_path, embed=None)
    prepared_now = asyncio.run(preparer.prepare(chosen))
    assert prepared_now.golden_problem == f"{tmp_path}/golden.jsonl:2: not JSON: Expecting value"
    assert prepared_now.dimension_reason is not None
    assert prepared_now.dimension_reason.startswith("no embeddings path")


def test_thresholds_in_the_wrong_order_are_a_config_error(tmp_path: Path) -> None:
    from gateway.core.config import load_config
    from gateway.core.errors import ConfigError

    path = tmp_path / "gateway.yaml"
    path.write_text(
        "model_list:\n"
        "  - model_name: embed\n"
        "    litellm_params: {model: local/all-MiniLM-L6-v2}\n"
        "indexes:\n"
        "  collections:\n"
        "    - name: docs\n"
        "      model: embed\n"
        "      thresholds: {recall: [0.7, 0.9]}\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert message.startswith(f"{path}:8: indexes.collections[0].thresholds")
    assert "recall is bad below its thresholds" in message
