"""Fuzzing the HTTP surface: schemathesis against the gateway's own OpenAPI document, and
hypothesis against the request-body parser and the proxied routes' body checks. Any input
gets an answer that matches its declared schema or a clear 4xx in the OpenAI error shape,
never a 5xx or a crash.

Budgets are fixed and generation is derandomized, so a run is repeatable and CI stays short
(FUZZ_EXAMPLES scales them, e.g. FUZZ_EXAMPLES=10 for a long local run).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance
from starlette.requests import Request

from gateway.api.deps import SERIALIZABLE_DEPTH, check_json, read_json
from gateway.core.errors import BadRequest, GatewayError
from tests.conftest import DEFAULT_MODELS, MASTER_KEY, GatewayFactory, fake_model
from tests.fakes.upstream import FakeUpstream

pytestmark = pytest.mark.slow

SCALE = int(os.environ.get("FUZZ_EXAMPLES", "1"))
# Per operation and generation mode: 38 operations make about 500 requests in all.
POSITIVE_EXAMPLES = 8 * SCALE
NEGATIVE_EXAMPLES = 6 * SCALE
BODY_EXAMPLES = 300 * SCALE
CHAT_EXAMPLES = 150 * SCALE

ERROR_FIELDS = {"message", "type", "param", "code"}
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
PROMPT = """---
model: local/echo
input:
  schema:
    name: string
