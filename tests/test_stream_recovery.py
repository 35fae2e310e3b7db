"""Mid-stream recovery (gateway.stream_recovery): a stream cut or stalled after it began goes on
on another deployment, and the official SDK reads one complete answer."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from gateway.calls.recovery import CONTINUE
from gateway.core.config import load_config
from gateway.core.errors import ConfigError, UpstreamError
from gateway.providers.base import Stream
from tests.conftest import MASTER_KEY, GatewayFactory, fake_model, sdk
from tests.fakes.upstream import FakeUpstream

PROMPT = "one two three four five six seven eight nine ten"
USER: list[Any] = [{"role": "user", "content": PROMPT}]
ANSWER = "echo: " + PROMPT
INPUT_PRICE, OUTPUT_PRICE = 1e-6, 2e-6
PRICES = {"input_cost_per_token": INPUT_PRICE, "output_cost_per_token": OUTPUT_PRICE}
ROUTER = {"num_retries": 1, "timeout": 5, "stream_timeout": 0.3, "max_retry_wait": 0.2}
RECOVER = {"stream_recovery": {"chat": True}}
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def unique(directives: str) -> str:
    return f"{directives},id=rec-{uuid.uuid4().hex[:10]}"


def deployment(
    upstream: FakeUpstream, alias: str, model: str, prefill: bool = True, **params: Any
) -> dict[str, Any]:
    entry = fake_model(upstream, alias, model, **params)
    entry["model_info"] = {**PRICES, "supports_assistant_prefill": prefill}
    return entry


def two_deployments(
    upstream: FakeUpstream, broken: str, spare: str, prefill: bool = True, **sections: Any
) -> dict[str, Any]:
    """ "chat" served by `broken` first (the spare has weight 0: chosen only when it is the
    only one left, as for a continuation)."""
    return {
        "model_list": [
            deployment(upstream, "chat", broken, weight=1),
            deployment(upstream, "chat", spare, prefill, weight=0),
        ],
        "router_settings": ROUTER,
        **sections,
    }


def row(base: str, request_id: str) -> dict[str, Any]:
    """The call's request-log row, once the writer has flushed it."""
    deadline = time.monotonic() + 10
    while True:
        response = httpx.get(f"{base}/v1/logs/{request_id}", headers=ADMIN, timeout=10)
        if response.status_code == 200:
            found: dict[str, Any] = response.json()
            return found
        assert time.monotonic() < deadline, f"no row for {request_id}"
        time.sleep(0.05)


def priced(found: dict[str, Any]) -> float:
    return float(found["input_tokens"] * INPUT_PRICE + found["output_tokens"] * OUTPUT_PRICE)


def read(client: openai.OpenAI, **extra: Any) -> tuple[str, list[Any], str]:
    """The streamed answer's text, its chunks and the call's request id."""
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=USER, stream=True, **extra
    )
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks, raw.headers["x-gateway-request-id"]


def test_a_cut_stream_continues_on_another_deployment(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    broken, spare = unique("cut=2"), unique("gpt-4o-mini")
    base = gateway(two_deployments(upstream, broken, spare, gateway=RECOVER))

    text, chunks, request_id = read(
        sdk(base), max_tokens=100, stream_options={"include_usage": True}
    )

    assert text == ANSWER
    # One stream as the client sees it: one id, model and created, one role delta.
    assert len({(c.id, c.model, c.created) for c in chunks}) == 1
    assert chunks[0].model == broken
    roles = [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role]
    assert roles == ["assistant"]
    assert (upstream.calls(broken), upstream.calls(spare)) == (1, 1)
    # The spare was asked to continue the text the client had, by prefill.
    sent = upstream.last_body(spare)
    assert sent is not None
    *asked, prefix = sent["messages"]
    assert asked == USER
    assert prefix["role"] == "assistant"
    assert prefix["prefix"] is True
    assert prefix["content"]
    assert ANSWER.startswith(prefix["content"])
    assert 90 <= sent["max_tokens"] < 100  # less what was already sent
    found = row(base, request_id)
    assert found["recovered"] is True
    assert (found["recovered_from"], found["deployment"]) == ("chat#0", "chat#1")
    assert (found["status"], found["error_type"], found["attempts"]) == (200, None, 2)
    # Both attempts are billed: the broken one's prompt and text (counted), the spare's usage.
    assert found["estimated"] is True
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        found["input_tokens"],
        found["output_tokens"],
    )
    continued_prompt = len(PROMPT.split()) + len(prefix["content"].split())
    assert found["input_tokens"] > continued_prompt  # the prompt twice
    assert found["cost_usd"] == pytest.approx(priced(found))


