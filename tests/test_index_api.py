"""Index health over HTTP, from a real gateway: checks run in a worker process, their
embeddings (the probe for the model's dimension, golden queries) go through the gateway's
own embeddings path to the loopback upstream, results reach the API, the report page and
/metrics, background checks run on their own, and a search route serves retrieval."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from gateway.drift.webhook import SIGNATURE_HEADER, signature
from tests.conftest import MASTER_KEY, GatewayFactory, fake_model, sdk
from tests.fakes.upstream import FakeUpstream
from tests.fakes.webhook import running_receiver
from tests.index_collections import UNTIMED, Spec, build, source_of

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
DIM = 32
REFUND = "Where is the refund policy?"
GOLDEN = [
    REFUND,
    "How do I reset a password?",
    "Which plans exist?",
    "Who do I call?",
    "Is there an API?",
    "What does shipping cost?",
]


def _model(upstream: FakeUpstream, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    model = f"text-embedding-3-small,dim={DIM},id=idx-{tmp_path.name}"
    entry = fake_model(upstream, "embed", model)
    entry["model_info"] = {"mode": "embedding"}
    return f"openai/{model}", entry


def _config(
    entry: dict[str, Any], *collections: dict[str, Any], interval: float = 0
) -> dict[str, Any]:
    return {
        "model_list": [entry],
        "indexes": {"interval": interval, "collections": list(collections)},
    }


@pytest.fixture
def served(gateway: GatewayFactory, upstream: FakeUpstream, tmp_path: Path) -> tuple[str, str, str]:
    """A gateway watching a healthy synthetic collection whose vectors come from its
    embeddings model, with a point placed on a golden query's own embedding."""
    deployment, entry = _model(upstream, tmp_path)
    spec = Spec(dim=DIM, model=deployment, points=600)
    # The upstream's vector for the refund question, asked through a first gateway.
    base = gateway({"model_list": [entry]})
    vector = sdk(base).embeddings.create(model="embed", input=REFUND).data[0].embedding
    spec.extra = [
        (
            999_999,
            np.asarray(vector, np.float32),
            {
                "embedding_model": deployment,
                "source": "refund-policy",
                "updated_at": "2030-06-01T00:00:00+00:00",
            },
        )
    ]
    folder = tmp_path / "collections"
    build(folder / "support", spec)
    golden = tmp_path / "golden.jsonl"
    lines = [{"query": q, "expected": ["refund-policy"] if q == REFUND else []} for q in GOLDEN]
    golden.write_text("".join(json.dumps(line) + "\n" for line in lines))
    collection = {
        "name": "support",
        "location": str(folder),
        "model": "embed",
        "golden_queries": str(golden),
        "timestamp_field": "updated_at",
        "source_field": "source",
        # Built "in 2030": never stale here; latency is graded by a clock (untimed here).
        "thresholds": {"age_days": [100_000, 200_000], **UNTIMED},
    }
    missing = {"name": "gone", "location": str(folder), "model": "embed"}
    return gateway(_config(entry, collection, missing)), deployment, str(folder)


def test_a_collection_is_checked_through_the_gateway(served: tuple[str, str, str]) -> None:
    base, deployment, _ = served
    response = httpx.get(f"{base}/v1/monitoring/indexes/support", headers=ADMIN, timeout=120)
    assert response.status_code == 200, response.text
    health = response.json()
    checks = {c["name"]: c for c in health["checks"]}
    assert health["status"] == "ok", [c for c in checks.values() if c["status"] != "ok"]
    # The model's dimension was measured by embedding a probe through the gateway.
    assert checks["dimension"]["details"]["source"] == "measured by embedding a probe text"
    assert checks["dimension"]["value"] == DIM
    recall = checks["recall"]
    assert recall["details"]["source"] == "golden"
    assert recall["details"]["expected_found"] == 1.0  # the refund point answers its question
    assert checks["metadata"]["details"]["model"] == deployment
    # Those embeddings are calls like any other: in the request log, under their own key id.
    logs = httpx.get(f"{base}/v1/logs", params={"key_id": "index-checks"}, headers=ADMIN)
    calls = {(row["model"], row["route"]) for row in logs.json()["data"]}
    assert calls == {("embed", "embeddings")}


