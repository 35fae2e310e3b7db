"""Every field the gateway reads, enforces or prices is checked before anything is reserved or
sent upstream: a bad one gets a 400 in OpenAI's shape whose `param` names it, the edges of
OpenAI's documented ranges get through, and fields the gateway does not read pass untouched."""

from __future__ import annotations

import contextlib
import copy
import subprocess
import sys
from typing import Any

import httpx
import pytest

from gateway.calls.chat_body import MAX_OUTPUT_TOKENS, check_chat, check_embeddings
from gateway.core.errors import BadRequest
from tests.conftest import DEFAULT_MODELS, MASTER_KEY, ROOT, GatewayFactory, fake_model
from tests.fakes.upstream import FakeUpstream

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
ERROR_FIELDS = {"message", "type", "param", "code"}
# Unique model strings, so the upstream's call counts are this module's own.
CHAT_MODEL, EMBED_MODEL = "gpt-4o-mini id=chat-fields", "text-embedding-3-small id=chat-fields"
USER = [{"role": "user", "content": "hi"}]
CHAT = {"model": "fake", "messages": USER}
EMBED = {"model": "embed", "input": "hi"}
ABSENT = object()  # a field the case removes from the base body

FUNCTION = {"name": "get_weather", "description": "The weather.", "parameters": {"type": "object"}}
TOOL = {"type": "function", "function": FUNCTION}


def body(base: dict[str, Any], **fields: Any) -> dict[str, Any]:
    out = {**base, **fields}
    return {k: v for k, v in out.items() if v is not ABSENT}


def message(**fields: Any) -> list[dict[str, Any]]:
    """A conversation whose third message is the one under test."""
    return [*USER, {"role": "assistant", "content": "hello"}, fields]


def tools(**function: Any) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {**FUNCTION, **function}}]