def test_a_stalled_stream_continues_on_a_fallback(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    stalled, spare = unique("stall=2"), unique("gpt-4o-mini")
    config = {
        "model_list": [
            deployment(upstream, "chat", stalled),
            deployment(upstream, "backup", spare),
        ],
        "router_settings": {**ROUTER, "fallbacks": [{"chat": ["backup"]}]},
        "gateway": RECOVER,
    }
    base = gateway(config)

    text, chunks, request_id = read(sdk(base))

    assert text == ANSWER
    assert len({c.id for c in chunks}) == 1
    assert (upstream.calls(stalled), upstream.calls(spare)) == (1, 1)
    assert upstream.in_flight(stalled) == 0  # the stalled call was abandoned at once
    found = row(base, request_id)
    assert (found["recovered"], found["recovered_from"]) == (True, "chat#0")
    assert (found["deployment"], found["attempts"], found["error_type"]) == ("backup#1", 2, None)


@pytest.mark.slow  # imports litellm (about 3 s)
def test_a_continuation_through_litellm(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    broken, spare = unique("cut=2"), unique("gpt-4o-mini")
    config = two_deployments(upstream, broken, spare, gateway=RECOVER)
    spare_entry = config["model_list"][1]
    spare_entry["model_info"]["transport"] = "litellm"
    spare_entry["litellm_params"]["api_key"] = "unused"  # litellm's openai/ wants one

    text, chunks, request_id = read(sdk(base := gateway(config)))

    assert text == ANSWER  # litellm passed `prefix: true` on, and its stream was joined
    assert len({(c.id, c.model, c.created) for c in chunks}) == 1
    sent = upstream.last_body(spare)
    assert sent is not None
    assert sent["messages"][-1]["prefix"] is True
    assert row(base, request_id)["recovered_from"] == "chat#0"


def test_without_recovery_a_broken_stream_fails_as_before(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    broken, spare = unique("cut=2"), unique("gpt-4o-mini")
    base = gateway(two_deployments(upstream, broken, spare))
    stream = sdk(base).chat.completions.with_raw_response.create(
        model="chat", messages=USER, stream=True
    )
    received: list[Any] = []
    with pytest.raises(openai.APIError):
        received.extend(stream.parse())
    assert received
    assert upstream.calls(spare) == 0
    found = row(base, stream.headers["x-gateway-request-id"])
    assert (found["recovered"], found["recovered_from"]) == (False, None)
    assert (found["deployment"], found["error_type"]) == ("chat#0", "upstream_error")


def test_a_broken_stream_counts_toward_its_deployments_cooldown(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    broken, spare = unique("cut=2"), unique("gpt-4o-mini")
    config = two_deployments(upstream, broken, spare)
    config["router_settings"] = {**ROUTER, "allowed_fails": 0, "cooldown_time": 60}
    client = sdk(gateway(config))
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="chat", messages=USER, stream=True))
    # Cooling down, the broken deployment leaves the call to the spare (weight 0 otherwise).
    reply = client.chat.completions.create(model="chat", messages=USER)
    assert reply.choices[0].message.content == ANSWER
    assert (upstream.calls(broken), upstream.calls(spare)) == (1, 1)


def test_a_deployment_without_prefill_is_asked_to_continue(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    broken, spare = unique("cut=2"), unique("gpt-4o-mini")
    base = gateway(two_deployments(upstream, broken, spare, prefill=False, gateway=RECOVER))

    text, _, request_id = read(sdk(base))

    sent = upstream.last_body(spare)
    assert sent is not None
    *asked, partial, instruction = sent["messages"]
    assert asked == USER
    assert partial["role"] == "assistant"
    assert "prefix" not in partial
    assert instruction == {"role": "user", "content": CONTINUE}
    # The fake echoes the instruction: the client gets what it had, then that.
    assert text.startswith(partial["content"])
    assert ANSWER.startswith(partial["content"])
    assert text.endswith("echo: " + CONTINUE)
    assert row(base, request_id)["recovered"] is True


def test_a_cut_inside_a_character_replays_only_whole_events(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    broken, spare = unique("cut_mid=2"), unique("gpt-4o-mini")
    base = gateway(two_deployments(upstream, broken, spare, gateway=RECOVER))
    prompt = "ça va très bien, merci à vous deux"
    body = {"model": "chat", "messages": [{"role": "user", "content": prompt}], "stream": True}

    with httpx.stream(
        "POST", f"{base}/v1/chat/completions", json=body, headers=ADMIN, timeout=30
    ) as response:
        raw = b"".join(response.iter_bytes())
        request_id = response.headers["x-gateway-request-id"]

    events = [e for e in raw.decode().split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert raw.count(b"data: [DONE]") == 1
    chunks = [orjson.loads(e[6:]) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "echo: " + prompt
    assert sum("role" in c["choices"][0]["delta"] for c in chunks) == 1
    assert len({(c["id"], c["model"], c["created"]) for c in chunks}) == 1
    # The cost comment before [DONE] is the row's: both attempts.
    comment = next(line for line in raw.decode().splitlines() if line.startswith(": x-gateway"))
    found = row(base, request_id)
    assert float(comment.partition("=")[2]) == pytest.approx(found["cost_usd"])
    assert found["recovered"] is True


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"n": 2}, id="several-choices"),
        pytest.param({"response_format": {"type": "json_object"}}, id="json"),
        pytest.param({"tool_choice": "required"}, id="forced-tool-call"),
        pytest.param({"max_tokens": 3}, id="limit-used-up"),
    ],
)
def test_streams_a_continuation_could_not_keep_fail_as_before(
    gateway: GatewayFactory, upstream: FakeUpstream, extra: dict[str, Any]
) -> None:
    broken, spare = unique("cut=2"), unique("gpt-4o-mini")
    base = gateway(two_deployments(upstream, broken, spare, gateway=RECOVER))
    with pytest.raises(openai.APIError):
        read(sdk(base), **extra)
    assert upstream.calls(spare) == 0


def test_no_deployment_to_continue_on_fails_as_before(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    broken = unique("cut=2")
    config = {
        "model_list": [deployment(upstream, "chat", broken)],
        "router_settings": ROUTER,
        "gateway": RECOVER,
    }
    base = gateway(config)
    stream = sdk(base).chat.completions.with_raw_response.create(
        model="chat", messages=USER, stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        list(stream.parse())
    assert "broke mid-answer" in caught.value.message  # the break, not the recovery's failure
    assert upstream.calls(broken) == 1  # never asked again to continue its own stream
    found = row(base, stream.headers["x-gateway-request-id"])
    assert (found["recovered"], found["deployment"], found["attempts"]) == (False, "chat#0", 1)
    assert found["error_type"] == "upstream_error"
    assert found["cost_usd"] == pytest.approx(priced(found))
    assert found["cost_usd"] > 0


def test_a_budget_is_charged_both_attempts(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    broken, spare = unique("cut=2"), unique("gpt-4o-mini")
    base = gateway(two_deployments(upstream, broken, spare, gateway=RECOVER))
    made = httpx.post(f"{base}/v1/keys", json={"max_budget": 1.0}, headers=ADMIN, timeout=10)
    key = made.json()

    text, _, request_id = read(sdk(base, key["key"]))

    assert text == ANSWER
    found = row(base, request_id)
    shown = httpx.get(f"{base}/v1/keys/{key['id']}", headers=ADMIN, timeout=10).json()
    assert shown["spend"] == pytest.approx(found["cost_usd"])
    assert found["cost_usd"] == pytest.approx(priced(found))


def test_stream_recovery_names_served_models(tmp_path: Path, upstream: FakeUpstream) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "model_list:\n"
        f"  - {orjson.dumps(deployment(upstream, 'chat', 'gpt-4o-mini')).decode()}\n"
        "gateway:\n"
        "  stream_recovery:\n"
        "    chat: true\n"
        "    chta: true\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "gateway.yaml:6" in str(caught.value)
    assert "gateway.stream_recovery.chta" in str(caught.value)
    path.write_text(path.read_text().replace("    chta: true\n", '    "*": true\n'))
    assert load_config(path).gateway.stream_recovery == {"chat": True, "*": True}


def _event(delta: dict[str, Any]) -> bytes:
    chunk = {"id": "c1", "created": 1, "model": "m", "choices": [{"index": 0, "delta": delta}]}
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


async def test_a_stream_keeps_its_text_and_notes_a_tool_call() -> None:
    async def rest() -> AsyncIterator[list[bytes]]:
        yield [_event({"content": "lo"})]
        yield [_event({"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]})]
        yield [b"data: [DONE]\n\n"]

    first = [_event({"role": "assistant", "content": ""}), _event({"content": "hel"})]
    stream = Stream(first, rest(), time.perf_counter())
    stream.keep_text()
    assert stream.head == {"id": "c1", "created": 1, "model": "m"}
    seen = [b async for b in stream.batches()]
    assert len(seen) == 4
    assert stream.text == ["hel", "lo"]
    assert stream.content_chars == 5
    assert stream.continuable is False  # a tool call cannot be resumed mid-arguments


async def test_a_finished_answer_is_not_continued() -> None:
    finished = {"id": "c1", "choices": [{"index": 0, "delta": {"content": "."}}]}
    finished["choices"][0]["finish_reason"] = "stop"

    async def rest() -> AsyncIterator[list[bytes]]:
        yield [b"data: " + orjson.dumps(finished) + b"\n\n"]  # then cut: no usage, no [DONE]

    stream = Stream([_event({"role": "assistant", "content": "Done"})], rest(), time.perf_counter())
    stream.keep_text()
    assert stream.continuable is True
    with pytest.raises(UpstreamError):
        _ = [b async for b in stream.batches()]
    assert stream.text == ["Done", "."]
    assert stream.continuable is False