def test_the_list_names_every_collection_and_the_worst_status(
    served: tuple[str, str, str],
) -> None:
    base, _, folder = served
    response = httpx.get(f"{base}/v1/monitoring/indexes", headers=ADMIN, timeout=120)
    assert response.status_code == 200
    answer = response.json()
    assert [h["name"] for h in answer["data"]] == ["support", "gone"]
    assert answer["status"] == "critical"  # "gone" does not exist
    gone = answer["data"][1]["checks"][0]
    assert gone["status"] == "critical"
    assert f"{folder}/gone" in gone["summary"]


def test_results_reach_prometheus_and_the_report_page(served: tuple[str, str, str]) -> None:
    base, _, _ = served
    httpx.get(f"{base}/v1/monitoring/indexes/support", headers=ADMIN, timeout=120)
    metrics = httpx.get(f"{base}/metrics").text
    assert 'gateway_index_status{collection="support"} 0.0' in metrics
    assert 'gateway_index_check_status{check="recall",collection="support"} 0.0' in metrics
    assert 'gateway_index_check_value{check="dimension",collection="support"} 32.0' in metrics
    page = httpx.get(f"{base}/v1/monitoring/indexes/support/report", headers=ADMIN)
    assert page.headers["content-type"].startswith("text/html")
    assert "<svg" in page.text
    assert "hnsw_ef" in page.text
    assert "<script" not in page.text


def test_refresh_takes_the_master_key_and_keys_see_their_models_only(
    served: tuple[str, str, str],
) -> None:
    base, _, _ = served
    keys = {}
    for name, models in (("sees", ["embed"]), ("blind", ["other-model"])):
        made = httpx.post(f"{base}/v1/keys", json={"name": name, "models": models}, headers=ADMIN)
        keys[name] = {"Authorization": f"Bearer {made.json()['key']}"}
    assert (
        httpx.get(
            f"{base}/v1/monitoring/indexes/support", headers=keys["sees"], timeout=120
        ).status_code
        == 200
    )
    refused = httpx.get(
        f"{base}/v1/monitoring/indexes/support", params={"refresh": "true"}, headers=keys["sees"]
    )
    assert refused.status_code == 403
    hidden = httpx.get(f"{base}/v1/monitoring/indexes/support", headers=keys["blind"])
    assert hidden.status_code == 404
    assert hidden.json()["error"]["message"].startswith("No collection 'support'")
    listed = httpx.get(f"{base}/v1/monitoring/indexes", headers=keys["blind"]).json()
    assert listed["data"] == []
    unknown = httpx.get(f"{base}/v1/monitoring/indexes/nope", headers=ADMIN)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["param"] == "name"


def test_search_embeds_through_the_gateway_and_returns_payloads(
    served: tuple[str, str, str],
) -> None:
    base, _, _ = served
    found = httpx.post(
        f"{base}/v1/indexes/support/search", json={"query": REFUND, "limit": 3}, headers=ADMIN
    )
    assert found.status_code == 200, found.text
    first = found.json()["data"][0]
    assert first["id"] == 999_999
    assert first["payload"]["source"] == "refund-policy"
    assert first["score"] == pytest.approx(1.0, abs=1e-4)
    bad = httpx.post(f"{base}/v1/indexes/support/search", json={"limit": 3}, headers=ADMIN)
    assert bad.status_code == 400
    assert "query" in bad.json()["error"]["message"]
    long = httpx.post(
        f"{base}/v1/indexes/support/search", json={"query": "q" * 30_000}, headers=ADMIN
    )
    assert long.status_code == 400
    assert long.json()["error"]["param"] == "query"
    assert "qqqq" not in long.text  # named by its field, never echoed
    gone = httpx.post(f"{base}/v1/indexes/gone/search", json={"query": "x"}, headers=ADMIN)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "collection_not_found"


