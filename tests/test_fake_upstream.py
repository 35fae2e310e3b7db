"""The fake upstream behaves as its directives promise, seen from real HTTP clients."""

from __future__ import annotations

import asyncio
import base64
import math
import socket
import struct
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.fakes.upstream import FakeUpstream, parse_directives, running_upstream

CONVERSATION: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
    {"role": "user", "content": "hello there world"},
]
ANSWER = "echo: hello there world"


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    server = FakeUpstream()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def root(fake: FakeUpstream) -> str:
    return fake.url.removesuffix("/v1")


def sdk(fake: FakeUpstream) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.url, api_key="x", max_retries=0)


async def post(
    http: aiohttp.ClientSession, fake: FakeUpstream, path: str, body: dict[str, Any]
) -> tuple[int, bytes, aiohttp.ClientResponse]:
    """POST to a path under /v1, or to an absolute URL."""
    url = path if path.startswith("http") else fake.url + path
    async with http.post(url, json=body) as response:
        return response.status, await response.read(), response


async def drain(response: aiohttp.ClientResponse, into: list[bytes]) -> None:
    async for line in response.content:
        into.append(line)


async def chat(http: aiohttp.ClientSession, fake: FakeUpstream, model: str) -> tuple[int, Any]:
    status, raw, _ = await post(
        http, fake, "/chat/completions", {"model": model, "messages": CONVERSATION}
    )
    return status, orjson.loads(raw)


def events(raw: bytes) -> list[Any]:
    """The SSE data payloads, JSON-decoded except the final [DONE] marker."""
    assert raw.endswith(b"data: [DONE]\n\n")
    frames = raw.decode().split("\n\n")
    assert frames[-1] == ""
    datas = [frame.removeprefix("data: ") for frame in frames[:-1]]
    assert datas[-1] == "[DONE]"
    return [orjson.loads(data) for data in datas[:-1]]