# (body, the param the 400 must name)
BAD_CHAT: list[tuple[dict[str, Any], str]] = [
    (body(CHAT, model=ABSENT), "model"),
    (body(CHAT, model=5), "model"),
    (body(CHAT, model=""), "model"),
    (body(CHAT, messages=ABSENT), "messages"),
    (body(CHAT, messages=[]), "messages"),
    (body(CHAT, messages="hi"), "messages"),
    (body(CHAT, messages=[5]), "messages[0]"),
    (body(CHAT, messages=[{"content": "x"}]), "messages[0].role"),
    (body(CHAT, messages=[{"role": "robot", "content": "x"}]), "messages[0].role"),
    (body(CHAT, messages=[{"role": ["user"], "content": "x"}]), "messages[0].role"),
    (body(CHAT, messages=message(role="user")), "messages[2].content"),
    (body(CHAT, messages=message(role="user", content=5)), "messages[2].content"),
    (body(CHAT, messages=message(role="user", content=None)), "messages[2].content"),
    (body(CHAT, messages=message(role="system", content={"text": "x"})), "messages[2].content"),
    (body(CHAT, messages=message(role="tool", content=True)), "messages[2].content"),
    (body(CHAT, messages=message(role="assistant", content=7)), "messages[2].content"),
    (body(CHAT, messages=message(role="user", content=["x"])), "messages[2].content[0]"),
    (
        body(CHAT, messages=message(role="user", content=[{"text": "x"}])),
        "messages[2].content[0].type",
    ),
    (
        body(CHAT, messages=message(role="user", content=[{"type": "text", "text": 5}])),
        "messages[2].content[0].text",
    ),
    (body(CHAT, stream="yes"), "stream"),
    (body(CHAT, stream=1), "stream"),
    (body(CHAT, stream_options="usage"), "stream_options"),
    (
        body(CHAT, stream=True, stream_options={"include_usage": "yes"}),
        "stream_options.include_usage",
    ),
    (body(CHAT, max_tokens="lots"), "max_tokens"),
    (body(CHAT, max_tokens=-5), "max_tokens"),
    (body(CHAT, max_tokens=0), "max_tokens"),
    (body(CHAT, max_tokens=1e12), "max_tokens"),
    (body(CHAT, max_tokens=5.0), "max_tokens"),
    (body(CHAT, max_tokens=True), "max_tokens"),
    (body(CHAT, max_tokens=10**12), "max_tokens"),
    (body(CHAT, max_tokens=MAX_OUTPUT_TOKENS + 1), "max_tokens"),
    (body(CHAT, max_completion_tokens="10"), "max_completion_tokens"),
    (body(CHAT, max_completion_tokens=-1), "max_completion_tokens"),
    (body(CHAT, temperature="hot"), "temperature"),
    (body(CHAT, temperature=-0.1), "temperature"),
    (body(CHAT, temperature=2.5), "temperature"),
    (body(CHAT, temperature=True), "temperature"),
    (body(CHAT, top_p=1.5), "top_p"),
    (body(CHAT, top_p=-1), "top_p"),
    (body(CHAT, top_p="1"), "top_p"),
    (body(CHAT, n=0), "n"),
    (body(CHAT, n=129), "n"),
    (body(CHAT, n=1.5), "n"),
    (body(CHAT, n=True), "n"),
    (body(CHAT, n="2"), "n"),
    (body(CHAT, presence_penalty=3), "presence_penalty"),
    (body(CHAT, frequency_penalty=-2.5), "frequency_penalty"),
    (body(CHAT, frequency_penalty="none"), "frequency_penalty"),
    (body(CHAT, seed=1.5), "seed"),
    (body(CHAT, seed="1"), "seed"),
    (body(CHAT, seed=False), "seed"),
    (body(CHAT, stop=5), "stop"),
    (body(CHAT, stop=["a", "b", "c", "d", "e"]), "stop"),
    (body(CHAT, stop=["a", 5]), "stop[1]"),
    (body(CHAT, user=5), "user"),
    (body(CHAT, user={"id": 1}), "user"),
    (body(CHAT, tools="get_weather"), "tools"),
    (body(CHAT, tools=[5]), "tools[0]"),
    (body(CHAT, tools=[TOOL, {"type": "function"}]), "tools[1].function"),
    (body(CHAT, tools=[{"type": "fn", "function": FUNCTION}]), "tools[0].type"),
    (body(CHAT, tools=[{"function": FUNCTION}]), "tools[0].type"),
    (body(CHAT, tools=tools(name="get weather!")), "tools[0].function.name"),
    (body(CHAT, tools=tools(name="x" * 65)), "tools[0].function.name"),
    (body(CHAT, tools=tools(name="")), "tools[0].function.name"),
    (body(CHAT, tools=tools(name=None)), "tools[0].function.name"),
    (body(CHAT, tools=tools(description=5)), "tools[0].function.description"),
    (body(CHAT, tools=tools(parameters="object")), "tools[0].function.parameters"),
    (body(CHAT, tools=[{"type": "custom"}]), "tools[0].custom"),
    (body(CHAT, tools=[{"type": "custom", "custom": {"name": 5}}]), "tools[0].custom.name"),
    (body(CHAT, tool_choice="sometimes"), "tool_choice"),
    (body(CHAT, tool_choice=5), "tool_choice"),
    (body(CHAT, tool_choice={"type": "tool"}), "tool_choice.type"),
    (body(CHAT, tool_choice={"type": "function"}), "tool_choice.function"),
    (
        body(CHAT, tool_choice={"type": "function", "function": {"name": 5}}),
        "tool_choice.function.name",
    ),
    (body(CHAT, tool_choice={"type": "allowed_tools"}), "tool_choice.allowed_tools"),
    (body(CHAT, logprobs="yes"), "logprobs"),
    (body(CHAT, top_logprobs=21), "top_logprobs"),
    (body(CHAT, top_logprobs=-1), "top_logprobs"),
    (body(CHAT, top_logprobs=1.5), "top_logprobs"),
    (body(CHAT, response_format="json"), "response_format"),
    (body(CHAT, response_format={"type": "xml"}), "response_format.type"),
    (body(CHAT, response_format={}), "response_format.type"),
]