def test_checks_run_in_the_background_and_alert_on_a_change(
    gateway: GatewayFactory,
    upstream: FakeUpstream,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, entry = _model(upstream, tmp_path)
    collection = {"name": "never-built", "location": str(tmp_path / "none"), "model": "embed"}
    caplog.set_level(logging.INFO, "gateway.indexes")
    base = gateway(_config(entry, collection, interval=0.5))
    deadline = time.monotonic() + 60
    while (
        'gateway_index_status{collection="never-built"} 2.0'
        not in httpx.get(f"{base}/metrics").text
    ):
        assert time.monotonic() < deadline, "no background check within a minute"
        time.sleep(0.2)
    # Nobody asked: the background check stored its result for the API too.
    stored = httpx.get(f"{base}/v1/monitoring/indexes/never-built", headers=ADMIN).json()
    assert stored["status"] == "critical"
    alerts = [r.getMessage() for r in caplog.records if r.name == "gateway.indexes"]
    assert any(
        "index never-built: None -> critical" in a and "no qdrant-edge collection" in a
        for a in alerts
    ), alerts


def test_background_checks_send_one_signed_webhook_call_per_change(
    gateway: GatewayFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    deployment, entry = _model(upstream, tmp_path)
    spec = Spec(dim=DIM, model=deployment, points=300)
    build(tmp_path / "collections" / "watched", spec)
    documents = sorted({source_of(i) for i in range(spec.points)})
    sources = tmp_path / "sources.txt"
    sources.write_text("\n".join(documents))
    collection = {
        "name": "watched",
        "location": str(tmp_path / "collections"),
        "model": "embed",
        "source_field": "source",
        "sources": str(sources),
        "thresholds": UNTIMED,
    }
    with running_receiver() as receiver:
        config = _config(entry, collection, interval=0.5)
        config["drift"] = {"webhook": {"url": receiver.url, "secret": "s3cret"}}
        base = gateway(config)

        def checked(status: float) -> bool:
            return (
                f'gateway_index_status{{collection="watched"}} {status}'
                in httpx.get(f"{base}/metrics").text
            )

        def deliveries(count: int) -> bool:
            return len(receiver.received()) >= count

        until("a first background check, ok", lambda: checked(0.0))
        assert receiver.received() == []  # a first check that finds all well is no change
        sources.write_text("\n".join(documents[:90]))  # the other documents were deleted
        until("an alert for the orphans", lambda: deliveries(1))
        sources.write_text("\n".join(documents))  # and restored
        until("an alert for the recovery", lambda: deliveries(2))
        # Checks go on, the status stays ok: no third call.
        after = httpx.get(f"{base}/v1/monitoring/indexes/watched", headers=ADMIN).json()
        until(
            "another background check",
            lambda: (
                httpx.get(f"{base}/v1/monitoring/indexes/watched", headers=ADMIN).json()[
                    "checked_at"
                ]
                > after["checked_at"]
            ),
        )
        broke, recovered = receiver.received()
        for delivery in (broke, recovered):
            assert delivery.headers[SIGNATURE_HEADER.lower()] == signature("s3cret", delivery.body)
            assert delivery.headers["x-gateway-event"] == "index.status_changed"
        first, second = broke.json(), recovered.json()
        assert (first["subject"], first["previous"], first["state"]) == (
            "watched",
            "ok",
            "critical",
        )
        assert [c["name"] for c in first["failing"]] == ["orphans"]
        assert first["report"]["checks"]
        assert (second["previous"], second["state"]) == ("critical", "ok")
        assert second["failing"] == []
        assert first["id"] != second["id"]
        assert len(receiver.received()) == 2


def until(what: str, check: Any, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.2)
