"""Hostile input on every write route: non-finite and huge numbers, NUL bytes, over-long
strings, deep nesting, trailing newlines and foreign content types get a 400 (or 415) naming
what was wrong, on SQLite and PostgreSQL, and the gateway keeps working afterwards."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from gateway.core.errors import BadRequest
from gateway.core.model_refs import check_label, check_name, check_ref
from gateway.identity.keys import KeyStore
from gateway.prompts.store import normalize_target
from tests.conftest import DEFAULT_MODELS, MASTER_KEY, GatewayFactory, sdk
from tests.test_registry_store import eval_report

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
USER = [{"role": "user", "content": "hi"}]


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"x": value}
    return value


def report(**candidate: Any) -> bytes:
    body = eval_report("suite", "greet@abc", True)
    body["candidate"].update(candidate)
    return json.dumps(body).encode()


def raw(value: Any) -> bytes:
    return json.dumps(value).encode()


CHAT = {"model": "local/echo", "messages": USER}

# (method, path, body, the field the error must name)
CASES: list[tuple[str, str, bytes | None, str]] = [
    ("POST", "/v1/keys", b'{"max_budget": Infinity}', "max_budget"),
    ("POST", "/v1/keys", b'{"max_budget": -Infinity}', "max_budget"),
    ("POST", "/v1/keys", b'{"max_budget": 1e999}', "max_budget"),
    ("POST", "/v1/keys", b'{"max_budget": NaN}', "max_budget"),
    ("POST", "/v1/keys", b'{"max_budget": 1e300}', "max_budget"),
    ("POST", "/v1/keys", b'{"rpm_limit": 1e999}', "rpm_limit"),
    ("POST", "/v1/keys", b'{"metadata": {"a": [1, NaN]}}', "metadata.a[1]"),
    ("POST", "/v1/keys", raw({"name": "a\x00b"}), "name"),
    ("POST", "/v1/keys", raw({"team": "t\x00"}), "team"),
    ("POST", "/v1/keys", raw({"team": "t\n"}), "team"),
    ("POST", "/v1/keys", raw({"team": "t" * 65}), "team"),
    ("POST", "/v1/keys", raw({"models": ["a\x00"]}), "models[0]"),
    ("POST", "/v1/keys", raw({"metadata": {"k\x00": 1}}), "metadata"),
    ("POST", "/v1/keys", raw({"metadata": deep(300)}), "metadata"),
    ("POST", "/v1/keys", raw({"name": "n" * 201}), "name"),
    ("POST", "/v1/keys", raw({"budget_duration": "0" * 30 + "1d"}), "budget_duration"),
    ("PATCH", "/v1/keys/KEY", b'{"max_budget": Infinity}', "max_budget"),
    ("PATCH", "/v1/keys/KEY", raw({"team": "\x00"}), "team"),
    ("GET", "/v1/keys/key%00x", None, "key_id"),
    ("DELETE", "/v1/keys/key%00x", None, "key_id"),
    ("POST", "/v1/keys/key%00x/rotate", None, "key_id"),
    ("GET", "/v1/keys?team=t%00", None, "team"),
    ("POST", "/v1/teams", raw({"id": "t\x00"}), "id"),
    ("POST", "/v1/teams", raw({"id": "t\n"}), "id"),
    ("POST", "/v1/teams", b'{"id": "t", "max_budget": 1e999}', "max_budget"),
    ("PATCH", "/v1/teams/" + "x" * 100, b"{}", "id"),
    ("PATCH", "/v1/teams/t1", b'{"metadata": {"x": Infinity}}', "metadata.x"),
    ("GET", "/v1/teams/t%00", None, "team_id"),
    ("GET", "/v1/costs?from=%00", None, "from"),
    ("POST", "/v1/prompts/greet/labels", b'{"label": "c", "weights": {"a": Infinity}}', "weights"),
    ("POST", "/v1/prompts/greet/labels", b'{"label": "c", "weights": {"a": 1e999}}', "weights"),
    ("POST", "/v1/prompts/greet/labels", b'{"label": "c", "weights": {"a": NaN}}', "weights"),
    ("POST", "/v1/prompts/greet/labels", b'{"label": "c", "weights": {"a": 1e300}}', "weights.a"),
    ("POST", "/v1/prompts/greet/labels", raw({"label": "prod\n", "version": "a"}), "label"),
    ("POST", "/v1/prompts/greet/labels", raw({"label": "c", "reason": "\x00"}), "reason"),
    ("POST", "/v1/prompts/greet/labels/production/rollback", raw({"reason": "\x00"}), "reason"),
    ("POST", "/v1/prompts/greet/render", b'{"variables": {"x": NaN}}', "variables.x"),
    ("POST", "/v1/prompts/greet/render", raw({"variables": deep(300)}), "variables"),
    ("GET", "/v1/prompts/gr%00eet", None, "name"),
    ("GET", "/v1/prompts/greet/history?label=%00", None, "label"),
    ("GET", "/v1/prompts/greet/versions/%00", None, "version"),
    (
        "POST",
        "/v1/registry/models/m/versions",
        b'{"alias": "local/echo", "hyperparameters": {"lr": Infinity}}',
        "hyperparameters.lr",
    ),
    (
        "POST",
        "/v1/registry/models/m/versions",
        raw({"alias": "local/echo", "description": "\x00"}),
        "description",
    ),
    (
        "POST",
        "/v1/registry/models/m/versions",
        raw({"alias": "local/echo", "tags": ["\x00"]}),
        "tags[0]",
    ),
    (
        "POST",
        "/v1/registry/models/m/versions",
        raw({"alias": "local/echo", "metadata": deep(300)}),
        "metadata",
    ),
    ("POST", "/v1/registry/models/m%0A/versions", raw({"alias": "local/echo"}), "name"),
    ("PUT", "/v1/registry/models/m/labels/prod%0A", raw({"version": 1, "approver": "a"}), "label"),
    ("PUT", "/v1/registry/models/m/labels/p", raw({"version": 1, "approver": "\x00"}), "approver"),
    ("PUT", "/v1/registry/models/m/labels/p", raw({"version": 10**30, "approver": "a"}), "version"),
    ("GET", "/v1/registry/models/m/versions/1%0A", None, "ref"),
    ("GET", "/v1/registry/models/m%00", None, "name"),
    ("POST", "/v1/evals/runs", report(pass_rate=math.inf), "candidate.pass_rate"),
    ("POST", "/v1/evals/runs", report(cost_usd=math.nan), "candidate.cost_usd"),
    ("POST", "/v1/evals/runs", report(cases=10**20), "candidate.cases"),
    ("POST", "/v1/evals/runs", report(target="t" * 1000), "candidate.target"),
    ("POST", "/v1/evals/runs", report(version="v\x00"), "candidate.version"),
    ("POST", "/v1/evals/runs", report(extra=deep(300)), "candidate"),
    (
        "POST",
        "/v1/evals/runs",
        raw({**eval_report("s" * 1000, "greet@abc", True)}),
        "suite",
    ),
    (
        "POST",
        "/v1/evals/runs",
        raw({**eval_report("s", "greet@abc", True), "verdict": {"passed": "false"}}),
        "verdict.passed",
    ),
    ("GET", "/v1/evals/runs/run%00", None, "run_id"),
    ("GET", "/v1/evals/runs?suite=%00", None, "suite"),
    ("POST", "/v1/chat/completions", raw({**CHAT, "messages": [deep(300)]}), "messages[0]"),
    ("POST", "/v1/chat/completions", b'{"model": "local/echo", "top_p": 1e999}', "top_p"),
    ("POST", "/v1/chat/completions", b'{"model": "local/echo", "top_p": NaN}', "top_p"),
    ("POST", "/v1/embeddings", raw({"model": "local/echo", "input": deep(300)}), "input"),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest, gateway: GatewayFactory) -> str:
    settings: dict[str, Any] = {}
    if request.param == "postgresql":
        settings["database_url"] = request.getfixturevalue("pg_url")
    return gateway({"model_list": DEFAULT_MODELS}, **settings)


def send(base: str, method: str, path: str, body: bytes | None) -> httpx.Response:
    return httpx.request(method, f"{base}{path}", content=body, headers=ADMIN, timeout=30)


def test_every_write_route_refuses_bad_values_with_a_400_naming_the_field(any_db: str) -> None:
    base = any_db
    key = send(base, "POST", "/v1/keys", raw({"team": "t1", "max_budget": 1.0})).json()
    wrong: list[str] = []
    for method, path, body, field in CASES:
        response = send(base, method, path.replace("KEY", key["id"]), body)
        error = response.json().get("error", {}) if response.content else {}
        named = field in f"{error.get('param')} {error.get('message')}"
        if response.status_code != 400 or not named or set(error) != ERROR_FIELDS:
            wrong.append(f"{method} {path} {body!r:.80}: {response.status_code} {response.text}")
    assert not wrong, "\n".join(wrong)

    # Nothing stored broke the key, its team or the lists.
    client = sdk(base, key=key["key"])
    assert client.chat.completions.create(model="local/echo", messages=USER).choices
    for path in ("/v1/keys", "/v1/teams", f"/v1/keys/{key['id']}", "/v1/teams/t1"):
        assert send(base, "GET", path, None).status_code == 200, path
    for path in ("/v1/evals/runs", "/v1/registry/models", "/v1/prompts"):
        assert send(base, "GET", path, None).status_code == 200, path


ERROR_FIELDS = {"message", "type", "param", "code"}


def test_a_stranger_gets_401_whatever_they_send(any_db: str) -> None:
    response = httpx.post(f"{any_db}/v1/keys", content=b'{"max_budget": NaN}')
    assert response.status_code == 401


def test_key_store_refuses_what_the_api_refuses(engine: Engine) -> None:
    """The CLI writes through the store: the same numbers and ids are refused there."""
    store = KeyStore(engine)
    for fields, param in (
        ({"max_budget": math.inf}, "max_budget"),
        ({"max_budget": math.nan}, "max_budget"),
        ({"max_budget": -1.0}, "max_budget"),
        ({"team": "t\x00"}, "team"),
        ({"team": "t" * 65}, "team"),
    ):
        with pytest.raises(BadRequest) as caught:
            store.create(fields)
        assert caught.value.param == param
    with pytest.raises(BadRequest):
        store.upsert_team("\x00", {})
    record, _ = store.create({"max_budget": 5.0, "team": "ok"})
    assert (record.max_budget, record.team) == (5.0, "ok")


@pytest.mark.parametrize("weight", [math.inf, math.nan, -1.0, 1e300])
def test_label_weights_must_be_finite_and_bounded(weight: float) -> None:
    with pytest.raises(BadRequest) as caught:
        normalize_target({"weights": {"a": weight, "b": 1.0}})
    assert caught.value.param == "weights.a"


def test_names_labels_and_refs_refuse_a_trailing_newline() -> None:
    for check, good in ((check_name, "support"), (check_label, "prod"), (check_ref, "3")):
        assert check(good) == good
        with pytest.raises(BadRequest):
            check(good + "\n")


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings"])
def test_proxied_routes_want_json(gateway: GatewayFactory, path: str) -> None:
    base = gateway()
    body = raw({"model": "local/echo", "messages": USER, "input": "hi"})
    auth = {"Authorization": f"Bearer {MASTER_KEY}"}
    for content_type in (
        "application/x-www-form-urlencoded",  # curl -d without -H
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
    ):
        response = httpx.post(
            f"{base}{path}", content=body, headers={**auth, "Content-Type": content_type}
        )
        assert response.status_code == 415, (content_type, response.text)
        error = response.json()["error"]
        assert set(error) == ERROR_FIELDS
        assert error["param"] == "content-type"
        assert "Content-Type: application/json" in error["message"]
        assert content_type in error["message"]
    if path.endswith("embeddings"):
        return  # the echo model does not embed; what is accepted is the same for both routes
    for content_type in (
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        None,  # nothing declared: read as JSON
    ):
        headers = auth if content_type is None else {**auth, "Content-Type": content_type}
        response = httpx.post(f"{base}{path}", content=body, headers=headers)
        assert response.status_code == 200, (content_type, response.text)


# (path, a body the route accepts): the admin routes take JSON as chat does.
WRITES = [
    ("/v1/keys", {"name": "ci"}),
    ("/v1/teams", {"id": "platform"}),
    ("/v1/registry/models/ft/versions", {"alias": "local/echo"}),
]


@pytest.mark.parametrize(("path", "body"), WRITES)
def test_admin_routes_take_what_chat_takes(
    gateway: GatewayFactory, path: str, body: dict[str, Any]
) -> None:
    """A form post (curl -d without -H) gets chat's clear 415, not a 400 about a dictionary;
    a JSON body without a Content-Type is read as JSON, as chat reads it."""
    base = gateway()
    auth = {"Authorization": f"Bearer {MASTER_KEY}"}
    for content_type in (
        "application/x-www-form-urlencoded",
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
    ):
        response = httpx.post(
            f"{base}{path}", content=raw(body), headers={**auth, "Content-Type": content_type}
        )
        assert response.status_code == 415, (content_type, response.text)
        error = response.json()["error"]
        assert set(error) == ERROR_FIELDS
        assert error["param"] == "content-type"
        assert "Content-Type: application/json" in error["message"]
        assert content_type in error["message"]
    for content_type in (
        "application/json",
        "Application/JSON;charset=UTF-8",
        "text/json",
        None,
    ):
        headers = auth if content_type is None else {**auth, "Content-Type": content_type}
        response = httpx.post(f"{base}{path}", content=raw(body), headers=headers)
        assert response.status_code == 200, (content_type, response.text)
    # Strangers learn nothing about the body: authentication comes first.
    stranger = httpx.post(
        f"{base}{path}", content=b"name=ci", headers={"Content-Type": "text/plain"}
    )
    assert stranger.status_code == 401


@pytest.mark.parametrize(
    "path",
    ["/v1/keys", "/v1/registry/models/m/versions", "/v1/registry/finetunes?name=ft&alias=x"],
)
def test_a_body_nested_past_the_parsers_limit_is_named_so(
    gateway: GatewayFactory, path: str
) -> None:
    """FastAPI's parser gives up on a body nested a thousand levels deep and says only "There
    was an error parsing the body": the gateway says what was wrong."""
    base = gateway()
    for body in (
        b'{"metadata":' + b'{"a":' * 1000 + b"1" + b"}" * 1001,
        b"[" * 100_000,  # deep and never closed
    ):
        response = send(base, "POST", path, body)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert set(error) == ERROR_FIELDS
        assert "nests deeper than 64 levels" in error["message"]