VALID_CHAT: list[dict[str, Any]] = [
    body(CHAT, temperature=0),
    body(CHAT, temperature=2),
    body(CHAT, temperature=0.7, top_p=1),
    body(CHAT, top_p=0),
    body(CHAT, max_tokens=1),
    body(CHAT, max_completion_tokens=MAX_OUTPUT_TOKENS),
    body(CHAT, n=1),
    body(CHAT, n=128, max_tokens=1),
    body(CHAT, presence_penalty=-2, frequency_penalty=2.0),
    body(CHAT, seed=0),
    body(CHAT, seed=-(2**63)),
    body(CHAT, stop="END"),
    body(CHAT, stop=["a", "b", "c", "d"]),
    body(CHAT, stop=[]),
    body(CHAT, user="u-1"),
    body(CHAT, user=""),
    body(CHAT, stream=False),
    body(CHAT, stream=True),
    body(CHAT, stream=True, stream_options={"include_usage": True}),
    body(CHAT, stream=True, stream_options={}),
    body(CHAT, logprobs=True, top_logprobs=0),
    body(CHAT, logprobs=True, top_logprobs=20),
    body(CHAT, response_format={"type": "text"}),
    body(CHAT, response_format={"type": "json_object"}),
    body(CHAT, response_format={"type": "json_schema", "json_schema": {"name": "x"}}),
    body(CHAT, tools=[TOOL], tool_choice="auto"),
    body(CHAT, tools=[TOOL], tool_choice="required"),
    body(CHAT, tools=[TOOL], tool_choice="none"),
    body(CHAT, tools=tools(name="a"), tool_choice={"type": "function", "function": {"name": "a"}}),
    body(CHAT, tools=[{"type": "function", "function": {"name": "A-b_9" + "x" * 59}}]),
    body(CHAT, tools=[]),
    body(CHAT, tools=[{"type": "custom", "custom": {"name": "grep"}}]),
    body(
        CHAT,
        tools=[TOOL],
        tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [TOOL]}},
    ),
    body(
        CHAT,
        messages=[
            {"role": "developer", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                ],
            },
        ],
    ),
    body(
        CHAT,
        tools=[TOOL],
        messages=[
            *USER,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "assistant", "tool_calls": []},  # no content at all
            *USER,
        ],
    ),
    # Explicit nulls are absent fields, as OpenAI reads them.
    body(
        CHAT,
        max_tokens=None,
        max_completion_tokens=None,
        temperature=None,
        top_p=None,
        n=None,
        stream=None,
        stream_options=None,
        stop=None,
        user=None,
        seed=None,
        tools=None,
        tool_choice=None,
        response_format=None,
    ),
    # Fields the gateway does not read are the provider's business.
    body(CHAT, metadata={"a": "b"}, reasoning_effort="low", x_vendor=[1, {"z": None}]),
]

