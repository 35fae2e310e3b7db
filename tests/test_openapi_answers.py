"""Every answer is described: each route in /openapi.json declares the schema of its 2xx
answer, so clients, code generators and the fuzzer (tests/test_fuzz_http.py checks answers
against these schemas) know what comes back."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory

# Proxied to the provider: the answer is the upstream's, as OpenAI documents it.
PROXIED = {"/v1/chat/completions", "/v1/embeddings"}
# Routes whose answers are not described yet (none): a route that gains a model must leave it.
PENDING: set[str] = set()
DOCS = {"/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"}
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def openapi(gateway: GatewayFactory) -> dict[str, Any]:
    # Built on first request (FastAPI caches it): a loaded machine may take seconds.
    response = httpx.get(f"{gateway()}/openapi.json", timeout=60)
    assert response.status_code == 200
    found: dict[str, Any] = response.json()
    return found


def resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    found: dict[str, Any] = components[ref.removeprefix("#/components/schemas/")]
    return found


def describes(schema: dict[str, Any], components: dict[str, Any]) -> bool:
    """Names fields (or alternatives that do), rather than `{}` or any object: a list of
    described items, or the one value it can be (LiteLLM's "I'm alive!"), describe too."""
    schema = resolve(schema, components)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return all(describes(s, components) for s in schema[key])
    if schema.get("type") == "array":
        return describes(schema.get("items", {}), components)
    return bool(schema.get("properties")) or "const" in schema


def answers(openapi: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The 2xx answers of every operation, by (method, path)."""
    found = {}
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            if method in METHODS:
                ok = {c: r for c, r in operation["responses"].items() if c.startswith("2")}
                found[(method, path)] = ok
    return found


def test_every_route_declares_its_answer(openapi: dict[str, Any]) -> None:
    components = openapi["components"]["schemas"]
    vague = []
    for (method, path), responses in answers(openapi).items():
        if path in PROXIED | PENDING | DOCS:
            continue
        assert responses, f"{method.upper()} {path} declares no 2xx answer"
        for status, response in responses.items():
            content = response.get("content", {})
            json_schema = content.get("application/json", {}).get("schema")
            if json_schema is not None:
                if not describes(json_schema, components):
                    vague.append(f"{method.upper()} {path} {status}: {json_schema}")
                continue
            # Not JSON (Prometheus text): the media type and a schema must still be named.
            assert content, f"{method.upper()} {path} {status} declares no content"
            for media, body in content.items():
                assert body.get("schema", {}).get("type") == "string", (path, media, body)
    assert not vague, "answers described as any JSON:\n" + "\n".join(vague)


def test_pending_routes_are_still_pending(openapi: dict[str, Any]) -> None:
    """Keeps PENDING honest: a route that gained a model leaves the list."""
    components = openapi["components"]["schemas"]
    for (_, path), responses in answers(openapi).items():
        if path in PENDING:
            schema = responses["200"]["content"]["application/json"]["schema"]
            assert not describes(schema, components), f"{path} is described: drop it from PENDING"


def test_answers_of_one_kind_share_one_model(openapi: dict[str, Any]) -> None:
    """Declared once: prompts and the registry take the same LabelMove; keys list KeyInfo."""
    paths = openapi["paths"]

    def body(path: str, method: str) -> str:
        content = paths[path][method]["requestBody"]["content"]["application/json"]
        ref: str = content["schema"]["$ref"]
        return ref

    def answer(path: str, method: str) -> str:
        ref: str = paths[path][method]["responses"]["200"]["content"]["application/json"]["schema"][
            "$ref"
        ]
        return ref

    assert body("/v1/prompts/{name}/labels", "post") == "#/components/schemas/LabelMove"
    assert body("/v1/registry/models/{name}/labels/{label}", "put") == (
        "#/components/schemas/LabelMove"
    )
    assert answer("/v1/keys/{key_id}", "get") == answer("/v1/keys/{key_id}", "patch")
    schemas = openapi["components"]["schemas"]
    created = schemas[answer("/v1/keys", "post").rsplit("/", 1)[1]]["properties"]
    info = schemas[answer("/v1/keys/{key_id}", "patch").rsplit("/", 1)[1]]["properties"]
    assert set(created) - set(info) == {"key"}  # the secret, in the creation's answer only
