"""The registry over HTTP, on a real server built by create_app, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import DEFAULT_MODELS, MASTER_KEY, GatewayFactory
from tests.test_registry_store import eval_report

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
MODELS = "/v1/registry/models"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest, gateway: GatewayFactory) -> str:
    settings: dict[str, Any] = {}
    if request.param == "postgresql":
        settings["database_url"] = request.getfixturevalue("pg_url")
    return gateway({"model_list": DEFAULT_MODELS}, **settings)


@pytest.fixture
def base(gateway: GatewayFactory) -> str:
    return gateway()


def call(base: str, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
    headers = kw.pop("headers", ADMIN)
    return httpx.request(method, f"{base}{path}", json=body, headers=headers, timeout=30, **kw)


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def test_register_inspect_move_labels_and_trace_lineage(any_db: str) -> None:
    base = any_db
    first = ok(
        call(
            base,
            "POST",
            f"{MODELS}/base-ft/versions",
            {
                "alias": "local/echo",
                "base": "gpt-4o-mini-2024-07-18",
                "dataset": "s3://data/train.jsonl",
                "dataset_hash": "sha256:" + "0" * 64,
                "hyperparameters": {"learning_rate": 0.0002, "epochs": 3},
                "tags": ["fine-tune"],
                "description": "first",
            },
        )
    )
    assert (first["ref"], first["created_by"], first["labels"], first["evals"]) == (
        "base-ft@1",
        "api:master",
        [],
        [],
    )
    second = ok(call(base, "POST", f"{MODELS}/base-ft/versions", {"alias": "local/echo"}))
    assert second["version"] == 2
    child = ok(
        call(
            base,
            "POST",
            f"{MODELS}/support/versions",
            {"alias": "local/echo", "base": "base-ft@1", "created_by": "ana"},
        )
    )
    assert child["base"]["ref"] == "base-ft@1"
    assert child["created_by"] == "ana"

    listed = ok(call(base, "GET", MODELS))["data"]
    assert [(m["name"], m["latest"]) for m in listed] == [("base-ft", 2), ("support", 1)]

    moved = ok(
        call(base, "PUT", f"{MODELS}/base-ft/labels/production", {"version": 1, "approver": "ana"})
    )
    assert (moved["from"], moved["to"], moved["approver"]) == (None, 1, "ana")
    ok(call(base, "PUT", f"{MODELS}/base-ft/labels/staging", {"version": 2, "approver": "bo"}))
    ok(
        call(
            base,
            "PUT",
            f"{MODELS}/base-ft/labels/production",
            {"version": 2, "approver": "cy", "reason": "evals look good"},
        )
    )

    model = ok(call(base, "GET", f"{MODELS}/base-ft"))
    assert model["labels"] == {"production": 2, "staging": 2}
    assert [v["ref"] for v in model["versions"]] == ["base-ft@1", "base-ft@2"]
    assert ok(call(base, "GET", f"{MODELS}/base-ft/versions/production"))["version"] == 2
    assert ok(call(base, "GET", f"{MODELS}/base-ft/versions/latest"))["version"] == 2
    one = ok(call(base, "GET", f"{MODELS}/base-ft/versions/1"))
    assert one["hyperparameters"] == {"learning_rate": 0.0002, "epochs": 3}
    assert one["base"] == {"kind": "external", "ref": "gpt-4o-mini-2024-07-18"}

    trail = ok(call(base, "GET", f"{MODELS}/base-ft/history", params={"label": "production"}))
    assert [(m["from"], m["to"], m["approver"], m["reason"]) for m in trail["data"]] == [
        (None, 1, "ana", None),
        (1, 2, "cy", "evals look good"),
    ]

    down = ok(call(base, "GET", f"{MODELS}/base-ft/lineage", params={"ref": "1"}))
    assert [(v["ref"], v["depth"]) for v in down["descendants"]] == [("support@1", 1)]
    up = ok(call(base, "GET", f"{MODELS}/support/lineage"))
    assert [v["ref"] for v in up["ancestors"]] == ["base-ft@1"]


def test_label_moves_can_require_a_passing_eval_run(base: str) -> None:
    ok(call(base, "POST", f"{MODELS}/support/versions", {"alias": "local/echo"}))
    move = {"version": 1, "approver": "ana", "require_eval": "triage"}
    refused = call(base, "PUT", f"{MODELS}/support/labels/production", move)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "eval_required"
    assert "suite 'triage' has no passing run" in error["message"]

    run = ok(
        call(base, "POST", "/v1/evals/runs", eval_report("triage", "registry:support@1", True))
    )
    moved = ok(call(base, "PUT", f"{MODELS}/support/labels/production", move))
    assert moved["eval_run"] == run["id"]
    version = ok(call(base, "GET", f"{MODELS}/support/versions/production"))
    assert [(r["id"], r["suite"], r["passed"]) for r in version["evals"]] == [
        (run["id"], "triage", True)
    ]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "param", "message"),
    [
        ("POST", "/support/versions", {"alias": "gpt-5"}, 400, "alias", "known: local/"),
        ("POST", "/support/versions", {}, 400, "alias", "alias: Field required"),
        (
            "POST",
            "/support/versions",
            {"alias": "local/echo", "epochs": 3},
            400,
            "epochs",
            "epochs",
        ),
        (
            "POST",
            "/support/versions",
            {"alias": "local/echo", "hyperparameters": [1]},
            400,
            "hyperparameters",
            "hyperparameters: Input should be a valid dictionary",
        ),
        (
            "POST",
            "/support/versions",
            {"alias": "local/echo", "dataset_hash": "md5:abc"},
            400,
            "dataset_hash",
            "must be 'sha256:' and 64 hex digits",
        ),
        ("POST", "/support/versions", {"alias": "local/echo", "kind": "svm"}, 400, "kind", "kind"),
        ("POST", "/bad!name/versions", {"alias": "local/echo"}, 400, "name", "model name"),
        ("POST", "/x/versions", {"alias": "local/echo", "base": "ghost@2"}, 404, "base", "ghost"),
        ("GET", "/ghost", None, 404, "name", "No registry model named 'ghost'"),
        ("GET", "/support/versions/9", None, 404, "ref", "has no version 9 (latest is 1)"),
        ("GET", "/support/versions/canary", None, 404, "ref", "no label 'canary'"),
        ("GET", "/support/versions/Prod!", None, 400, "ref", "must be a version number"),
        ("GET", "/support/lineage?ref=7", None, 404, "ref", "has no version 7"),
        ("GET", "/ghost/history", None, 404, "name", "ghost"),
        ("PUT", "/support/labels/production", {"version": 1}, 400, "approver", "approver"),
        ("PUT", "/support/labels/Prod", {"version": 1, "approver": "a"}, 400, "label", "[a-z]"),
        ("PUT", "/support/labels/latest", {"version": 1, "approver": "a"}, 400, "label", "newest"),
        ("PUT", "/support/labels/production", {"version": 5, "approver": "a"}, 404, "ref", "5"),
        ("PUT", "/ghost/labels/production", {"version": 1, "approver": "a"}, 404, "name", "ghost"),
        ("PUT", "/support/labels/production", {"version": 0, "approver": "a"}, 400, "version", "1"),
    ],
)
def test_errors_name_what_is_wrong(
    base: str,
    method: str,
    path: str,
    body: Any,
    status: int,
    param: str | None,
    message: str,
) -> None:
    ok(call(base, "POST", f"{MODELS}/support/versions", {"alias": "local/echo"}))
    response = call(base, method, f"{MODELS}{path}", body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error["message"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_writes_need_the_master_key_and_reads_any_key(base: str) -> None:
    minted = ok(call(base, "POST", "/v1/keys", {"name": "app"}))
    app = {"Authorization": f"Bearer {minted['key']}"}
    register = f"{MODELS}/support/versions"
    assert call(base, "POST", register, {"alias": "local/echo"}, headers={}).status_code == 401
    assert call(base, "POST", register, {"alias": "local/echo"}, headers=app).status_code == 403
    assert call(base, "GET", MODELS, headers={}).status_code == 401
    ok(call(base, "POST", register, {"alias": "local/echo"}))
    label = {"version": 1, "approver": "app"}
    denied = call(base, "PUT", f"{MODELS}/support/labels/production", label, headers=app)
    assert denied.status_code == 403
    assert denied.json()["error"]["type"] == "permission_error"
    assert ok(call(base, "GET", f"{MODELS}/support", headers=app))["labels"] == {}
    assert ok(call(base, "GET", MODELS, headers=app))["data"][0]["name"] == "support"