BAD_EMBEDDINGS: list[tuple[dict[str, Any], str]] = [
    (body(EMBED, model=ABSENT), "model"),
    (body(EMBED, model=["embed"]), "model"),
    (body(EMBED, input=ABSENT), "input"),
    (body(EMBED, input=None), "input"),
    (body(EMBED, input=""), "input"),
    (body(EMBED, input=[]), "input"),
    (body(EMBED, input=5), "input"),
    (body(EMBED, input={"text": "hi"}), "input"),
    (body(EMBED, input=["a", ""]), "input[1]"),
    (body(EMBED, input=["a", 5]), "input[1]"),
    (body(EMBED, input=["a", None]), "input[1]"),
    (body(EMBED, input=[1, "a"]), "input[1]"),
    (body(EMBED, input=[1, 2.5]), "input[1]"),
    (body(EMBED, input=[True]), "input[0]"),
    (body(EMBED, input=[1, -1]), "input[1]"),
    (body(EMBED, input=[[1, 2], []]), "input[1]"),
    (body(EMBED, input=[[1, 2], [3, "x"]]), "input[1][1]"),
    (body(EMBED, input=[[1], 2]), "input[1]"),
    (body(EMBED, input=[{"a": 1}]), "input[0]"),
    (body(EMBED, input=[[1], [[2]]]), "input[1][0]"),
    (body(EMBED, input=[1, [2]]), "input[1]"),
    (body(EMBED, input=[[1], []]), "input[1]"),
    (body(EMBED, input=[[]]), "input[0]"),
    (body(EMBED, input=[[1, None]]), "input[0][1]"),
    (body(EMBED, input=[[1, 1e3]]), "input[0][1]"),
    (body(EMBED, input=[[1, True]]), "input[0][1]"),
    (body(EMBED, input=[[2, -3]]), "input[0][1]"),
    (body(EMBED, input=[7, 1.0]), "input[1]"),
    (body(EMBED, dimensions=0), "dimensions"),
    (body(EMBED, dimensions=-8), "dimensions"),
    (body(EMBED, dimensions=8.0), "dimensions"),
    (body(EMBED, dimensions="8"), "dimensions"),
    (body(EMBED, dimensions=True), "dimensions"),
    (body(EMBED, encoding_format="hex"), "encoding_format"),
    (body(EMBED, encoding_format=5), "encoding_format"),
    (body(EMBED, user=5), "user"),
]

VALID_EMBEDDINGS: list[dict[str, Any]] = [
    body(EMBED, input="a"),
    body(EMBED, input=["a", "b"]),
    body(EMBED, input=[0, 1, 2]),
    body(EMBED, input=[[1, 2], [3]]),
    body(EMBED, input=[[0]]),
    body(EMBED, input=list(range(8000))),
    body(EMBED, input=[list(range(1000))] * 8),
    body(EMBED, dimensions=8),
    body(EMBED, encoding_format="float"),
    body(EMBED, encoding_format="base64"),
    body(EMBED, user="u-1"),
    body(EMBED, dimensions=None, encoding_format=None, user=None),
    body(EMBED, x_vendor={"truncate": "END"}),
]


@pytest.fixture
def base(gateway: GatewayFactory, upstream: FakeUpstream) -> str:
    models = [
        *DEFAULT_MODELS,
        fake_model(upstream, "fake", CHAT_MODEL),
        fake_model(upstream, "embed", EMBED_MODEL),
    ]
    return gateway({"model_list": models})


def wrong_answers(base: str, path: str, cases: list[tuple[dict[str, Any], str]]) -> list[str]:
    wrong: list[str] = []
    with httpx.Client(base_url=base, headers=AUTH, timeout=30) as client:
        for sent, param in cases:
            response = client.post(path, json=sent)
            error = response.json().get("error", {}) if response.content else {}
            if (
                response.status_code != 400
                or set(error) != ERROR_FIELDS
                or error["param"] != param
                or error["type"] != "invalid_request_error"
                or f"'{param}'" not in error["message"]
            ):
                wrong.append(f"{sent!r:.120} -> {response.status_code} {response.text[:300]}")
    return wrong


def test_bad_chat_fields_get_a_400_naming_the_field(base: str, upstream: FakeUpstream) -> None:
    calls = upstream.calls(CHAT_MODEL)
    wrong = wrong_answers(base, "/v1/chat/completions", BAD_CHAT)
    assert not wrong, f"{len(wrong)} of {len(BAD_CHAT)}:\n" + "\n".join(wrong)
    assert upstream.calls(CHAT_MODEL) == calls  # none of them went upstream


