"""An upstream that answers without end must not take the memory every other call needs:
past `gateway.max_response_bytes` a JSON reply or one streamed event fails the call (502),
and the gateway goes on serving."""

from __future__ import annotations

import httpx

from tests.conftest import MASTER_KEY, GatewayFactory, fake_model
from tests.fakes.upstream import FakeUpstream

HEADERS = {"Authorization": f"Bearer {MASTER_KEY}"}
LIMIT = 64 * 1024


def _serve(gateway: GatewayFactory, upstream: FakeUpstream) -> str:
    config = {
        "model_list": [
            fake_model(upstream, "huge", "id=limits-huge,pad=200000,chunks=1"),
            fake_model(upstream, "fine", "id=limits-fine,pad=1000,chunks=1"),
            # The first event (the role) leaves alone, then the huge one after 20 ms.
            fake_model(upstream, "huge-late", "id=limits-late,pad=200000,chunks=1,chunk_delay=20"),
        ],
        "router_settings": {"num_retries": 0},
        "gateway": {"max_response_bytes": LIMIT},
    }
    return gateway(config)


def _chat(base: str, model: str, **body: object) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], **body},
        headers=HEADERS,
        timeout=30,
    )


def test_a_json_reply_past_the_limit_is_a_502_naming_the_setting(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    base = _serve(gateway, upstream)
    refused = _chat(base, "huge")
    assert refused.status_code == 502, refused.text[:300]
    error = refused.json()["error"]
    assert "gateway.max_response_bytes" in error["message"]
    assert "'huge'" in error["message"]
    assert "limits-huge" not in error["message"]  # the upstream model stays in the log
    served = _chat(base, "fine")  # answers under the limit are untouched
    assert served.status_code == 200
    assert served.json()["choices"][0]["message"]["content"].endswith("x" * 1000)


def test_a_stream_event_past_the_limit_before_the_first_byte_is_a_502(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    base = _serve(gateway, upstream)
    refused = _chat(base, "huge", stream=True)  # every event arrives in the first read
    assert refused.status_code == 502, refused.text[:300]
    assert "gateway.max_response_bytes" in refused.json()["error"]["message"]


def test_a_stream_event_past_the_limit_after_the_first_byte_ends_with_an_error_event(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    base = _serve(gateway, upstream)
    body = {"model": "huge-late", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream(
        "POST", f"{base}/v1/chat/completions", json=body, headers=HEADERS, timeout=30
    ) as response:
        received = response.read()
    # The stream had begun: it ends with an error event naming the setting, never with a
    # silent end that looks complete.
    assert response.status_code == 200
    assert b"gateway.max_response_bytes" in received
    assert b"data: [DONE]" not in received
    assert len(received) < LIMIT
    assert _chat(base, "fine", stream=False).status_code == 200
