"""Checks of the `drift:` config keys for tests/test_config_fields.py: each sets a key on the
drift parts the gateway builds (`Drift.build`, as state.py builds them) over a real SQLite
database, and sees its effect in what the sampler draws, what the monitor reports or what a
loopback webhook receiver gets."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import numpy.typing as npt
import orjson

from gateway.core.config import GatewayConfig
from gateway.drift.models import DriftReport
from gateway.drift.service import Drift
from gateway.drift.subjects import Subject, classic, for_call
from gateway.drift.webhook import SIGNATURE_HEADER, signature
from gateway.registry.store import RegistryStore
from gateway.store.db import make_engine, migrate
from tests.conftest import MASTER_KEY, fake_model
from tests.fakes.v2_server import running_v2_server
from tests.fakes.webhook import running_receiver

if TYPE_CHECKING:
    from tests.test_config_fields import Harness

MODEL = classic("features-check", 1)
BODY = {"messages": [{"role": "user", "content": "hi"}]}


def hashed(texts: list[str]) -> npt.NDArray[np.float32]:
    """A stand-in text model: a unit vector from each text's hash (same text, same vector)."""
    rows = []
    for text in texts:
        digest = hashlib.sha256(text.encode()).digest()
        rows.append(np.frombuffer(digest, dtype=np.uint8)[:16].astype(np.float32) - 127.5)
    vectors = np.vstack(rows)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)  # type: ignore[no-any-return]


def built(h: Harness, drift: dict[str, Any]) -> Drift:
    h.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{h.data_dir / f'drift-{uuid.uuid4().hex[:6]}.db'}")
    migrate(engine)
    section = GatewayConfig.model_validate({"drift": drift}).drift
    return Drift.build(section, engine, RegistryStore(engine), hashed)


def add(
    parts: Drift,
    rows: list[dict[str, Any]],
    subject: Subject = MODEL,
    start: datetime | None = None,
    texts: list[str] | None = None,
) -> None:
    """Samples one second apart, from `start`, else just after the subject's last one."""
    if start is None:
        last = parts.monitor.store.latest(subject.id, 1, None, None)
        start = (
            last[0].created_at + timedelta(seconds=1) if last else datetime(2026, 1, 1, tzinfo=UTC)
        )
    first = start
    parts.monitor.store.add_samples(
        [
            {
                "subject": subject.id,
                "kind": "llm" if texts else "features",
                "created_at": first + timedelta(seconds=i),
                "alias": subject.model,
                "prompt_name": subject.prompt,
                "prompt_version": subject.version if subject.kind == "prompt" else None,
                "values": values,
                "input_text": texts[i] if texts else None,
            }
            for i, values in enumerate(rows)
        ]
    )


def normal(n: int, shift: float = 0.0, seed: int = 0, **more: Any) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [{"x": float(v), **more} for v in rng.normal(shift, 1.0, n)]


def report(parts: Drift, subject: Subject = MODEL) -> DriftReport:
    return parts.monitor.evaluate(subject).report


def test_of(found: DriftReport, column: str) -> str:
    [named] = [c for c in found.columns if c.column == column]
    return named.tests[0].test


def small(**entry: Any) -> dict[str, Any]:
    """A drift section whose subjects compare 100 reference rows with 100 current ones."""
    base = {"min_rows": 50, "reference": {"rows": 100}, "current": {"rows": 100}}
    return {"subjects": [{**base, **entry}]}


# --- the job --------------------------------------------------------------------------------