---
{{role "user"}}
Hello {{name}}
"""


def fixed(examples: int) -> settings:
    """Repeatable, bounded runs: no example database, no shrinking, no deadline (the server
    shares two cores with the rest of the suite)."""
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def problem(response: httpx.Response | Any, status: int, text: str) -> str | None:
    """What is wrong with an answer, if anything: a 5xx, or an error not in its protocol's
    shape (OpenAI's; the Open Inference Protocol's `{"error": "..."}` under /v2)."""
    if status >= 500:
        return f"{status}: {text[:300]}"
    if status < 400:
        return None
    try:
        error = json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        return f"{status} without an OpenAI error body: {text[:300]}"
    if urlsplit(str(response.request.url)).path.startswith("/v2"):
        return None if isinstance(error, str) and error else f"{status} malformed: {text[:300]}"
    if set(error) != ERROR_FIELDS or not isinstance(error["message"], str) or not error["message"]:
        return f"{status} with a malformed error: {text[:300]}"
    return None


def unlike_its_schema(case: schemathesis.Case, response: Any) -> str | None:
    """A 2xx answer that does not match the schema /openapi.json declares for it."""
    try:
        case.validate_response(response, checks=[response_schema_conformance])
    except FailureGroup as failures:
        return f"{response.status_code} unlike its schema: {str(failures)[:500]}"
    return None


@pytest.fixture
def served(gateway: GatewayFactory, upstream: FakeUpstream, tmp_path: Path) -> str:
    """Models of both kinds of provider (in-process and the loopback upstream), a prompt."""
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "greet.prompt").write_text(PROMPT)
    models = [*DEFAULT_MODELS, fake_model(upstream, "fake", "gpt-4o-mini")]
    return gateway({"model_list": models}, prompts_dir=prompts)


def test_schemathesis_finds_no_server_error(served: str) -> None:
    schema = schemathesis.openapi.from_url(f"{served}/openapi.json", timeout=30)
    failures: list[str] = []
    sent = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30  # the document lists the admin, prompt, eval, registry routes
    for operation in operations:
        for mode, examples in (
            (GenerationMode.POSITIVE, POSITIVE_EXAMPLES),
            (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES),
        ):
            strategy = operation.as_strategy(generation_mode=mode, headers=dict(AUTH))

            @fixed(examples)
            @given(case=strategy)
            def probe(case: schemathesis.Case) -> None:
                nonlocal sent
                response = case.call(base_url=served, timeout=30)
                sent += 1
                wrong = problem(response, response.status_code, response.text)
                if wrong is None and response.status_code < 300:
                    wrong = unlike_its_schema(case, response)
                if wrong is not None and len(failures) < 30:
                    failures.append(f"{wrong}\n    {case.as_curl_command()}")

            try:
                probe()
            except Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE  # nothing in it can be made invalid
    assert not failures, f"{len(failures)} bad answers of {sent}:\n" + "\n".join(failures)
    print(f"schemathesis: {sent} requests")  # the figure docs/reliability.md quotes
    assert sent >= 150  # the budget was spent, not skipped


# --- the request-body parser ----------------------------------------------------------------


def request_of(body: bytes, content_type: str | None) -> Request:
    headers = [(b"content-type", content_type.encode("latin-1"))] if content_type else []
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop() if chunks else {"type": "http.disconnect"}

    return Request(scope, receive)


def parse(body: bytes, content_type: str | None = "application/json") -> Any:
    """The parsed body, or the GatewayError it raised (anything else fails the test)."""

    async def go() -> Any:
        try:
            return await read_json(request_of(body, content_type))
        except GatewayError as exc:
            return exc

    return asyncio.run(go())


def json_values(max_leaves: int = 30) -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=max_leaves,
    )


def nested(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


def assert_clear(result: Any) -> None:
    if isinstance(result, GatewayError):
        assert result.status in (400, 415), result.status
        assert result.message
        assert set(result.body()["error"]) == ERROR_FIELDS
    else:
        body, size = result
        assert isinstance(body, dict)
        assert size > 0


@fixed(BODY_EXAMPLES)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_get_a_clear_400(raw: bytes) -> None:
    assert_clear(parse(raw))


@fixed(BODY_EXAMPLES)
@given(json_values())
def test_any_json_parses_or_names_what_is_wrong(value: Any) -> None:
    # Python's encoder writes NaN and Infinity, as some clients do.
    raw = json.dumps({"v": value}).encode()
    result = parse(raw)
    assert_clear(result)
    if isinstance(result, GatewayError):
        assert any(w in raw for w in (b"NaN", b"Infinity")), result.message
        assert str(result.param).startswith("v")
    else:
        assert result[0] == orjson.loads(raw)


def unstorable(value: Any) -> bool:
    """A NUL character in a key or a string, or a non-finite number, anywhere."""
    if isinstance(value, dict):
        return any("\x00" in k or unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(unstorable(v) for v in value)
    if isinstance(value, float):
        return not math.isfinite(value)
    return isinstance(value, str) and "\x00" in value


@fixed(BODY_EXAMPLES)
@given(json_values())
def test_stored_values_are_checked_and_the_field_named(value: Any) -> None:
    """What the admin routes store: a NUL anywhere, or a non-finite number, is named."""
    if unstorable(value):
        with pytest.raises(BadRequest) as caught:
            check_json({"v": value}, text=True)
        assert str(caught.value.param).startswith("v")
    else:
        check_json({"v": value}, text=True)


@fixed(BODY_EXAMPLES)
@given(st.integers(min_value=1, max_value=400))
def test_nesting_is_bounded_and_named(levels: int) -> None:
    """Proxied bodies may nest as deep as they can be forwarded (orjson's limit), no deeper."""
    result = parse(nested(levels))
    if levels <= SERIALIZABLE_DEPTH:
        assert result[0]["a"] is not None
        orjson.dumps(result[0])  # and it can be forwarded
    else:
        assert isinstance(result, GatewayError)
        assert result.status == 400
        assert "nested deeper" in result.message
        assert result.param == "a"


@fixed(BODY_EXAMPLES)
@given(
    st.one_of(
        st.none(),
        st.text(st.characters(max_codepoint=255), max_size=40),  # header bytes are Latin-1
        st.sampled_from(
            [
                "application/json",
                "application/json; charset=utf-8",
                "APPLICATION/JSON;charset=UTF-8",
                "application/vnd.api+json",
                "text/plain",
                "application/x-www-form-urlencoded",
                "application/json; charset=latin-1",
                "multipart/form-data; boundary=x",
            ]
        ),
    )
)
def test_any_content_type_is_accepted_as_json_or_refused_with_415(content_type: Any) -> None:
    result = parse(b'{"model": "m"}', content_type)
    assert_clear(result)
    if isinstance(result, GatewayError):
        assert result.status == 415
        assert result.param == "content-type"


# --- the proxied routes' body checks, over HTTP -----------------------------------------------


def mostly(valid: st.SearchStrategy[Any], fuzz: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A valid value nine times in ten, so that many requests get past the first check and
    the fuzzed field is the one that is checked."""
    # Not 0: hypothesis starts from the simplest values.
    return st.integers(0, 9).flatmap(lambda pick: fuzz if pick == 9 else valid)


MODELS = ["local/echo", "fake", "local/echo", "fake", "missing"]
ROLES = ["system", "user", "assistant", "developer"]
content = mostly(
    st.text(max_size=40),
    st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=10)}))
    | json_values(8),
)
message = mostly(
    st.fixed_dictionaries({"role": st.sampled_from(ROLES), "content": content}),
    st.dictionaries(st.sampled_from(["role", "content", "name", "tool_calls"]), json_values(4))
    | json_values(4),
)
small = st.integers(min_value=1, max_value=4)
chat_bodies = st.fixed_dictionaries(
    {
        "model": mostly(st.sampled_from(MODELS), json_values(2)),
        "messages": mostly(st.lists(message, min_size=1, max_size=3), json_values(4)),
    },
    optional={
        "stream": mostly(st.booleans(), json_values(2)),
        "stream_options": mostly(st.just({"include_usage": True}), json_values(3)),
        "n": mostly(small, st.integers(min_value=-5, max_value=10**20) | json_values(2)),
        "max_tokens": mostly(small, st.integers(min_value=-5, max_value=10**20) | json_values(2)),
        "temperature": mostly(st.floats(0, 2), json_values(2)),
        "user": json_values(2),
        "input": mostly(st.text(max_size=20) | st.lists(st.text(max_size=10)), json_values(6)),
        "prompt": mostly(
            st.fixed_dictionaries(
                {"name": st.just("greet")},
                optional={
                    "variables": st.fixed_dictionaries({"name": mostly(st.text(), json_values(3))})
                },
            ),
            json_values(4),
        ),
    },
)


@pytest.fixture
def client(served: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served, headers=AUTH, timeout=30) as http:
        yield http


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings"])
def test_proxied_bodies_get_an_answer_or_a_clear_error(client: httpx.Client, path: str) -> None:
    failures: list[str] = []

    @fixed(CHAT_EXAMPLES)
    @given(chat_bodies)
    def probe(body: dict[str, Any]) -> None:
        raw = json.dumps(body)  # Python's encoder: big integers, NaN and Infinity go out too
        response = client.post(path, content=raw)
        wrong = problem(response, response.status_code, response.text)
        if wrong is not None and len(failures) < 20:
            failures.append(f"{wrong}\n    {raw[:300]}")

    probe()
    assert not failures, "\n".join(failures)
