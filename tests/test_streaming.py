"""Streams fall back only before their first byte; after it, a failure is an error, never a
truncated answer that looks complete."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from gateway.core.errors import UpstreamError
from gateway.providers.base import Stream
from tests.conftest import GatewayFactory, fake_model, sdk
from tests.fakes.upstream import FakeUpstream

USER = [{"role": "user", "content": "one two three four five six"}]


def _router(**overrides: Any) -> dict[str, Any]:
    return {"num_retries": 1, "timeout": 5, "max_retry_wait": 0.5, **overrides}


def _collect(stream: Any) -> str:
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_stream_cut_midway_raises(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    config = {
        "model_list": [fake_model(upstream, "cut", "cut=2,id=cut")],
        "router_settings": _router(),
    }
    stream = sdk(gateway(config)).chat.completions.create(model="cut", messages=USER, stream=True)
    received: list[Any] = []
    with pytest.raises(openai.APIError) as caught:
        received.extend(stream)
    assert received, "the client got the first chunks before the cut"
    assert "mid-answer" in caught.value.message or "before completion" in caught.value.message
    assert upstream.calls("cut=2,id=cut") == 1  # never replayed after the first byte


def test_stream_stall_ends_with_error(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    config = {
        "model_list": [fake_model(upstream, "stall", "stall=1,id=stall")],
        "router_settings": _router(stream_timeout=0.3),
    }
    stream = sdk(gateway(config)).chat.completions.create(model="stall", messages=USER, stream=True)
    with pytest.raises(openai.APIError) as caught:
        _collect(stream)
    assert "in time" in caught.value.message


def test_stream_malformed_event_is_an_error(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    config = {
        "model_list": [fake_model(upstream, "badstream", "malformed,id=badstream")],
        "router_settings": _router(num_retries=0),
    }
    client = sdk(gateway(config))
    # The fake sends its whole stream in one write, so the malformed event arrives with the
    # first one: the call fails before any byte reaches the client, as a plain error.
    with pytest.raises(openai.APIError) as caught:
        _collect(client.chat.completions.create(model="badstream", messages=USER, stream=True))
    assert "malformed" in caught.value.message


def test_stream_falls_back_before_first_byte(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    config = {
        "model_list": [
            fake_model(upstream, "primary", "status=500,id=s-primary"),
            fake_model(upstream, "backup", "id=s-backup"),
        ],
        "router_settings": _router(fallbacks=[{"primary": ["backup"]}]),
    }
    raw = sdk(gateway(config)).chat.completions.with_raw_response.create(
        model="primary", messages=USER, stream=True
    )
    assert raw.headers["x-gateway-model"] == "backup#1"
    assert _collect(raw.parse()) == "echo: one two three four five six"


def test_stream_that_fails_before_first_byte_is_a_plain_error(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    config = {
        "model_list": [fake_model(upstream, "down", "status=503,id=s-down")],
        "router_settings": _router(),
    }
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(gateway(config)).chat.completions.create(model="down", messages=USER, stream=True)
    assert caught.value.status_code == 503


def test_stream_hang_before_headers_is_504(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    config = {
        "model_list": [fake_model(upstream, "hang", "hang,id=s-hang")],
        "router_settings": _router(timeout=0.3, num_retries=0),
    }
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(gateway(config)).chat.completions.create(model="hang", messages=USER, stream=True)
    assert caught.value.status_code == 504


def _event(payload: dict[str, object]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


async def _batches_of(first: list[bytes], *rest: list[bytes], strip_usage: bool = False) -> Any:
    async def more() -> AsyncIterator[list[bytes]]:
        for batch in rest:
            yield batch

    stream = Stream(first, more(), time.perf_counter())
    got: list[list[bytes]] = []
    try:
        async for batch in stream.batches(strip_usage):
            got.append(batch)
    except UpstreamError as exc:
        return got, str(exc), stream
    return got, None, stream


HELLO = _event({"choices": [{"index": 0, "delta": {"content": "hello"}}]})
USAGE = _event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}})
DONE = b"data: [DONE]\n\n"


async def test_stream_batches_keep_reads_together_and_stop_at_done() -> None:
    got, error, stream = await _batches_of([HELLO], [HELLO, USAGE, DONE, HELLO])
    assert error is None
    assert got == [[HELLO], [HELLO, USAGE, DONE]]  # nothing after [DONE]
    assert stream.usage is not None
    assert stream.usage.completion_tokens == 1
    assert stream.content_chars == 10


async def test_stream_batches_drop_usage_only_events_when_asked() -> None:
    got, _, stream = await _batches_of([HELLO], [USAGE, DONE], strip_usage=True)
    assert got == [[HELLO], [DONE]]
    assert stream.usage is not None  # still seen, for pricing


async def test_a_malformed_event_mid_stream_ends_after_the_events_before_it() -> None:
    got, error, _ = await _batches_of([HELLO], [HELLO, b"data: {not json\n\n", DONE])
    assert got == [[HELLO], [HELLO]]
    assert error == "upstream sent a malformed stream event"


async def test_a_stream_without_done_is_an_error() -> None:
    got, error, _ = await _batches_of([HELLO], [HELLO])
    assert got == [[HELLO], [HELLO]]
    assert error == "upstream stream ended before completion (no [DONE])"