def interval(h: Harness) -> None:
    model = f"gpt-4o-mini,id=drift-interval-{h.run}"
    config = {
        "model_list": [fake_model(h.upstream, "drift-fake", model)],
        "drift": {
            "interval": 0.3,
            "subjects": [{"sample_rate": 1.0, "embeddings": False, "reference": {"rows": 5}}],
        },
    }
    base = h.gateway(config)
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    for _ in range(5):
        httpx.post(
            f"{base}/v1/chat/completions", json={"model": "drift-fake", **BODY}, headers=headers
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the default interval (300 s) would not run by then
        found = httpx.get(f"{base}/v1/monitoring/drift", headers=headers).json()["data"]
        if found and found[0]["reference"] is not None:
            assert found[0]["subject"] == "model:drift-fake"
            return
        time.sleep(0.1)
    raise AssertionError("the drift job never ran")


# --- sampling -------------------------------------------------------------------------------


def sampled(parts: Drift, alias: str, prompt: str | None = None, version: str | None = None) -> int:
    return sum(parts.sampler.draw(alias, prompt, version, BODY) is not None for _ in range(400))


def prompt(h: Harness) -> None:
    parts = built(h, {"subjects": [{"prompt": "triage@v2", "sample_rate": 1.0}]})
    assert sampled(parts, "a", "triage", "v2") == 400
    assert sampled(parts, "a", "triage", "v1") == 0
    assert sampled(parts, "a") == 0


def model(h: Harness) -> None:
    parts = built(h, {"subjects": [{"model": "claude", "sample_rate": 1.0}]})
    assert sampled(parts, "claude") == 400
    assert sampled(parts, "claude", "triage", "v1") == 400  # its prompts' calls too
    assert sampled(parts, "gpt") == 0
    assert parts.sampler.draws_model(classic("claude", 3))


def sample_rate(h: Harness) -> None:
    parts = built(h, {"subjects": [{"sample_rate": 0.25}]})
    assert 50 <= sampled(parts, "any") <= 150
    assert built(h, {"subjects": []}).sampler.on is False  # the default: no sampling
    # And on the inference path: a remote v2 model's call, its row kept by name.
    with running_v2_server() as remote:
        entry = {
            "model_name": "cf-sampled",
            "litellm_params": {"model": "v2/cf-model", "api_base": remote.url},
        }
        drift = {"subjects": [{"model": "cf-model", "sample_rate": 1.0}]}
        base = h.gateway({"model_list": [entry], "drift": drift})
        tensor = {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}
        answered = httpx.post(
            f"{base}/v2/models/cf-sampled/infer",
            json={"inputs": [tensor]},
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
        )
        assert answered.status_code == 200, answered.text
        query = 'SELECT subject, alias, "values" FROM drift_samples'
        found = _until_rows(h.data_dir / "gateway.db", query)
    [(subject, alias, values)] = found
    assert (subject, alias) == ("classic:cf-model@7", "cf-sampled")
    assert orjson.loads(values)["x[0]"] == 1.0


def _until_rows(database: Path, query: str) -> list[Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(database)) as connection:
            found = connection.execute(query).fetchall()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no rows for {query}")


# --- retention ------------------------------------------------------------------------------


def retention_rows(h: Harness) -> None:
    parts = built(h, {**small(), "retention": {"rows": 150, "age": None}})
    add(parts, normal(400))
    other = for_call("other", None, None)
    add(parts, normal(120), subject=other)
    parts.job.run_once()  # the job deletes beyond retention before it compares
    kept = parts.store.latest(MODEL.id, 1000, None, None)
    assert len(kept) == 150
    assert kept[-1].values["x"] == normal(400)[-1]["x"]  # the newest stay
    assert len(parts.store.latest(other.id, 1000, None, None)) == 120  # per subject


def retention_age(h: Harness) -> None:
    parts = built(h, {**small(), "retention": {"age": "1h", "rows": None}})
    add(parts, normal(300), start=datetime.now(UTC) - timedelta(hours=3))
    add(parts, normal(70, seed=1), start=datetime.now(UTC) - timedelta(minutes=5))
    parts.job.run_once()
    assert len(parts.store.latest(MODEL.id, 1000, None, None)) == 70
    kept = built(h, {**small(), "retention": {"age": None, "rows": None}})
    add(kept, normal(300), start=datetime.now(UTC) - timedelta(days=400))
    kept.job.run_once()
    assert len(kept.store.latest(MODEL.id, 1000, None, None)) == 300  # no limit


# --- windows --------------------------------------------------------------------------------


def min_rows(h: Harness) -> None:
    drift = {"subjects": [{"reference": {"rows": 100}, "min_rows": 40}]}
    parts = built(h, drift)
    add(parts, normal(150))
    assert report(parts).state == "no_drift"  # 50 current rows are enough
    default = built(h, {"subjects": [{"reference": {"rows": 100}}]})
    add(default, normal(150))
    assert report(default).state == "not_enough_data"  # 100 needed


def current_rows(h: Harness) -> None:
    parts = built(h, small(current={"rows": 60}))
    add(parts, normal(300))
    assert report(parts).current.rows == 60


def current_window(h: Harness) -> None:
    parts = built(h, small(current={"window": "1h"}))
    old = datetime.now(UTC) - timedelta(hours=3)
    add(parts, normal(180), start=old)
    add(parts, normal(70, seed=1), start=datetime.now(UTC) - timedelta(minutes=5))
    assert report(parts).current.rows == 70


def reference_rows(h: Harness) -> None:
    parts = built(h, small(reference={"rows": 150}))
    add(parts, normal(300))
    found = report(parts)
    assert found.reference is not None
    assert found.reference.rows == 150
    assert found.current.rows == 100


def _windowed(h: Harness, reference: dict[str, Any]) -> DriftReport:
    parts = built(h, small(reference={"rows": 100, **reference}))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    add(parts, normal(100, shift=3.0), start=start)  # 00:00:00 to 00:01:39
    add(parts, normal(100), start=start + timedelta(minutes=10))
    add(parts, normal(100, seed=2), start=start + timedelta(minutes=20))
    return report(parts)


def reference_since(h: Harness) -> None:
    found = _windowed(h, {"since": "2026-01-01T00:05:00Z"})
    assert found.reference is not None
    assert "from 2026-01-01T00:05:00+00:00" in found.reference.source
    assert found.state == "no_drift"  # the shifted first hundred are not the reference


def reference_until(h: Harness) -> None:
    found = _windowed(h, {"rows": 500, "until": "2026-01-01T00:05:00Z"})
    assert found.reference is not None
    assert found.reference.rows == 100  # the window closed with fewer than 500
    assert found.state == "drift"  # the shifted hundred are the reference


def reference_version(h: Harness) -> None:
    parts = built(
        h, {"subjects": [{"prompt": "p", "min_rows": 50, "reference": {"version": "v1"}}]}
    )
    old, new = for_call("a", "p", "v1"), for_call("a", "p", "v2")
    add(parts, normal(1000, **{"output_tokens": 3}), subject=old)
    add(parts, normal(80, shift=2.0, **{"output_tokens": 3}), subject=new)
    found = report(parts, new)
    assert found.reference is not None
    assert found.reference.source == f"the first 1000 samples of {old.id}"
    assert found.current.rows == 80


# --- the tests ------------------------------------------------------------------------------


def numerical(h: Harness) -> None:
    parts = built(h, small(numerical="psi"))
    add(parts, normal(200))
    assert test_of(report(parts), "x") == "psi"  # ks by default, at 100 reference rows


def categorical(h: Harness) -> None:
    parts = built(h, small(categorical="jensenshannon"))
    add(parts, [{"c": "abc"[i % 3]} for i in range(200)])
    assert test_of(report(parts), "c") == "jensenshannon"  # chisquare by default


def text(h: Harness) -> None:
    parts = built(h, small(text="mmd"))
    subject = for_call("a", None, None)
    texts = [f"question {i % 20}" for i in range(200)]
    add(parts, [{"error": False}] * 200, subject=subject, texts=texts)
    found = report(parts, subject)
    assert test_of(found, "input") == "mmd"  # the domain classifier by default


def columns(h: Harness) -> None:
    parts = built(h, small(columns={"x": "wasserstein"}))
    add(parts, normal(200, y=1.5))
    found = report(parts)
    assert (test_of(found, "x"), test_of(found, "y")) == ("wasserstein", "z")


def thresholds(h: Harness) -> None:
    parts = built(h, small(thresholds={"ks": 0.5, "psi": 0.3}))
    add(parts, normal(200))
    [column] = report(parts).columns
    assert [(t.test, t.threshold) for t in column.tests] == [("ks", 0.5), ("psi", 0.3)]


def drift_share(h: Harness) -> None:
    for share, state in ((0.5, "drift"), (0.9, "no_drift")):
        parts = built(h, small(drift_share=share))
        add(parts, [{"x": float(i), "y": float(i % 7)} for i in range(100)])
        add(parts, [{"x": float(i) + 100, "y": float(i % 7)} for i in range(100)])
        assert report(parts).state == state  # x drifted, y did not: a share of 0.5


def small_reference_rows(h: Harness) -> None:
    parts = built(h, small(small_reference_rows=50))
    add(parts, normal(200))
    assert test_of(report(parts), "x") == "wasserstein"  # 100 rows: ks by default


def max_categorical_values(h: Harness) -> None:
    parts = built(h, small(max_categorical_values=3))
    add(parts, [{"x": float(i % 4)} for i in range(200)])
    assert test_of(report(parts), "x") == "ks"  # four values: chisquare by default


def embeddings(h: Harness) -> None:
    subject = for_call("a", None, None)
    texts = [f"question {i % 20}" for i in range(200)]
    shown = {}
    for on in (True, False):
        parts = built(h, small(embeddings=on))
        add(parts, [{"error": False}] * 200, subject=subject, texts=texts)
        shown[on] = {c.column for c in report(parts, subject).columns}
    assert "input" in shown[True]
    assert "input" not in shown[False]


# --- the webhook ----------------------------------------------------------------------------


def _drifting(parts: Drift) -> None:
    add(parts, normal(100))
    add(parts, normal(100, shift=3.0))
    assert report(parts).state == "drift"


def webhook_url(h: Harness) -> None:
    with running_receiver() as receiver:
        _drifting(built(h, {**small(), "webhook": {"url": receiver.url}}))
        [delivery] = receiver.received()
    assert delivery.path == "/hooks/drift"
    assert delivery.json()["subject"] == MODEL.id


def webhook_secret(h: Harness) -> None:
    os.environ["DRIFT_CHECK_SECRET"] = "s3cret"
    try:
        with running_receiver() as receiver:
            hook = {"url": receiver.url, "secret": "os.environ/DRIFT_CHECK_SECRET"}
            _drifting(built(h, {**small(), "webhook": hook}))
            [delivery] = receiver.received()
    finally:
        del os.environ["DRIFT_CHECK_SECRET"]
    assert delivery.headers[SIGNATURE_HEADER.lower()] == signature("s3cret", delivery.body)


def webhook_retries(h: Harness) -> None:
    for retries, delivered in ((2, True), (0, False)):
        with running_receiver(statuses=[503, 503]) as receiver:
            hook = {"url": receiver.url, "retries": retries}
            parts = built(h, {**small(), "webhook": hook})
            _drifting(parts)  # backs off 0.5 s, then 1 s
            attempts = receiver.received()
        assert len(attempts) == retries + 1
        assert len({a.json()["id"] for a in attempts}) == 1  # one delivery, retried
        assert parts.monitor.webhook.sent == int(delivered)  # type: ignore[union-attr]


def webhook_timeout(h: Harness) -> None:
    for timeout, delivered in ((0.2, 0), (10.0, 1)):
        with running_receiver(delay=1.0) as receiver:
            hook = {"url": receiver.url, "retries": 0, "timeout": timeout}
            parts = built(h, {**small(), "webhook": hook})
            _drifting(parts)
        assert parts.monitor.webhook.sent == delivered  # type: ignore[union-attr]


DRIFT_CHECKS = {
    "drift.interval": interval,
    "drift.subjects[].prompt": prompt,
    "drift.subjects[].model": model,
    "drift.subjects[].sample_rate": sample_rate,
    "drift.subjects[].min_rows": min_rows,
    "drift.subjects[].current.rows": current_rows,
    "drift.subjects[].current.window": current_window,
    "drift.subjects[].reference.rows": reference_rows,
    "drift.subjects[].reference.since": reference_since,
    "drift.subjects[].reference.until": reference_until,
    "drift.subjects[].reference.version": reference_version,
    "drift.subjects[].numerical": numerical,
    "drift.subjects[].categorical": categorical,
    "drift.subjects[].text": text,
    "drift.subjects[].columns": columns,
    "drift.subjects[].thresholds": thresholds,
    "drift.subjects[].drift_share": drift_share,
    "drift.subjects[].small_reference_rows": small_reference_rows,
    "drift.subjects[].max_categorical_values": max_categorical_values,
    "drift.subjects[].embeddings": embeddings,
    "drift.webhook.url": webhook_url,
    "drift.webhook.secret": webhook_secret,
    "drift.webhook.retries": webhook_retries,
    "drift.webhook.timeout": webhook_timeout,
    "drift.retention.rows": retention_rows,
    "drift.retention.age": retention_age,
}
