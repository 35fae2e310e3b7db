"""Drift samples: which calls the gateway draws, and what a sample holds once written off the
request path (signals, texts with secrets masked), for JSON, streamed, JSON-mode and failed
calls through the loopback upstream; a classic model's call as rows of named columns."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from gateway.classic.tensors import Output, Tensor
from gateway.core.drift_config import DriftSection
from gateway.drift.predictions import prediction_rows
from gateway.drift.sampler import PREDICTION_ROWS_LIMIT, Sampler
from gateway.drift.signals import REFUSAL, Sample, signals
from gateway.drift.store import DriftStore, SampleRow
from gateway.store.db import make_engine
from tests.conftest import MASTER_KEY, GatewayFactory, fake_model, sdk
from tests.fakes.upstream import FakeUpstream

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def rows_of(tmp_path: Path, subject: str, count: int) -> list[SampleRow]:
    store = DriftStore(make_engine(f"sqlite:///{tmp_path / '.gateway' / 'gateway.db'}"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = store.latest(subject, 100, None, None)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{subject}: {len(found)} samples, {count} expected")


def test_sampled_calls_become_rows_with_their_signals(
    gateway: GatewayFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    config = {
        "model_list": [
            fake_model(upstream, "watched", f"gpt-4o-mini,id=s-{tag}"),
            fake_model(upstream, "broken", f"status=500,id=s-{tag}"),
            fake_model(upstream, "unwatched", f"gpt-4o-mini,id=u-{tag}"),
        ],
        "router_settings": {"num_retries": 0},
        "drift": {
            "interval": 0,
            "subjects": [{"model": "unwatched", "sample_rate": 0.0}, {"sample_rate": 1.0}],
        },
    }
    base = gateway(config)
    client = sdk(base)
    secret = "sk-" + "a" * 24
    client.chat.completions.create(
        model="watched", messages=[{"role": "user", "content": f"key {secret} leaked"}]
    )
    stream = client.chat.completions.create(
        model="watched", messages=[{"role": "user", "content": "one two three"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    client.chat.completions.create(
        model="watched",
        messages=[{"role": "user", "content": '{"a": 1}'}],
        response_format={"type": "json_object"},
    )
    client.chat.completions.create(model="unwatched", messages=[{"role": "user", "content": "x"}])
    response = httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": "broken", "messages": [{"role": "user", "content": "fails"}]},
        headers=ADMIN,
    )
    assert response.status_code >= 500

    plain, streamed, json_mode = rows_of(tmp_path, "model:watched", 3)
    assert plain.input_text == "key [REDACTED] leaked"  # secrets masked, as in the log
    assert plain.output_text == "echo: key [REDACTED] leaked"
    assert plain.values["finish_reason"] == "stop"
    assert plain.values["error"] is False
    assert plain.values["output_chars"] == len(f"echo: key {secret} leaked")
    assert plain.values["json_valid"] is None  # no JSON asked for
    assert plain.values["ttft_ms"] is None
    assert streamed.output_text == "echo: one two three"
    assert streamed.values["ttft_ms"] > 0
    assert streamed.values["output_tokens"] == 4
    assert json_mode.values["json_valid"] is False  # "echo: {...}" is not JSON
    [failed] = rows_of(tmp_path, "model:broken", 1)
    assert failed.values["error"] is True
    assert failed.output_text is None
    assert (
        DriftStore(make_engine(f"sqlite:///{tmp_path / '.gateway' / 'gateway.db'}")).latest(
            "model:unwatched", 10, None, None
        )
        == []
    )


def reply(message: dict[str, Any], finish: str = "stop") -> bytes:
    return orjson.dumps({"choices": [{"index": 0, "message": message, "finish_reason": finish}]})


ROW = {
    "status": 200,
    "error_type": None,
    "input_tokens": 3,
    "output_tokens": 5,
    "latency_ms": 12.0,
    "ttft_ms": None,
    "cost_usd": 0.0,
}


def test_tool_calls_refusals_and_json_from_a_reply() -> None:
    sample = Sample("model:x", {"messages": [], "response_format": {"type": "json_schema"}})
    sample.reply = reply(
        {"content": '{"ok": true}', "tool_calls": [{"id": "t", "type": "function"}]},
        "tool_calls",
    )
    values, _, text = signals(sample, ROW)
    assert (values["tool_call"], values["json_valid"], values["finish_reason"]) == (
        True,
        True,
        "tool_calls",
    )
    assert text == '{"ok": true}'
    refused = Sample("model:x", {"messages": []})
    refused.reply = reply({"content": None, "refusal": "I can't help with that."})
    assert signals(refused, ROW)[0]["refusal"] is True


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("I'm sorry, but I can't help with that request.", True),
        ("Sorry, I cannot assist with this.", True),
        ("Unfortunately I am unable to provide medical advice.", True),
        ("As an AI, I won't write that.", True),
        ("I can help with that: here is the plan.", False),
        ("The parser can't handle tabs; I fixed it.", False),
    ],
)
def test_refusals_are_told_from_their_opening(text: str, refusal: bool) -> None:
    assert bool(REFUSAL.match(text)) is refusal


def test_a_full_queue_drops_new_samples_and_counts_them() -> None:
    section = DriftSection.model_validate({"subjects": [{"sample_rate": 1.0}]})
    sampler = Sampler(section, None, queue_limit=2)
    for _ in range(3):
        sample = sampler.draw("a", None, None, {})
        assert sample is not None
        sampler.keep(sample, ROW)
    assert sampler.dropped == 1


# --- classic models' calls ------------------------------------------------------------------


def test_a_prediction_becomes_one_row_per_predicted_row_by_name() -> None:
    features = ["sepal length (cm)", "sepal width (cm)"]
    inputs = [
        Tensor("input-0", "FP32", (2, 2), [6.8, 2.8, 6.0, 3.4]),
        Tensor("segment", "BYTES", (2,), ["retail", "b2b"]),
        Tensor("image", "FP32", (2, 1, 1), [0.0, 1.0]),  # rank 3: left out
    ]
    outputs = [
        Output("predict", "INT64", [2], np.array([1, 2])),
        Output("predict_proba", "FP64", [2, 3], np.array([0.1, 0.7, 0.2, 0.0, 0.1, 0.9])),
        Output("embedding", "FP32", [2, 100], np.zeros(200, dtype=np.float32)),  # too wide
    ]
    first, second = prediction_rows(2, features, inputs, outputs)
    assert first == {
        # float32, as the model reads it and as a binary tensor would bring it
        "sepal length (cm)": float(np.float32(6.8)),
        "sepal width (cm)": float(np.float32(2.8)),
        "segment": "retail",
        "predict": 1,
        "predict_proba[0]": 0.1,
        "predict_proba[1]": 0.7,
        "predict_proba[2]": 0.2,
    }
    assert second["segment"] == "b2b"
    assert second["predict_proba[2]"] == 0.9
    unnamed = prediction_rows(1, ["only one name"], [Tensor("x", "INT64", (1, 2), [3, 4])], [])
    assert unnamed == [{"x[0]": 3, "x[1]": 4}]  # the names do not fit its width
    assert len(prediction_rows(5000, None, [Tensor("x", "INT64", (5000,), [1] * 5000)], [])) == (
        1000
    )  # a huge batch is sampled by its first rows


def test_classic_calls_are_drawn_at_their_subject_rate_and_written_by_the_writer(
    tmp_path: Path,
) -> None:
    from gateway.store.db import migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'drift.db'}")
    migrate(engine)
    section = DriftSection.model_validate(
        {"subjects": [{"model": "iris", "sample_rate": 1.0}, {"sample_rate": 0.0}]}
    )
    sampler = Sampler(section, DriftStore(engine))
    assert sampler.draw_prediction("wine", "1") is None
    subject = sampler.draw_prediction("iris", "3")
    assert subject == "classic:iris@3"
    tensor = Tensor("x", "FP64", (2,), [1.5, 2.5])
    sampler.keep_prediction(subject, "iris-alias", 2, None, [tensor], [])
    assert sampler.draw_prediction("iris", None) == "classic:iris@unversioned"
    asyncio.run(sampler.flush())
    rows = DriftStore(engine).latest(subject, 10, None, None)
    assert [row.values for row in rows] == [{"x": 1.5}, {"x": 2.5}]


def test_big_batches_fill_the_queue_by_their_rows() -> None:
    section = DriftSection.model_validate({"subjects": [{"sample_rate": 1.0}]})
    sampler = Sampler(section, None)
    tensor = Tensor("x", "FP64", (5000,), [0.0] * 5000)  # counts as the 1,000 rows it keeps
    for _ in range(PREDICTION_ROWS_LIMIT // 1000 + 3):
        sampler.keep_prediction("classic:m@1", "m", 5000, None, [tensor], [])
    assert sampler.dropped == 3
