"""Classic models through drift's interface, on SQLite and PostgreSQL: a registry version
carries its training data's statistics (`build_reference(...).to_json()` under
`metadata.drift_reference`), rows of features and prediction by name reach the sampler
(`Sampler.keep_features`, the interface for rows already named; the inference path's
`keep_prediction` makes the same rows from tensors, see tests/test_drift_end_to_end.py), and
the job compares them."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine

from gateway.core.drift_config import DriftSection
from gateway.drift.reference import REGISTRY_KEY, build_reference
from gateway.drift.service import Drift
from gateway.drift.subjects import classic
from gateway.registry.spec import VersionSpec
from gateway.registry.store import RegistryStore
from tests.fakes.webhook import running_receiver

SPECIES = ["setosa", "versicolor", "virginica"]


def rows(rng: np.random.Generator, count: int, shift: float = 0.0) -> list[dict[str, Any]]:
    length = rng.normal(5.8 + shift, 0.8, count)
    width = rng.gamma(2.0, 0.6 + shift / 4, count)
    species = rng.choice(SPECIES, count, p=[0.34 - shift / 5, 0.33, 0.33 + shift / 5])
    return [
        {"sepal_length": float(a), "petal_width": float(b), "species": str(s), "predicted": int(c)}
        for a, b, s, c in zip(length, width, species, rng.integers(0, 3, count), strict=True)
    ]


def training_reference(rng: np.random.Generator) -> dict[str, Any]:
    """What `gateway registry train-example` is to record: its training data's statistics."""
    data = rows(rng, 5000)
    columns = {name: [row[name] for row in data] for name in data[0]}
    return build_reference(columns, source="training data (5000 rows)").to_json()


def section(**more: Any) -> DriftSection:
    entry = {"model": "iris", "sample_rate": 1.0, "embeddings": False, **more}
    return DriftSection.model_validate({"subjects": [entry]})


def register(registry: RegistryStore, reference: dict[str, Any]) -> int:
    spec = VersionSpec(alias="iris-v2", kind="classic", metadata={REGISTRY_KEY: reference})
    return registry.register("iris", spec, aliases={"iris-v2"}, actor="test").version


def test_a_classic_version_is_compared_with_its_training_statistics(engine: Engine) -> None:
    rng = np.random.default_rng(1)
    registry = RegistryStore(engine)
    steady, shifted = (classic("iris", register(registry, training_reference(rng))) for _ in (1, 2))
    parts = Drift.build(section(), engine, registry, None)

    async def serve() -> None:  # as the inference path will: draw, then keep the features
        for subject, shift in ((steady, 0.0), (shifted, 0.6)):
            for row in rows(rng, 400, shift):
                if parts.sampler.draws_model(subject):
                    parts.sampler.keep_features(subject, row)
        await parts.sampler.flush()

    asyncio.run(serve())
    parts.job.run_once()
    reports = {r["subject"]: r for r in parts.store.latest_runs()}
    assert reports[steady.id]["state"] == "no_drift"
    drifted = reports[shifted.id]
    assert drifted["state"] == "drift"
    assert drifted["reference"]["source"] == "training data (5000 rows)"
    assert drifted["reference"]["rows"] == 5000
    assert {"sepal_length", "petal_width", "species"} <= set(drifted["drifted_columns"])
    tests = {c["column"]: c["tests"][0]["test"] for c in drifted["columns"]}
    assert tests == {  # a reference above 1,000 rows: the distances
        "sepal_length": "wasserstein",
        "petal_width": "wasserstein",
        "species": "jensenshannon",
        "predicted": "jensenshannon",
    }

    scrape = CollectorRegistry()
    scrape.register(parts.gauges)
    text = generate_latest(scrape).decode()
    assert f'gateway_drift_detected{{subject="{shifted.id}"}} 1.0' in text
    assert f'gateway_drift_detected{{subject="{steady.id}"}} 0.0' in text
    assert (
        f'gateway_drift_statistic{{column="sepal_length",subject="{shifted.id}",'
        f'test="wasserstein"}}'
    ) in text


def test_without_training_statistics_the_first_samples_are_the_reference(engine: Engine) -> None:
    rng = np.random.default_rng(2)
    registry = RegistryStore(engine)
    spec = VersionSpec(alias="iris-v2", kind="classic")
    subject = classic(
        "iris", registry.register("iris", spec, aliases={"iris-v2"}, actor="t").version
    )
    parts = Drift.build(section(reference={"rows": 300}), engine, registry, None)
    for row in [*rows(rng, 300), *rows(rng, 200, shift=0.8)]:
        parts.sampler.keep_features(subject, row)
    asyncio.run(parts.sampler.flush())
    report = parts.monitor.evaluate(subject).report
    assert report.reference is not None
    assert report.reference.source == f"the first 300 samples of {subject.id}"
    assert report.state == "drift"
    assert report.columns[0].tests[0].test == "ks"  # 300 reference rows: p-value tests


@pytest.mark.parametrize("replicas", [2])
def test_replicas_noticing_one_change_send_one_webhook_call(engine: Engine, replicas: int) -> None:
    rng = np.random.default_rng(3)
    registry = RegistryStore(engine)
    subject = classic("iris", register(registry, training_reference(rng)))
    with running_receiver() as receiver:
        hook = {"webhook": {"url": receiver.url}}
        every = [
            Drift.build(
                DriftSection.model_validate({**section().model_dump(), **hook}),
                engine,
                registry,
                None,
            )
            for _ in range(replicas)
        ]
        for row in rows(rng, 300, shift=0.8):
            every[0].sampler.keep_features(subject, row)
        asyncio.run(every[0].sampler.flush())
        states = [parts.monitor.evaluate(subject) for parts in every for _ in range(2)]
        delivered = receiver.received()
    assert [e.report.state for e in states] == ["drift"] * 2 * replicas
    assert sum(e.changed for e in states) == 1
    [delivery] = delivered
    event = delivery.json()
    assert (event["subject"], event["state"], event["previous"]) == (subject.id, "drift", None)