def test_bad_embeddings_fields_get_a_400_naming_the_field(
    base: str, upstream: FakeUpstream
) -> None:
    calls = upstream.calls(EMBED_MODEL)
    wrong = wrong_answers(base, "/v1/embeddings", BAD_EMBEDDINGS)
    assert not wrong, f"{len(wrong)} of {len(BAD_EMBEDDINGS)}:\n" + "\n".join(wrong)
    assert upstream.calls(EMBED_MODEL) == calls


def test_messages_say_what_was_sent_and_what_is_expected(base: str) -> None:
    with httpx.Client(base_url=base, headers=AUTH, timeout=30) as client:
        for sent, expected in (
            (
                body(CHAT, temperature="hot"),
                "'temperature' must be a number from 0 to 2, not 'hot'.",
            ),
            (body(CHAT, max_tokens=True), "not true"),
            (body(CHAT, max_tokens=1e12), "not 1000000000000.0"),
            (body(CHAT, n=0), "from 1 to 128, not 0"),
            (body(CHAT, user="x" * 1000, stop=7), "'stop' must be"),
            (body(CHAT, top_p="t" * 500), "not '" + "t" * 37 + "...'."),  # shortened
            (body(CHAT, messages=[{"role": "user", "content": list(range(10**4))}]), "not 0"),
        ):
            error = client.post("/v1/chat/completions", json=sent).json()["error"]
            assert expected in error["message"], error
            assert len(error["message"]) < 300, error


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions"])
def test_valid_edge_chat_bodies_are_served(base: str, path: str) -> None:
    wrong: list[str] = []
    with httpx.Client(base_url=base, headers=AUTH, timeout=30) as client:
        for sent in VALID_CHAT:
            response = client.post(path, json=sent)
            if response.status_code != 200:
                wrong.append(f"{sent!r:.200} -> {response.status_code} {response.text[:300]}")
    assert not wrong, "\n".join(wrong)


def test_valid_edge_embeddings_bodies_are_served(base: str) -> None:
    wrong: list[str] = []
    with httpx.Client(base_url=base, headers=AUTH, timeout=30) as client:
        for sent in VALID_EMBEDDINGS:
            response = client.post("/v1/embeddings", json=sent)
            if response.status_code != 200:
                wrong.append(f"{sent!r:.200} -> {response.status_code} {response.text[:300]}")
    assert not wrong, "\n".join(wrong)


def test_the_local_echo_model_gets_the_same_checks(base: str) -> None:
    with httpx.Client(base_url=base, headers=AUTH, timeout=30) as client:
        refused = client.post(
            "/v1/chat/completions", json=body(CHAT, model="local/echo", max_tokens="lots")
        )
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "max_tokens"
        served = client.post(
            "/v1/chat/completions", json=body(CHAT, model="local/echo", max_tokens=1)
        )
        assert served.status_code == 200, served.text


def test_checks_leave_the_body_as_it_was() -> None:
    for sent in [*VALID_CHAT, *(b for b, _ in BAD_CHAT)]:
        before = copy.deepcopy(sent)
        with contextlib.suppress(BadRequest):
            check_chat(sent)
        assert sent == before
    for sent in [*VALID_EMBEDDINGS, *(b for b, _ in BAD_EMBEDDINGS)]:
        before = copy.deepcopy(sent)
        with contextlib.suppress(BadRequest):
            check_embeddings(sent)
        assert sent == before


def test_token_ids_beyond_json_integers_are_named_too() -> None:
    """Code without HTTP may hand over what no JSON parser would produce."""
    with pytest.raises(BadRequest) as caught:
        check_embeddings({"model": "embed", "input": [[1], [2**70, -1]]})
    assert caught.value.param == "input[1][1]"


def test_the_checks_stand_without_the_http_layer() -> None:
    """The call pipeline (and code without HTTP: batches, brokers, evals) uses them too."""
    code = (
        "import sys, gateway.calls.chat_body; "
        "print(sorted(m for m in sys.modules if m.startswith('gateway.api')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
