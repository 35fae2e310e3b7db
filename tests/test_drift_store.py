"""Drift's store on SQLite and PostgreSQL: texts embedded once and kept (bytes), the current
window starting after the reference's last sample even when samples share a time; retention;
the classic samples of the old prediction_samples table moved in by migration 0011."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, inspect, text

from gateway.core.drift_config import DriftSection
from gateway.drift.service import Drift
from gateway.drift.store import DriftStore, Pruned
from gateway.drift.subjects import for_call
from gateway.store.db import migrate
from gateway.store.tables import drift_runs
from tests.drift_checks import hashed


def test_texts_are_embedded_once_and_windows_split_on_time_and_id(engine: Engine) -> None:
    calls: list[int] = []

    def embed(texts: list[str]) -> object:
        calls.append(len(texts))
        return hashed(texts)

    section = DriftSection.model_validate(
        {"subjects": [{"min_rows": 10, "reference": {"rows": 30}, "current": {"rows": 30}}]}
    )
    parts = Drift.build(section, engine, None, embed)  # type: ignore[arg-type]
    subject = for_call("gpt", None, None)
    moment = datetime(2026, 3, 1, tzinfo=UTC)  # every sample at one time: ids order them
    parts.store.add_samples(
        [
            {
                "subject": subject.id,
                "kind": "llm",
                "created_at": moment,
                "alias": "gpt",
                "values": {"output_tokens": i % 5, "error": False},
                "input_text": f"question {i % 6}",
                "output_text": f"answer {i % 6}",
            }
            for i in range(50)
        ]
    )
    first = parts.monitor.evaluate(subject).report
    assert first.reference is not None
    assert (first.reference.rows, first.current.rows) == (30, 20)
    assert first.state == "no_drift"
    assert calls == [6, 6, 6, 6]  # reference, then current: inputs and outputs, distinct texts
    again = parts.monitor.evaluate(subject).report
    assert again.state == "no_drift"
    assert calls == [6, 6, 6, 6]  # stored: nothing embedded twice
    stored = parts.store.latest(subject.id, 50, None, None)
    assert all(isinstance(row.input_embedding, bytes) for row in stored)
    assert len(stored[0].input_embedding or b"") == 16 * 4


def test_retention_deletes_old_samples_and_reports_but_each_subject_keeps_its_latest(
    engine: Engine,
) -> None:
    store = DriftStore(engine)
    now = datetime.now(UTC)
    old, new = now - timedelta(days=40), now - timedelta(minutes=1)
    store.add_samples(
        [
            {"subject": s, "kind": "features", "created_at": at, "values": {"x": i}}
            for s in ("classic:a@1", "classic:b@1")
            for i, at in enumerate([old] * 30 + [new] * 250)
        ]
    )
    with engine.begin() as connection:
        connection.execute(
            drift_runs.insert(),
            [
                {"subject": s, "computed_at": at, "state": "no_drift", "report": {"n": n}}
                for s, moments in (("classic:a@1", [old, old, new]), ("gone", [old, old]))
                for n, at in enumerate(moments)
            ],
        )
    pruned = store.prune(rows=200, older_than=now - timedelta(days=30))
    assert (pruned.samples, pruned.runs) == (2 * 80, 3)
    for subject in ("classic:a@1", "classic:b@1"):
        kept = store.latest(subject, 1000, None, None)
        assert [row.values["x"] for row in kept] == list(range(80, 280))  # the newest 200
    assert [r["n"] for r in store.history("classic:a@1", 10)] == [2]
    assert [r["n"] for r in store.history("gone", 10)] == [1]  # its latest report stays
    assert store.prune(rows=200, older_than=now - timedelta(days=30)) == Pruned(0, 0)


def test_the_old_prediction_samples_move_into_drift_samples(engine: Engine) -> None:
    """Migration 0011 on a database that had classic samples in prediction_samples."""
    from alembic import command
    from alembic.config import Config

    from gateway.store.db import MIGRATIONS

    def alembic(connection: Any) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        return config

    with engine.begin() as connection:
        command.downgrade(alembic(connection), "0010")
    signature = {"inputs": [], "outputs": [], "features": ["length", "width"]}
    moment = datetime(2026, 5, 1, 12, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO registry_versions (name, version, kind, alias, hyperparameters, "
                "tags, metadata, created_at, created_by, signature) VALUES ('iris', 2, "
                "'classic', 'iris', '{}', '[]', '{}', :at, 't', :signature)"
            ),
            {"at": moment, "signature": json.dumps(signature)},
        )
        connection.execute(
            text(
                "INSERT INTO prediction_samples (created_at, request_id, alias, model_version, "
                "rows, inputs, outputs) VALUES (:at, 'r1', 'iris', 'iris@2', 2, :i, :o), "
                "(:at, 'r2', 'fraud', NULL, 1, :x, '[]')"
            ),
            {
                "at": moment,
                "i": json.dumps([{"name": "input-0", "shape": [2, 2], "data": [1, 2, 3, 4]}]),
                "o": json.dumps([{"name": "predict", "shape": [2], "data": [0, 1]}]),
                "x": json.dumps([{"name": "x", "shape": [1], "data": [7.5]}]),
            },
        )
    migrate(engine)
    store = DriftStore(engine)
    moved = store.latest("classic:iris@2", 10, None, None)
    assert [row.values for row in moved] == [
        {"length": 1, "width": 2, "predict": 0},
        {"length": 3, "width": 4, "predict": 1},
    ]
    assert moved[0].created_at == moment
    [unversioned] = store.latest("classic:fraud@unversioned", 10, None, None)
    assert unversioned.values == {"x": 7.5}
    assert not inspect(engine).has_table("prediction_samples")


def test_llm_and_classic_samples_written_together_keep_every_field(engine: Engine) -> None:
    """One flush holding both kinds of sample (they come from calls at the same time): each
    row keeps what it has, in either order. One INSERT built from the first row's keys once
    dropped the texts and prompt of every chat call written beside a prediction."""
    import asyncio

    from gateway.drift.sampler import Sampler
    from gateway.drift.signals import Sample
    from gateway.drift.subjects import classic

    store = DriftStore(engine)
    sampler = Sampler(DriftSection.model_validate({}), store)
    chat = for_call("gpt", "triage", "abc")
    body = {"messages": [{"role": "user", "content": "where is my invoice?"}]}
    row = {
        "status": 200, "error_type": None, "input_tokens": 5, "output_tokens": 3,
        "latency_ms": 1.0, "ttft_ms": None, "cost_usd": 0.0, "created_at": datetime.now(UTC),
        "prompt_name": "triage", "prompt_version": "abc", "alias": "gpt",
    }  # fmt: skip
    reply = b'{"choices": [{"message": {"content": "in billing"}, "finish_reason": "stop"}]}'
    iris = classic("iris", "1")
    for first in ("classic", "llm"):
        if first == "classic":
            sampler.keep_features(iris, {"petal": 1.0})
        sample = Sample(chat.id, body)
        sample.reply = reply
        sampler.keep(sample, row)
        if first == "llm":
            sampler.keep_features(iris, {"petal": 2.0})
        asyncio.run(sampler.flush())
    assert sampler.dropped == 0
    texts = [(r.input_text, r.output_text) for r in store.latest(chat.id, 10, None, None)]
    assert texts == [("where is my invoice?", "in billing")] * 2
    features = [r.values for r in store.latest(iris.id, 10, None, None)]
    assert features == [{"petal": 1.0}, {"petal": 2.0}]
    assert [(r.input_text, r.output_text) for r in store.latest(iris.id, 10, None, None)] == [
        (None, None)
    ] * 2
