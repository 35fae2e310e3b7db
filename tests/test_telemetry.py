"""Traces: one span per proxied call, exported over OTLP/HTTP to a real loopback receiver."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from sqlalchemy import create_engine, select

from gateway.api.app import create_app
from gateway.core.settings import Settings
from gateway.observability.traces import SpanEncoder, parent_span_id, traces_url
from gateway.store.tables import request_log
from tests.conftest import DEFAULT_MODELS, MASTER_KEY, ServerThread, fake_model, free_port
from tests.fakes.otlp import OTLPReceiver
from tests.fakes.upstream import FakeUpstream

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    server = OTLPReceiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_each_call_becomes_a_span_in_the_callers_trace(
    tmp_path: Path, upstream: FakeUpstream, receiver: OTLPReceiver
) -> None:
    entry = fake_model(upstream, "priced", "gpt-4o-mini")
    entry["model_info"] = {"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"model_list": [entry, *DEFAULT_MODELS]}))
    settings = Settings(
        config=config,
        data_dir=tmp_path / "data",
        master_key=MASTER_KEY,
        otlp_endpoint=receiver.url,
    )
    server = ServerThread(create_app(settings))
    base = server.start()
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    try:
        chat = httpx.post(
            f"{base}/v1/chat/completions",
            headers={**headers, "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
            json={"model": "priced", "messages": [{"role": "user", "content": "hi there"}]},
        )
        assert chat.status_code == 200
        embed = httpx.post(
            f"{base}/v1/embeddings",
            headers=headers,
            json={"model": "local/all-MiniLM-L6-v2", "input": "hello"},
            timeout=60,
        )
        assert embed.status_code == 200
        missing = httpx.post(
            f"{base}/v1/chat/completions",
            headers=headers,
            json={"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]},
        )
        assert missing.status_code == 404
    finally:
        server.stop()  # shutting down exports every span still queued

    received = receiver.received()
    spans = {s["attributes"]["gateway.request_id"]: s for s in received if s["kind"] == 2}
    assert len(spans) == 3
    first = spans[chat.headers["x-gateway-request-id"]]
    assert first["name"] == "chat priced"
    assert first["kind"] == 2  # SPAN_KIND_SERVER
    assert first["trace_id"] == CALLER_TRACE
    assert first["parent_span_id"] == CALLER_SPAN
    assert first["resource"]["service.name"] == "llmops-gateway"
    attributes = first["attributes"]
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "priced"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.usage.input_tokens"] > 0
    assert attributes["gen_ai.usage.output_tokens"] > 0
    assert attributes["gateway.cost_usd"] == pytest.approx(
        float(chat.headers["x-gateway-cost-usd"])
    )
    assert attributes["http.response.status_code"] == 200
    assert first["end_ns"] > first["start_ns"]

    second = spans[embed.headers["x-gateway-request-id"]]
    assert second["name"] == "embeddings local/all-MiniLM-L6-v2"
    assert second["parent_span_id"] == ""  # no caller trace: a root span
    failed = spans[missing.headers["x-gateway-request-id"]]
    assert failed["attributes"]["error.type"] == missing.json()["error"]["type"]
    assert failed["attributes"]["http.response.status_code"] == 404

    # Each span's trace id is the one its request-log row carries.
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'gateway.db'}")
    with engine.connect() as connection:
        rows = connection.execute(select(request_log.c.id, request_log.c.trace_id)).all()
    engine.dispose()
    assert {row.id: row.trace_id for row in rows} == {
        request_id: span["trace_id"] for request_id, span in spans.items()
    }


def test_endpoint_and_traceparent_parsing() -> None:
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/v1/traces/") == "http://collector:4318/v1/traces"
    good = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01".encode()
    assert parent_span_id(good, CALLER_TRACE) == CALLER_SPAN
    # A row that could not join the caller's trace (it got a fresh id) gets no parent.
    assert parent_span_id(good, "f" * 32) is None
    zero_span = f"00-{CALLER_TRACE}-{'0' * 16}-01".encode()
    assert parent_span_id(zero_span, CALLER_TRACE) is None
    bad_span = f"00-{CALLER_TRACE}-{'zz' * 8}-01".encode()
    assert parent_span_id(bad_span, CALLER_TRACE) is None
    assert parent_span_id(None, CALLER_TRACE) is None


@pytest.mark.parametrize("collector", ["unreachable", "rejecting"])
def test_a_collector_that_fails_costs_calls_nothing(
    tmp_path: Path,
    receiver: OTLPReceiver,
    collector: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint = {
        "unreachable": f"http://127.0.0.1:{free_port()}",  # nobody listens there
        "rejecting": f"{receiver.url}/elsewhere/v1/traces",  # the receiver answers 404
    }[collector]
    settings = Settings(
        config=Path(__file__).resolve().parent.parent / "config" / "gateway.yaml",
        data_dir=tmp_path / "data",
        master_key=MASTER_KEY,
        otlp_endpoint=endpoint,
    )
    server = ServerThread(create_app(settings))
    base = server.start()
    try:
        for _ in range(3):
            reply = httpx.post(
                f"{base}/v1/chat/completions",
                headers={"authorization": f"Bearer {MASTER_KEY}"},
                json={"model": "local/echo", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert reply.status_code == 200
    finally:
        server.stop()  # the failed export is logged, not raised
    warnings = [r.getMessage() for r in caplog.records if r.name == "gateway.telemetry"]
    assert len(warnings) == 1  # once, not once per batch
    assert re.match(
        rf"could not export [123] spans to {re.escape(traces_url(endpoint))}: ", warnings[0]
    )
    if collector == "rejecting":
        assert "answered 404" in warnings[0]
    assert receiver.received() == []


def test_spans_are_valid_otlp_json_whatever_the_strings_hold() -> None:
    started = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
    row = {
        "id": "req-1",
        "created_at": started,
        "finished_at": started + timedelta(milliseconds=250),
        "key_id": None,
        "team": 'team "quoted"\n',
        "route": "chat",
        "alias": "ünï/cödé\\alias",
        "deployment": "dep-1",
        "provider": "openai",
        "prompt_name": "greet",
        "prompt_version": "3f2a",
        "status": 502,
        "error_type": "upstream_error",
        "stream": True,
        "attempts": 3,
        "overhead_ms": 0.25,
        "ttft_ms": None,
        "input_tokens": 7,
        "output_tokens": 0,
        "cost_usd": 1.5e-06,
        "price_version": None,
        "trace_id": CALLER_TRACE,
    }
    encoder = SpanEncoder()
    traceparent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01".encode()
    for _ in range(2):  # the second time from the encoder's remembered strings
        span = orjson.loads(encoder.span(row, traceparent))
        attributes = {pair["key"]: pair["value"] for pair in span["attributes"]}
        assert span["name"] == "chat ünï/cödé\\alias"
        assert span["traceId"] == CALLER_TRACE
        assert span["parentSpanId"] == CALLER_SPAN
        assert int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"]) == 250_000_000
        assert span["status"] == {"code": 2, "message": "upstream_error"}
        assert attributes["gateway.team"] == {"stringValue": 'team "quoted"\n'}
        assert attributes["gateway.stream"] == {"boolValue": True}
        assert attributes["gateway.attempts"] == {"intValue": "3"}
        assert attributes["gateway.cost_usd"] == {"doubleValue": 1.5e-06}
        assert attributes["gateway.prompt"] == {"stringValue": "greet@3f2a"}
        assert attributes["error.type"] == {"stringValue": "upstream_error"}
        assert "gateway.key_id" not in attributes
        assert "gateway.ttft_ms" not in attributes


def test_each_attempt_is_a_child_span_of_its_call(
    tmp_path: Path, upstream: FakeUpstream, receiver: OTLPReceiver
) -> None:
    """A retried call shows both attempts under its span: the failed one with its error."""
    entry = fake_model(upstream, "flaky", "fail_first=1,status=500,id=attempt-spans")
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model_list": [entry, *DEFAULT_MODELS],
                "router_settings": {"num_retries": 2, "retry_after": 0},
            }
        )
    )
    settings = Settings(
        config=config, data_dir=tmp_path / "data", master_key=MASTER_KEY, otlp_endpoint=receiver.url
    )
    server = ServerThread(create_app(settings))
    base = server.start()
    try:
        chat = httpx.post(
            f"{base}/v1/chat/completions",
            headers={"authorization": f"Bearer {MASTER_KEY}"},
            json={"model": "flaky", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert chat.status_code == 200
    finally:
        server.stop()

    received = receiver.received()
    (call,) = [s for s in received if s["kind"] == 2]
    attempts = sorted(
        (s for s in received if s["parent_span_id"] == call["span_id"]),
        key=lambda s: s["attributes"]["gateway.attempt"],
    )
    assert [s["attributes"]["gateway.attempt"] for s in attempts] == [1, 2]
    assert call["attributes"]["gateway.attempts"] == 2
    failed, answered = attempts
    assert failed["kind"] == answered["kind"] == 3  # SPAN_KIND_CLIENT
    assert failed["trace_id"] == answered["trace_id"] == call["trace_id"]
    assert failed["name"] == f"attempt {answered['attributes']['gateway.deployment']}"
    assert failed["attributes"]["error.type"] == "upstream_error"
    assert failed["status_code"] == 2  # STATUS_CODE_ERROR
    assert "error.type" not in answered["attributes"]
    assert answered["status_code"] == 0
    assert call["start_ns"] <= failed["start_ns"] < failed["end_ns"] <= answered["start_ns"]
    assert answered["end_ns"] <= call["end_ns"]
