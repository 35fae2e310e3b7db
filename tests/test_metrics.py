"""Prometheus metrics at /metrics: counted from finished calls, summed across workers."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import DEFAULT_MODELS, MASTER_KEY, GatewayFactory, fake_model, gateway_process
from tests.fakes.upstream import FakeUpstream

HEADERS = {"authorization": f"Bearer {MASTER_KEY}"}


def scrape(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    reply = httpx.get(f"{base}/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def chats(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> float:
    """Chat calls to local/echo answered 200."""
    return value(samples, "gateway_requests_total", route="chat", model="local/echo", status="200")


def test_calls_are_counted_with_tokens_cost_and_latency(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    priced = fake_model(upstream, "priced", "gpt-4o-mini")
    priced["model_info"] = {"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}
    base = gateway({"model_list": [priced, *DEFAULT_MODELS]})
    chat = {"model": "priced", "messages": [{"role": "user", "content": "count me"}]}
    replies = [
        httpx.post(f"{base}/v1/chat/completions", headers=HEADERS, json=chat) for _ in range(2)
    ]
    assert all(reply.status_code == 200 for reply in replies)
    with httpx.stream(
        "POST", f"{base}/v1/chat/completions", headers=HEADERS, json={**chat, "stream": True}
    ) as stream:
        assert stream.status_code == 200
        body = b"".join(stream.iter_bytes())
    missing = httpx.post(
        f"{base}/v1/chat/completions", headers=HEADERS, json={**chat, "model": "no-such-model"}
    )
    assert missing.status_code == 404

    samples = scrape(base)  # a scrape counts every call finished before it
    assert value(samples, "gateway_requests_total", route="chat", model="priced", status="200") == 3
    # A made-up model name counts as "unknown": callers cannot mint new series.
    assert (
        value(samples, "gateway_requests_total", route="chat", model="unknown", status="404") == 1
    )
    assert not [key for key in samples if ("model", "no-such-model") in key[1]]
    error_type = missing.json()["error"]["type"]
    assert (
        value(
            samples,
            "gateway_errors_total",
            route="chat",
            model="unknown",
            error_type=error_type,
        )
        == 1
    )
    usage = [reply.json()["usage"] for reply in replies]
    input_tokens = value(
        samples, "gateway_tokens_total", model="priced", team="", key="master", kind="input"
    )
    output_tokens = value(
        samples, "gateway_tokens_total", model="priced", team="", key="master", kind="output"
    )
    # Two JSON answers plus the stream (whose usage the gateway asked for).
    assert input_tokens >= sum(u["prompt_tokens"] for u in usage) + 1
    assert output_tokens >= sum(u["completion_tokens"] for u in usage) + 1
    cost = sum(float(reply.headers["x-gateway-cost-usd"]) for reply in replies)
    streamed_cost = float(body.split(b"x-gateway-cost-usd=")[1].split(b"\n")[0])
    assert value(
        samples, "gateway_cost_usd_total", model="priced", team="", key="master"
    ) == pytest.approx(cost + streamed_cost)
    assert (
        value(samples, "gateway_request_duration_seconds_count", route="chat", model="priced") == 3
    )
    assert value(samples, "gateway_overhead_seconds_count", route="chat") == 3
    assert value(samples, "gateway_time_to_first_token_seconds_count", model="priced") == 1
    # /metrics itself is not a metered call, and scraping twice changes nothing.
    assert scrape(base) == samples


@pytest.mark.slow
def test_a_scrape_of_any_worker_sums_every_worker(tmp_path: Path) -> None:
    stale = tmp_path / "data" / "metrics"
    stale.mkdir(parents=True)
    (stale / "counter_1.db").write_bytes(b"an earlier run's file")
    chat = {"model": "local/echo", "messages": [{"role": "user", "content": "hi"}]}
    workers = gateway_process(
        tmp_path / "data", "--workers", "2", env={"GATEWAY_MASTER_KEY": MASTER_KEY}
    )
    with workers as (base, _process):
        assert not (stale / "counter_1.db").exists()
        for _ in range(30):  # a new connection each time, so both workers take calls
            reply = httpx.post(f"{base}/v1/chat/completions", headers=HEADERS, json=chat)
            assert reply.status_code == 200
        # Each worker writes its counts to the shared files about once a second.
        deadline = time.monotonic() + 15
        while chats(scrape(base)) != 30:
            assert time.monotonic() < deadline, "the workers' counts never added up to 30"
            time.sleep(0.2)
        for _ in range(6):  # whichever worker answers the scrape
            assert chats(scrape(base)) == 30
        # Counted through the shared files: a worker counting in memory would still pass the
        # sums above whenever one worker happened to take every connection.
        assert list(stale.glob("counter_*.db"))
        assert list(stale.glob("histogram_*.db"))