async def test_chat_reply_shape_and_determinism(
    fake: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    status, reply = await chat(http, fake, "gpt-4o-mini")
    assert status == 200
    assert reply["object"] == "chat.completion"
    assert reply["model"] == "gpt-4o-mini"
    assert reply["id"].startswith("chatcmpl-")
    assert isinstance(reply["created"], int)
    assert reply["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": ANSWER},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    # 2 + 2 + 2 + 3 words in, "echo: hello there world" out.
    assert reply["usage"] == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    _, again = await chat(http, fake, "gpt-4o-mini")
    assert again["choices"] == reply["choices"]
    assert again["usage"] == reply["usage"]
    assert "x_received_headers" not in reply


async def test_content_parts_and_empty_conversation(
    fake: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    parts = [
        {"type": "text", "text": "look at"},
        {"type": "image_url"},
        {"type": "text", "text": "this"},
    ]
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": parts}]}
    _, raw, _ = await post(http, fake, "/chat/completions", body)
    assert orjson.loads(raw)["choices"][0]["message"]["content"] == "echo: look at this"
    _, raw, _ = await post(http, fake, "/chat/completions", {"model": "m", "messages": []})
    reply = orjson.loads(raw)
    assert reply["choices"][0]["message"]["content"] == "echo: "
    assert reply["usage"]["prompt_tokens"] == 1


async def test_a_prefix_message_is_continued(
    fake: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    def ending_with(message: dict[str, Any]) -> dict[str, Any]:
        return {"model": "m", "messages": [*CONVERSATION, message]}

    async def answer(message: dict[str, Any]) -> str:
        _, raw, _ = await post(http, fake, "/chat/completions", ending_with(message))
        content: str = orjson.loads(raw)["choices"][0]["message"]["content"]
        return content

    prefix = {"role": "assistant", "content": "echo: hello", "prefix": True}
    assert await answer(prefix) == " there world"
    assert await answer({**prefix, "content": "something else"}) == ANSWER
    # Without the flag an assistant message is a turn like any other.
    assert await answer({"role": "assistant", "content": "echo: hello"}) == ANSWER


async def test_stream_spells_the_same_answer(
    fake: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": CONVERSATION, "stream": True}
    status, raw, response = await post(http, fake, root(fake) + "/chat/completions", body)
    assert status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = events(raw)
    assert len(chunks) == 1 + 5 + 1  # role, default content chunks, finish
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == ANSWER
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert {(c["id"], c["created"], c["model"], c["object"]) for c in chunks} == {
        (chunks[0]["id"], chunks[0]["created"], "gpt-4o-mini", "chat.completion.chunk")
    }
    assert all("usage" not in c for c in chunks)


async def test_stream_usage_chunk_only_when_asked(
    fake: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    body: dict[str, Any] = {
        "model": "chunks=40,chunk_delay=1",
        "messages": CONVERSATION,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    _, raw, _ = await post(http, fake, "/chat/completions", body)
    chunks = events(raw)
    assert len(chunks) == 1 + 40 + 1 + 1
    # 40 pieces of a 23-character answer: some are empty, the concatenation is exact.
    contents = [c["choices"][0]["delta"].get("content") for c in chunks[1:41]]
    assert "" in contents
    assert "".join(contents) == ANSWER
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}


async def test_sdk_chat_stream_and_embeddings(fake: FakeUpstream) -> None:
    async with sdk(fake) as client:
        reply = await client.chat.completions.create(model="gpt-4o-mini", messages=CONVERSATION)
        assert reply.choices[0].message.content == ANSWER
        assert reply.usage is not None
        assert reply.usage.total_tokens == 13

        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=CONVERSATION,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == 4

        # The SDK asks for base64 unless told otherwise, and decodes it.
        packed = await client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
        plain = await client.embeddings.create(
            model="text-embedding-3-small", input=["a b", "c"], encoding_format="float"
        )
    assert [d.index for d in packed.data] == [0, 1]
    assert packed.usage.prompt_tokens == 3
    for a, b in zip(packed.data, plain.data, strict=True):
        assert len(a.embedding) == 8
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
    assert plain.data[0].embedding != plain.data[1].embedding
    assert fake.calls("text-embedding-3-small") == 2


async def test_embeddings_are_deterministic_unit_vectors(
    fake: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    body: dict[str, Any] = {"model": "openai/dim=5", "input": "same text"}
    _, first, _ = await post(http, fake, "/embeddings", body)
    _, second, _ = await post(http, fake, root(fake) + "/embeddings", body)
    assert first == second
    reply = orjson.loads(first)
    assert reply["object"] == "list"
    assert reply["model"] == "openai/dim=5"
    vector = reply["data"][0]["embedding"]
    assert len(vector) == 5
    assert math.fsum(x * x for x in vector) == pytest.approx(1.0)

    # Token input: a list of ints is one input, a list of lists is several.
    _, raw, _ = await post(http, fake, "/embeddings", {"model": "e", "input": [1, 2, 3]})
    assert len(orjson.loads(raw)["data"]) == 1
    body = {"model": "e", "input": [[1, 2], [3]], "encoding_format": "base64"}
    _, raw, _ = await post(http, fake, "/embeddings", body)
    data = orjson.loads(raw)["data"]
    assert len(data) == 2
    floats = struct.unpack("<8f", base64.b64decode(data[0]["embedding"]))
    _, raw, _ = await post(http, fake, "/embeddings", {"model": "e", "input": "[1, 2]"})
    assert list(floats) == pytest.approx(orjson.loads(raw)["data"][0]["embedding"], abs=1e-6)


async def test_fail_first_then_succeed(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    model = "status=429,fail_first=2"
    statuses = [(await chat(http, fake, model))[0] for _ in range(4)]
    assert statuses == [429, 429, 200, 200]
    assert fake.calls(model) == 4
    default = "fail_first=1,id=default-status"
    assert [(await chat(http, fake, default))[0] for _ in range(2)] == [500, 200]
    # Resetting the counters restarts fail_first.
    fake.reset()
    assert (await chat(http, fake, model))[0] == 429


async def test_status_errors_and_retry_after(
    fake: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    body: dict[str, Any] = {"model": "status=429,retry_after=0.05", "messages": CONVERSATION}
    status, raw, response = await post(http, fake, "/chat/completions", body)
    assert status == 429
    assert response.headers["retry-after"] == "0.05"
    assert response.headers["retry-after-ms"] == "50"
    assert orjson.loads(raw) == {
        "error": {
            "message": "fake upstream error 429",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    for code, kind in [(503, "server_error"), (400, "invalid_request_error")]:
        status, reply = await chat(http, fake, f"status={code}")
        assert status == code
        assert reply["error"]["type"] == kind
    # Failures come before streaming: a plain JSON error, no SSE.
    body = {"model": "status=500", "messages": CONVERSATION, "stream": True}
    status, raw, response = await post(http, fake, "/chat/completions", body)
    assert (status, response.content_type) == (500, "application/json")
    assert orjson.loads(raw)["error"]["type"] == "server_error"
    status, raw, _ = await post(http, fake, "/embeddings", {"model": "status=502", "input": "x"})
    assert status == 502
    async with sdk(fake) as client:
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="status=429", messages=CONVERSATION)


async def test_stream_cut_ends_the_body_early(
    fake: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    body: dict[str, Any] = {"model": "cut=2", "messages": CONVERSATION, "stream": True}
    lines: list[bytes] = []
    async with http.post(fake.url + "/chat/completions", json=body) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await drain(response, lines)
    received = b"".join(lines)
    frames = [f for f in received.decode().split("\n\n") if f]
    assert len(frames) == 3  # the role chunk and two content chunks, nothing after
    assert b"[DONE]" not in received
    assert b'"finish_reason":"stop"' not in received


async def test_stream_cut_mid_stops_inside_a_character(
    fake: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    conversation = [{"role": "user", "content": "ça va très bien"}]
    body: dict[str, Any] = {"model": "cut_mid=1", "messages": conversation, "stream": True}
    pieces: list[bytes] = []

    async def read_all(response: aiohttp.ClientResponse) -> None:
        async for piece in response.content.iter_any():  # a torn last line too
            pieces.append(piece)

    async with http.post(fake.url + "/chat/completions", json=body) as response:
        with pytest.raises(aiohttp.ClientPayloadError):
            await read_all(response)
    received = b"".join(pieces)
    *frames, torn = received.split(b"\n\n")
    assert len(frames) == 2  # the role chunk and one content chunk, then part of the next
    assert torn.startswith(b"data: {")
    assert torn.endswith(b"\xc3")
    with pytest.raises(UnicodeDecodeError):
        torn.decode()


async def test_stream_stall_keeps_the_client_waiting(
    fake: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    body: dict[str, Any] = {"model": "stall=1", "messages": CONVERSATION, "stream": True}
    lines: list[bytes] = []
    async with http.post(fake.url + "/chat/completions", json=body) as response:
        assert response.status == 200
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(drain(response, lines), 0.3)
    payloads = [line for line in lines if line.startswith(b"data: ")]
    assert len(payloads) == 2  # role chunk and one content chunk, then silence


async def test_hang_never_sends_headers(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await post(http, fake, "/chat/completions", {"model": "hang", "messages": []})
    assert fake.calls("hang") == 1


async def test_latency_delays_the_answer(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    started = time.monotonic()
    status, _ = await chat(http, fake, "latency=100")
    assert status == 200
    assert time.monotonic() - started >= 0.1


async def test_malformed_is_not_json(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    body: dict[str, Any] = {"model": "malformed", "messages": CONVERSATION}
    status, raw, response = await post(http, fake, "/chat/completions", body)
    assert (status, response.content_type) == (200, "application/json")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    _, raw, _ = await post(http, fake, "/embeddings", {"model": "malformed", "input": "x"})
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)

    _, raw, _ = await post(http, fake, "/chat/completions", {**body, "stream": True})
    frames = raw.decode().split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""]
    assert orjson.loads(frames[0].removeprefix("data: "))["object"] == "chat.completion.chunk"
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(frames[1].removeprefix("data: "))


async def test_first_byte_sends_the_head_then_waits(
    fake: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    for stream in (False, True):
        body: dict[str, Any] = {"model": "first_byte=5000", "messages": CONVERSATION}
        async with http.post(fake.url + "/chat/completions", json={**body, "stream": stream}) as r:
            assert r.status == 200  # the head is here...
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(r.content.read(1), 0.2)  # ...its body is not
    status, reply = await chat(http, fake, "first_byte=20")
    assert status == 200
    assert reply["choices"][0]["message"]["content"] == ANSWER


async def test_no_usage_and_pad(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    status, reply = await chat(http, fake, "no_usage")
    assert status == 200
    assert "usage" not in reply
    body: dict[str, Any] = {
        "model": "no_usage",
        "messages": CONVERSATION,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    _, raw, _ = await post(http, fake, "/chat/completions", body)
    chunks = events(raw)
    assert all("usage" not in c and c["choices"] for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == ANSWER

    _, reply = await chat(http, fake, "pad=100000")
    assert reply["choices"][0]["message"]["content"] == ANSWER + " " + "x" * 100_000
    assert reply["usage"]["completion_tokens"] == 5


async def test_in_flight_counts_calls_being_answered(
    fake: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    body: dict[str, Any] = {"model": "stall=1,id=flight", "messages": CONVERSATION, "stream": True}
    async with http.post(fake.url + "/chat/completions", json=body) as response:
        await response.content.readline()
        assert fake.in_flight("stall=1,id=flight") == 1
    # The client left: the handler is cancelled with its connection.
    await eventually(lambda: fake.in_flight("stall=1,id=flight") == 0)
    await chat(http, fake, "id=flight-done")
    assert fake.in_flight("id=flight-done") == 0
    waiting = asyncio.create_task(chat(http, fake, "hang,id=flight"))
    await eventually(lambda: fake.in_flight("hang,id=flight") == 1)  # waiting, before headers
    waiting.cancel()
    await eventually(lambda: fake.in_flight("hang,id=flight") == 0)


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 5 s")


async def test_echo_headers(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    body: dict[str, Any] = {"model": "echo_headers", "messages": CONVERSATION}
    headers = {"Authorization": "Bearer sk-secret", "X-Trace": "t1"}
    async with http.post(fake.url + "/chat/completions", json=body, headers=headers) as response:
        seen = (await response.json())["x_received_headers"]
    assert seen["authorization"] == "Bearer sk-secret"
    assert seen["x-trace"] == "t1"


async def test_calls_reset_models_and_unknown_routes(
    fake: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    await chat(http, fake, "a")
    await chat(http, fake, "a")
    await post(http, fake, "/embeddings", {"model": "b", "input": "x"})
    async with http.get(root(fake) + "/_fake/calls", params={"model": "a"}) as r:
        assert await r.json() == {"model": "a", "calls": 2}
    async with http.get(root(fake) + "/_fake/calls") as r:
        assert await r.json() == {"total": 3, "by_model": {"a": 2, "b": 1}}
    assert (fake.calls(), fake.calls("a"), fake.calls("nope")) == (3, 2, 0)
    async with http.post(root(fake) + "/_fake/reset") as r:
        assert r.status == 200
    assert fake.calls() == 0

    async with http.get(fake.url + "/models") as r:
        ids = [m["id"] for m in (await r.json())["data"]]
    assert "gpt-4o-mini" in ids
    async with http.get(fake.url + "/nowhere") as r:
        assert r.status == 404
        assert (await r.json())["error"]["type"] == "invalid_request_error"
    async with http.get(fake.url + "/chat/completions") as r:
        assert r.status == 404

    status, reply = await chat(http, fake, "latency=soon")
    assert status == 400
    assert "latency=soon" in reply["error"]["message"]


def test_directive_grammar() -> None:
    directives = parse_directives(" openai/Latency=25 , stall=3,cut=1 ,hang,unknown=1,gpt-4o")
    assert directives.latency == 0.025
    assert (directives.stall, directives.cut, directives.hang) == (3, 1, True)
    assert parse_directives("gpt-4o-mini") == parse_directives("")
    assert parse_directives("retry_after=2").retry_after == ("2", "2000")
    directives = parse_directives("first_byte=250,no_usage,pad=3")
    assert (directives.first_byte, directives.no_usage, directives.pad) == (0.25, True, 3)


async def test_stop_is_prompt_with_a_hung_request() -> None:
    server = FakeUpstream()
    await server.start()
    async with aiohttp.ClientSession() as session:
        pending = asyncio.create_task(
            session.post(server.url + "/chat/completions", json={"model": "hang", "messages": []})
        )
        for _ in range(400):
            if server.calls("hang"):
                break
            await asyncio.sleep(0.005)
        started = time.monotonic()
        await server.stop()
        assert time.monotonic() - started < 2
        with pytest.raises(aiohttp.ClientError):
            await pending
    await server.stop()  # a second stop is harmless


def test_running_upstream_in_a_thread() -> None:
    with running_upstream() as fake:
        request = urllib.request.Request(
            fake.url + "/chat/completions",
            data=orjson.dumps({"model": "m", "messages": CONVERSATION}),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert orjson.loads(response.read())["choices"][0]["message"]["content"] == ANSWER
        assert fake.calls("m") == 1
        port = fake.port
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass


async def test_n_choices_and_fill_to_the_token_limit(
    fake: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    body: dict[str, Any] = {"model": "fill", "messages": CONVERSATION, "n": 3, "max_tokens": 7}
    status, raw, _ = await post(http, fake, "/chat/completions", body)
    reply = orjson.loads(raw)
    assert status == 200
    assert [c["index"] for c in reply["choices"]] == [0, 1, 2]
    assert {c["message"]["content"] for c in reply["choices"]} == {" ".join(["tok"] * 7)}
    assert {c["finish_reason"] for c in reply["choices"]} == {"length"}
    assert reply["usage"]["completion_tokens"] == 21

    stream = {**body, "stream": True, "stream_options": {"include_usage": True}}
    _, raw, _ = await post(http, fake, "/chat/completions", stream)
    chunks = events(raw)
    by_choice: dict[int, str] = {}
    for chunk in chunks[:-1]:
        (choice,) = chunk["choices"]
        by_choice[choice["index"]] = by_choice.get(choice["index"], "") + (
            choice["delta"].get("content") or ""
        )
    assert by_choice == {i: " ".join(["tok"] * 7) for i in range(3)}
    assert chunks[-1]["usage"]["completion_tokens"] == 21

    _, raw, _ = await post(http, fake, "/chat/completions", {**body, "model": "gpt-4o-mini"})
    assert orjson.loads(raw)["choices"][0]["message"]["content"] == ANSWER  # fill not asked


@pytest.mark.parametrize(
    ("field", "value"),
    [("n", 0), ("n", 129), ("n", "2"), ("temperature", 2.5), ("reasoning_effort", "extreme")],
)
async def test_out_of_range_parameters_are_400(
    fake: FakeUpstream, http: aiohttp.ClientSession, field: str, value: Any
) -> None:
    body = {"model": "gpt-4o-mini", "messages": CONVERSATION, field: value}
    status, raw, _ = await post(http, fake, "/chat/completions", body)
    assert status == 400
    assert orjson.loads(raw)["error"]["param"] == field


async def test_usage_directives_and_directives_in_the_address(
    fake: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    model = "gpt-4o-mini,prompt_tokens=900,cached=300,cache_write=200,reasoning_tokens=7"
    _, reply = await chat(http, fake, model)
    assert reply["usage"] == {
        "prompt_tokens": 900,
        "completion_tokens": 4 + 7,  # reasoning is among the completion's, as OpenAI counts
        "total_tokens": 911,
        "prompt_tokens_details": {"cached_tokens": 300, "cache_creation_tokens": 200},
        "completion_tokens_details": {"reasoning_tokens": 7},
    }
    # The same in the address: the model keeps its real name (and the price map's entry).
    address = fake.url.removesuffix("/v1") + "/_with/cached=3,reasoning_tokens=2/v1"
    body = {"model": "gpt-4o-mini", "messages": CONVERSATION, "temperature": 0.5}
    status, raw, _ = await post(http, fake, address + "/chat/completions", body)
    assert status == 200
    usage = orjson.loads(raw)["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 3}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 2}
    seen = fake.last_request("gpt-4o-mini")
    assert seen is not None
    assert seen.body == body  # what the request carried, parsed
    status, raw, _ = await post(
        http, fake, address + "/embeddings", {"model": "e,prompt_tokens=50", "input": "x"}
    )
    assert orjson.loads(raw)["usage"] == {"prompt_tokens": 50, "total_tokens": 50}
