"""One promotion gate: prompts and registry models, moved over HTTP or with the CLI, are
refused the same way without a passing eval run of the version, and allowed with one."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import create_engine

from gateway.core.errors import PermissionDenied
from gateway.evals.gates import EVAL_REQUIRED, PromotedVersion, require_passing_runs
from gateway.evals.store import EvalStore
from gateway.store.db import migrate
from tests.conftest import MASTER_KEY, GatewayFactory, Project
from tests.test_prompts_serving import GREET_V1
from tests.test_registry_store import eval_report

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def serve(project: Project, gateway: GatewayFactory) -> str:
    """A server on the project's database, so the CLI and the API see the same runs."""
    return gateway(
        yaml.safe_load((project.root / "gateway.yaml").read_text()),
        prompts_dir=project.root / "prompts",
        data_dir=project.root / "data",
    )


def refused_over_http(response: httpx.Response) -> str:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert (error["code"], error["type"]) == (EVAL_REQUIRED, "permission_error")
    message: str = error["message"]
    return message


def refused_by_cli(project: Project, *args: str) -> str:
    result = project.gateway(*args)
    assert result.returncode == 1, result.stdout + result.stderr  # as a failed suite
    assert result.stderr.startswith("error: "), result.stderr
    return result.stderr.removeprefix("error: ").strip()


def record_run(base: str, suite: str, version: str, passed: bool) -> str:
    response = httpx.post(
        f"{base}/v1/evals/runs", json=eval_report(suite, version, passed), headers=ADMIN
    )
    assert response.status_code == 200, response.text
    run_id: str = response.json()["id"]
    return run_id


def test_prompts_are_gated_alike_over_http_and_the_cli(
    project: Project, gateway: GatewayFactory
) -> None:
    project.prompt(GREET_V1)
    synced = project.gateway("prompts", "sync")
    assert synced.returncode == 0, synced.stderr
    version = synced.stdout.split("greet@")[1].split()[0]
    base = serve(project, gateway)
    move = {"label": "staging", "version": version, "require_eval": "greet"}
    labels = f"{base}/v1/prompts/greet/labels"

    over_http = refused_over_http(httpx.post(labels, json=move, headers=ADMIN))
    cli = ("prompts", "promote", "greet", version, "--label", "staging")
    by_cli = refused_by_cli(project, *cli, "--require-eval", "evals/greet.yaml")
    assert (
        over_http
        == by_cli
        == (
            f"refusing to promote greet@{version}: suite 'greet' has no passing run of it "
            f"(run: gateway eval run evals/greet.yaml --target prompt:greet@{version})"
        )
    )
    record_run(base, "greet", f"greet@{version}", passed=False)  # a failing run opens nothing
    assert refused_over_http(httpx.post(labels, json=move, headers=ADMIN)) == over_http

    record_run(base, "greet", f"greet@{version}", passed=True)
    allowed = httpx.post(labels, json=move, headers=ADMIN)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["to"] == {"version": version}
    result = project.gateway(*cli[:-1], "canary", "--require-eval", "greet")
    assert result.returncode == 0, result.stderr
    assert f"greet: canary (none) -> {version}" in result.stdout


def test_registry_models_are_gated_alike_over_http_and_the_cli(
    project: Project, gateway: GatewayFactory
) -> None:
    registered = project.gateway("registry", "register", "support", "--alias", "local/echo")
    assert registered.returncode == 0, registered.stderr
    base = serve(project, gateway)
    move = {"version": 1, "approver": "ana", "require_eval": "support"}
    labels = f"{base}/v1/registry/models/support/labels"

    over_http = refused_over_http(httpx.put(f"{labels}/staging", json=move, headers=ADMIN))
    cli = ("registry", "promote", "support@1", "staging", "--approver", "ana")
    by_cli = refused_by_cli(project, *cli, "--require-eval", "evals/support.yaml")
    assert (
        over_http
        == by_cli
        == (
            "refusing to promote registry:support@1: suite 'support' has no passing run of it "
            "(run: gateway eval run evals/support.yaml --target registry:support@1)"
        )
    )

    run_id = record_run(base, "support", "registry:support@1", passed=True)
    allowed = httpx.put(f"{labels}/staging", json=move, headers=ADMIN)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["eval_run"] == run_id
    result = project.gateway(
        *cli[:3], "production", "--approver", "ana", "--require-eval", "support"
    )
    assert result.returncode == 0, result.stderr
    assert f"(approved by ana; eval run {run_id})" in result.stdout


@pytest.fixture
def evals(tmp_path: Any) -> EvalStore:
    engine = create_engine(f"sqlite:///{tmp_path / 'gate.db'}")
    migrate(engine)
    return EvalStore(engine)


def test_the_gate_names_the_first_untested_version_and_returns_the_runs(evals: EvalStore) -> None:
    tested = [PromotedVersion.prompt("greet", "aaa"), PromotedVersion.prompt("greet", "bbb")]
    first = evals.record(eval_report("greet", "greet@aaa", passed=True))
    with pytest.raises(PermissionDenied) as refused:
        require_passing_runs(evals, "evals/greet.yaml", tested)
    assert refused.value.code == EVAL_REQUIRED
    assert "greet@bbb" in refused.value.message
    assert "--target prompt:greet@bbb" in refused.value.message
    second = evals.record(eval_report("greet", "greet@bbb", passed=True))
    passed = require_passing_runs(evals, "evals/greet.yaml", tested)
    assert (passed.suite, passed.runs) == ("greet", [first, second])
    registry = PromotedVersion.registry("support", 3)
    assert (registry.version, registry.target) == ("registry:support@3", "registry:support@3")


@pytest.mark.parametrize(
    ("path", "method", "move", "param"),
    [
        ("/v1/registry/models/support/labels/staging", "PUT", {"weights": {"1": 1.0}}, "weights"),
        ("/v1/registry/models/support/labels/staging", "PUT", {"label": "staging"}, "label"),
        ("/v1/registry/models/support/labels/staging", "PUT", {"approver": "ana"}, "version"),
        ("/v1/registry/models/support/labels/staging", "PUT", {"version": "two"}, "version"),
        ("/v1/prompts/greet/labels", "POST", {"approver": "ana"}, "approver"),
        ("/v1/prompts/greet/labels", "POST", {"version": "abc"}, "label"),
        ("/v1/prompts/greet/labels", "POST", {"colour": "red"}, "colour"),
    ],
)
def test_one_label_move_each_route_names_the_fields_it_does_not_take(
    project: Project, gateway: GatewayFactory, path: str, method: str, move: Any, param: str
) -> None:
    base = serve(project, gateway)
    if "registry" in path:
        move = {"version": 1, "approver": "ana", **move} if param != "version" else move
    response = httpx.request(method, f"{base}{path}", json=move, headers=ADMIN)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    assert param in error["message"], error
