"""The OpenAI surface, driven with the official SDK: chat, streaming, embeddings, models."""

from __future__ import annotations

import math

import pytest

from tests.conftest import DEFAULT_MODELS, GatewayFactory, fake_model, sdk
from tests.fakes.upstream import FakeUpstream


def test_chat_with_local_echo(gateway: GatewayFactory) -> None:
    client = sdk(gateway())
    raw = client.chat.completions.with_raw_response.create(
        model="local/echo",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "the quick brown fox"},
        ],
    )
    reply = raw.parse()
    assert reply.choices[0].message.content == "the quick brown fox"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (6, 4)
    assert len(raw.headers["x-gateway-request-id"]) == 24
    assert raw.headers["x-gateway-model"] == "local/echo#0"
    assert float(raw.headers["x-gateway-cost-usd"]) == 0.0
    assert float(raw.headers["x-gateway-overhead-ms"]) >= 0.0


def test_echo_respects_max_tokens(gateway: GatewayFactory) -> None:
    reply = sdk(gateway()).chat.completions.create(
        model="local/echo", messages=[{"role": "user", "content": "a b c d e"}], max_tokens=2
    )
    assert reply.choices[0].message.content == "a b"
    assert reply.choices[0].finish_reason == "length"


def test_echo_answers_verbatim_whitespace_included(gateway: GatewayFactory) -> None:
    """Whitespace-sensitive suites (equals, starts-with) can be shown offline on local/echo."""
    client = sdk(gateway())
    text = "  Hello,\tWorld! \n\nsecond  line \n"
    reply = client.chat.completions.create(
        model="local/echo", messages=[{"role": "user", "content": text}]
    )
    assert reply.choices[0].message.content == text
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 4
    cut = client.chat.completions.create(
        model="local/echo", messages=[{"role": "user", "content": text}], max_tokens=2
    )
    assert cut.choices[0].message.content == "  Hello,\tWorld!"
    assert cut.choices[0].finish_reason == "length"
    stream = client.chat.completions.create(
        model="local/echo", messages=[{"role": "user", "content": text}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == text


def test_stream_with_usage_chunk(gateway: GatewayFactory) -> None:
    stream = sdk(gateway()).chat.completions.create(
        model="local/echo",
        messages=[{"role": "user", "content": "stream these four words"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "stream these four words"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_stream_without_usage_has_no_usage_chunk(gateway: GatewayFactory) -> None:
    chunks = list(
        sdk(gateway()).chat.completions.create(
            model="local/echo", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_proxied_chat_and_stream_through_upstream(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    config = {"model_list": [fake_model(upstream, "gpt-test", "gpt-4o-mini")]}
    client = sdk(gateway(config))
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": "ping pong"}]
    )
    assert raw.parse().choices[0].message.content == "echo: ping pong"
    assert raw.headers["x-gateway-model"] == "gpt-test#0"
    chunks = list(
        client.chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": "ping pong"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "echo: ping pong"
    )
    assert chunks[-1].usage is not None


def test_cost_header_uses_litellm_price_map(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    # "gpt-4o-mini" is priced in litellm's bundled map; the fake reports word-count usage.
    config = {"model_list": [fake_model(upstream, "mini", "gpt-4o-mini")]}
    raw = sdk(gateway(config)).chat.completions.with_raw_response.create(
        model="mini", messages=[{"role": "user", "content": "one two three"}]
    )
    usage = raw.parse().usage
    assert usage is not None
    cost = float(raw.headers["x-gateway-cost-usd"])
    assert cost > 0
    # gpt-4o-mini: $0.15 / 1M input tokens, $0.60 / 1M output tokens.
    expected = usage.prompt_tokens * 0.15e-6 + usage.completion_tokens * 0.6e-6
    assert cost == pytest.approx(expected, rel=1e-6)


def test_config_prices_override_the_map(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    entry = fake_model(upstream, "priced", "gpt-4o-mini")
    entry["model_info"] = {"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}
    raw = sdk(gateway({"model_list": [entry]})).chat.completions.with_raw_response.create(
        model="priced", messages=[{"role": "user", "content": "one two"}]
    )
    usage = raw.parse().usage
    assert usage is not None
    assert float(raw.headers["x-gateway-cost-usd"]) == pytest.approx(
        usage.prompt_tokens * 0.001 + usage.completion_tokens * 0.002
    )


def test_models_list_shows_aliases(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    config = {"model_list": [*DEFAULT_MODELS, fake_model(upstream, "gpt-test", "x")]}
    client = sdk(gateway(config))
    ids = [m.id for m in client.models.list()]
    assert ids == ["local/echo", "local/all-MiniLM-L6-v2", "gpt-test"]
    assert client.models.retrieve("gpt-test").id == "gpt-test"


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@pytest.mark.slow
def test_local_embeddings_are_real_minilm_vectors(gateway: GatewayFactory) -> None:
    client = sdk(gateway(), timeout=120)
    texts = ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock prices fell."]
    result = client.embeddings.create(model="local/all-MiniLM-L6-v2", input=texts)
    vectors = [d.embedding for d in result.data]
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert math.isclose(math.sqrt(sum(x * x for x in vectors[0])), 1.0, rel_tol=1e-4)
    assert _cosine(vectors[0], vectors[1]) > 0.6 > _cosine(vectors[0], vectors[2])
    assert result.usage.prompt_tokens > 0
    # Same text, float encoding this time: the same vector (the SDK defaults to base64).
    again = client.embeddings.create(
        model="local/all-MiniLM-L6-v2", input=texts[0], encoding_format="float"
    )
    assert again.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)


def test_embeddings_through_upstream(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    entry = fake_model(upstream, "embed", "text-embedding-3-small")
    result = sdk(gateway({"model_list": [entry]})).embeddings.create(
        model="embed", input=["a", "b"]
    )
    assert len(result.data) == 2
    assert len(result.data[0].embedding) == 8


def test_health_endpoints_need_no_key(gateway: GatewayFactory) -> None:
    import httpx

    base = gateway()
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{base}/readyz").json()["status"] == "ready"
