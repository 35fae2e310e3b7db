"""What callers see: a key limited to some prompts or models reads nothing of the others
(eval runs, prompts, the registry), no server path leaves the gateway, and logged response
bodies are redacted like request bodies."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select

from gateway.store.tables import request_log
from tests.conftest import DEFAULT_MODELS, MASTER_KEY, GatewayFactory, sdk
from tests.test_registry_store import eval_report

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}

PROMPT = """---
model: local/echo
---
{{role "user"}}
Say TEXT
"""


def get(base: str, path: str, key: str = MASTER_KEY, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{base}{path}", params=params, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def post(base: str, path: str, body: Any) -> Any:
    response = httpx.post(f"{base}{path}", json=body, headers=ADMIN, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def run_of(version: str, target: str, baseline: str | None = None) -> dict[str, Any]:
    report = eval_report("suite", version, True)
    report["candidate"]["target"] = target
    if baseline is not None:
        report["baseline"] = {**report["candidate"], "version": baseline, "target": target}
    return report


@pytest.fixture
def world(gateway: GatewayFactory, tmp_path: Path) -> dict[str, Any]:
    """Two prompts, a broken prompt file, two registry models on two aliases, a run of each
    kind, and two restricted keys."""
    prompts = tmp_path / "prompts"
    (prompts / "team").mkdir(parents=True)
    (prompts / "greet.prompt").write_text(PROMPT.replace("TEXT", "hello"))
    (prompts / "team" / "secret.prompt").write_text(PROMPT.replace("TEXT", "secret"))
    (prompts / "broken.prompt").write_text("---\nmodel: [\n---\nhi\n")
    base = gateway({"model_list": DEFAULT_MODELS}, prompts_dir=prompts)
    version = {
        name: get(base, f"/v1/prompts/{name}").json()["latest"] for name in ("greet", "secret")
    }
    embedder = "local/all-MiniLM-L6-v2"
    post(base, "/v1/registry/models/embedder/versions", {"alias": embedder})
    post(base, "/v1/registry/models/support/versions", {"alias": "local/echo"})
    post(
        base,
        "/v1/registry/models/support/versions",
        {"alias": "local/echo", "base": "embedder@1"},
    )
    greet, secret = f"greet@{version['greet']}", f"secret@{version['secret']}"
    runs = {
        "greet": run_of(greet, "prompt:greet@production"),
        "secret": run_of(secret, "prompt:secret@production"),
        "greet-vs-secret": run_of(greet, "prompt:greet@latest", baseline=secret),
        "embedder-model": run_of(embedder, f"model:{embedder}"),
        "embedder-registry": run_of("registry:embedder@1", "registry:embedder@1"),
        "support-registry": run_of("registry:support@1", "registry:support@1"),
    }
    ids = {name: post(base, "/v1/evals/runs", report)["id"] for name, report in runs.items()}
    keys = {
        "greet-only": post(base, "/v1/keys", {"prompts": ["greet"]})["key"],
        "echo-only": post(base, "/v1/keys", {"models": ["local/echo"]})["key"],
    }
    return {"base": base, "runs": ids, "keys": keys, "versions": version, "tmp": tmp_path}


def visible_runs(world: dict[str, Any], key: str) -> set[str]:
    by_id = {v: k for k, v in world["runs"].items()}
    response = get(world["base"], "/v1/evals/runs", key)
    assert response.status_code == 200, response.text
    return {by_id[run["id"]] for run in response.json()["data"]}


def test_eval_runs_follow_the_keys_prompt_and_model_allow_lists(world: dict[str, Any]) -> None:
    base, runs, keys = world["base"], world["runs"], world["keys"]
    assert visible_runs(world, MASTER_KEY) == set(runs)
    greet_only = {"greet", "embedder-model", "embedder-registry", "support-registry"}
    echo_only = {"greet", "secret", "greet-vs-secret", "support-registry"}
    assert visible_runs(world, keys["greet-only"]) == greet_only
    assert visible_runs(world, keys["echo-only"]) == echo_only
    for holder, allowed in (("greet-only", greet_only), ("echo-only", echo_only)):
        for name, run_id in runs.items():
            shown = get(base, f"/v1/evals/runs/{run_id}", keys[holder])
            expected = 200 if name in allowed else 404
            assert shown.status_code == expected, (holder, name, shown.text)
            if expected == 404:
                assert shown.json()["error"]["message"] == f"No eval run {run_id!r}."
    # A limit counts what the key may see, not what it may not.
    limited = get(base, "/v1/evals/runs", keys["greet-only"], limit=1).json()["data"]
    assert [r["id"] for r in limited] == [runs["support-registry"]]


def test_prompt_routes_hide_prompts_outside_the_allow_list(world: dict[str, Any]) -> None:
    base, key = world["base"], world["keys"]["greet-only"]
    secret = world["versions"]["secret"]
    for path, params in (
        ("/v1/prompts/secret", {}),
        ("/v1/prompts/secret/versions", {}),
        (f"/v1/prompts/secret/versions/{secret}", {}),
        ("/v1/prompts/secret/diff", {"from": secret}),
        ("/v1/prompts/secret/history", {}),
    ):
        response = get(base, path, key, **params)
        assert response.status_code == 404, (path, response.text)
    listed = get(base, "/v1/prompts", key).json()
    assert [p["name"] for p in listed["data"]] == ["greet"]
    assert listed["errors"] == []  # a broken file may be one of the prompts it cannot see
    rendered = httpx.post(
        f"{base}/v1/prompts/secret/render",
        json={},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert rendered.status_code == 404


def test_registry_routes_hide_versions_served_by_other_models(world: dict[str, Any]) -> None:
    base, key = world["base"], world["keys"]["echo-only"]
    listed = get(base, "/v1/registry/models", key).json()["data"]
    assert [m["name"] for m in listed] == ["support"]
    for path in (
        "/v1/registry/models/embedder",
        "/v1/registry/models/embedder/versions/1",
        "/v1/registry/models/embedder/versions/latest",
        "/v1/registry/models/embedder/lineage",
        "/v1/registry/models/embedder/history",
    ):
        response = get(base, path, key)
        assert response.status_code == 404, (path, response.text)
    lineage = get(base, "/v1/registry/models/support/lineage", key, ref="2").json()
    assert lineage["ancestors"] == []  # support@2 is built on embedder@1, which it cannot see
    assert len(get(base, "/v1/registry/models/support/lineage", ref="2").json()["ancestors"]) == 1
    # A key limited to prompts only still sees the whole registry.
    everything = get(base, "/v1/registry/models", world["keys"]["greet-only"]).json()["data"]
    assert [m["name"] for m in everything] == ["embedder", "support"]


def test_prompt_paths_are_relative_to_the_prompts_folder(world: dict[str, Any]) -> None:
    base, tmp = world["base"], str(world["tmp"])
    versions = get(base, "/v1/prompts/secret/versions").json()["data"]
    assert [v["path"] for v in versions] == ["team/secret.prompt"]
    one = get(base, f"/v1/prompts/secret/versions/{world['versions']['secret']}").json()
    assert one["path"] == "team/secret.prompt"
    listed = get(base, "/v1/prompts").json()
    assert listed["errors"]
    assert all(e.startswith("broken.prompt:") for e in listed["errors"]), listed["errors"]
    synced = httpx.post(f"{base}/v1/prompts/sync", headers=ADMIN).json()
    for shown in (versions, one, listed, synced):
        assert tmp not in str(shown)


def test_logged_response_bodies_are_redacted(gateway: GatewayFactory, tmp_path: Path) -> None:
    base = gateway({"model_list": DEFAULT_MODELS, "gateway": {"log_bodies": True}})
    secret = "sk-" + "b" * 40
    answer = sdk(base).chat.completions.create(
        model="local/echo", messages=[{"role": "user", "content": f"repeat {secret}"}]
    )
    assert secret in (answer.choices[0].message.content or "")  # the caller gets it back
    engine = create_engine(f"sqlite:///{tmp_path / '.gateway' / 'gateway.db'}")
    deadline = time.monotonic() + 10
    row = None
    while row is None and time.monotonic() < deadline:
        with engine.connect() as connection:
            row = connection.execute(select(request_log)).first()
        time.sleep(0.05)
    engine.dispose()
    assert row is not None
    assert secret not in row.request_body
    assert secret not in row.response_body
    assert "[REDACTED]" in row.response_body
    assert "repeat" in row.response_body
