"""`gateway registry ...` and eval suites aimed at registry versions, as a user runs them:
real processes, a real database, calls through the gateway to the loopback upstream."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project
from tests.fakes.upstream import FakeUpstream

INPUTS = ["hello Ana", "hello Bo", "hello Cy"]


def succeed(project: Project, *args: str) -> str:
    result = project.gateway(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_register_show_promote_history_and_lineage(project: Project) -> None:
    data = project.root / "train.jsonl"
    data.write_text('{"messages": []}\n')
    registered = succeed(
        project,
        *("registry", "register", "base-ft", "--alias", "local/echo"),
        *("--base", "gpt-4o-mini-2024-07-18", "--dataset", str(data)),
        *("--param", "learning_rate=2e-4", "--param", "epochs=3", "--param", "optimizer=adamw"),
        *("--tag", "fine-tune", "--meta", "ticket=ML-1", "--description", "first cut"),
    )
    assert registered.strip() == "registered base-ft@1 (alias local/echo)"
    succeed(project, "registry", "register", "base-ft", "--alias", "fake")
    succeed(project, "registry", "register", "support", "--alias", "fake", "--base", "base-ft@1")

    shown = json.loads(succeed(project, "registry", "show", "base-ft@1"))
    assert shown["dataset"] == str(data)
    assert shown["dataset_hash"] == "sha256:" + hashlib.sha256(data.read_bytes()).hexdigest()
    assert shown["hyperparameters"] == {"learning_rate": 2e-4, "epochs": 3, "optimizer": "adamw"}
    assert (shown["tags"], shown["metadata"]) == (["fine-tune"], {"ticket": "ML-1"})

    moved = succeed(project, "registry", "promote", "base-ft@1", "production", "--approver", "ana")
    assert moved.strip() == "base-ft: production (none) -> 1 (approved by ana)"
    succeed(project, "registry", "promote", "base-ft@2", "staging", "--approver", "bo")
    # NAME@LABEL promotes the version the label points at now: staging goes to production.
    succeed(
        project,
        *("registry", "promote", "base-ft@staging", "production"),
        *("--approver", "cy", "--reason", "staging held up"),
    )
    assert "production=2, staging=2" in succeed(project, "registry", "list")
    overview = succeed(project, "registry", "show", "base-ft").splitlines()
    assert overview[0] == "base-ft: latest 2; production=2, staging=2"
    assert "base=gpt-4o-mini-2024-07-18 (external)" in overview[1]

    trail = succeed(project, "registry", "history", "base-ft", "--label", "production")
    lines = trail.splitlines()
    assert len(lines) == 2
    assert "(none) -> 1" in lines[0]
    assert "approved by ana" in lines[0]
    assert "1 -> 2" in lines[1]
    assert lines[1].endswith(": staging held up")

    down = succeed(project, "registry", "lineage", "base-ft@production").splitlines()
    assert down[0].startswith("base-ft@2")
    assert down[-1] == "  (nothing yet)"
    down = succeed(project, "registry", "lineage", "base-ft@1")
    assert down.split("built on it:")[1].split()[0] == "support@1"
    up = succeed(project, "registry", "lineage", "support").split("built on it:")[0]
    assert "  base-ft@1" in up
    assert "  gpt-4o-mini-2024-07-18 (external)" in up


def test_bad_input_is_a_one_line_error_and_exit_2(project: Project) -> None:
    data = project.root / "train.jsonl"
    data.write_text("{}\n")
    succeed(project, "registry", "register", "support", "--alias", "local/echo")
    register = ("registry", "register", "support", "--alias", "local/echo")
    cases: list[tuple[tuple[str, ...], str]] = [
        (("registry", "register", "support", "--alias", "gpt-5"), "known: fake, local/echo"),
        ((*register, "--dataset", "missing.jsonl"), "--dataset missing.jsonl: no such file"),
        ((*register, "--param", "epochs"), "write KEY=VALUE"),
        ((*register, "--base", "ghost@1"), "No registry model named 'ghost'"),
        ((*register, "--kind", "svm"), "--kind: Input should be 'llm' or 'classic'"),
        ((*register, "--dataset", str(data), "--dataset-hash", "0" * 64), "does not match"),
        (("registry", "register", "a/b", "--alias", "local/echo"), "model name 'a/b'"),
        (("registry", "show", "ghost"), "No registry model named 'ghost'"),
        (("registry", "show", "support@9"), "has no version 9 (latest is 1)"),
        (("registry", "lineage", "support@canary"), "no label 'canary'"),
        (("registry", "promote", "support", "production", "--approver", "a"), "support@VERSION"),
        (("registry", "promote", "support@1", "Prod", "--approver", "a"), "must match"),
        (("registry", "promote", "support@1", "production", "--approver", " "), "approver"),
        (("registry", "history", "ghost"), "No registry model named 'ghost'"),
    ]
    for args, message in cases:
        result = project.gateway(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("error: "), (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    no_approver = project.gateway("registry", "promote", "support@1", "production")
    assert no_approver.returncode == 2
    assert "--approver" in no_approver.stderr
    assert "production" not in succeed(project, "registry", "list")  # nothing moved


def registry_suite(project: Project, **spec: Any) -> Path:
    cases = [{"id": f"case-{i}", "vars": {"input": text}} for i, text in enumerate(INPUTS)]
    spec = {"target": "registry:support@staging", "cases": cases, **spec}
    spec.setdefault("defaults", {"assert": [{"type": "contains", "value": "{{input}}"}]})
    return project.suite("support", **spec)


def two_versions(project: Project) -> None:
    """support@1 (local/echo) in production, support@2 (the loopback upstream) in staging."""
    for alias in ("local/echo", "fake"):
        succeed(project, "registry", "register", "support", "--alias", alias)
    succeed(project, "registry", "promote", "support@1", "production", "--approver", "ana")
    succeed(project, "registry", "promote", "support@2", "staging", "--approver", "ana")


def test_a_suite_on_a_registry_label_is_linked_to_the_version_and_gates_promotion(
    project: Project, upstream: FakeUpstream
) -> None:
    two_versions(project)
    promote = ("registry", "promote", "support@2", "production", "--approver", "bo")
    refused = project.gateway(*promote, "--require-eval", "support")
    assert refused.returncode == 1
    assert "suite 'support' has no passing run" in refused.stderr
    assert "--target registry:support@2" in refused.stderr

    suite = registry_suite(project)
    report_path = project.root / "report.json"
    result = project.gateway("eval", "run", str(suite), "--json", str(report_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert upstream.calls(project.upstream_model) == len(INPUTS)  # support@2 answered
    report = json.loads(report_path.read_text())
    assert report["candidate"]["target"] == "registry:support@staging"
    assert report["candidate"]["version"] == "registry:support@2"
    assert report["candidate"]["results"][0]["output"] == f"echo: {INPUTS[0]}"

    linked = json.loads(succeed(project, "registry", "show", "support@2"))["evals"]
    assert [(run["suite"], run["passed"]) for run in linked] == [("support", True)]
    assert json.loads(succeed(project, "registry", "show", "support@1"))["evals"] == []

    allowed = succeed(project, *promote, "--require-eval", "evals/support.yaml")
    assert f"production 1 -> 2 (approved by bo; eval run {linked[0]['id']})" in allowed
    last = succeed(project, "registry", "history", "support").splitlines()[-1]
    assert f"[support: {linked[0]['id']}]" in last


def test_candidate_version_against_the_production_baseline(project: Project) -> None:
    two_versions(project)
    # local/echo answers with the input itself; the upstream prefixes "echo: ".
    suite = registry_suite(
        project,
        baseline="registry:support@production",
        defaults={"assert": [{"type": "starts-with", "value": "{{input}}"}]},
    )
    paths = {kind: project.root / f"report.{kind}" for kind in ("json", "md")}
    result = project.gateway(
        *("eval", "run", str(suite), "--json", str(paths["json"])),
        *("--markdown", str(paths["md"])),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(paths["json"].read_text())
    assert report["baseline"]["version"] == "registry:support@1"
    assert report["baseline"]["pass_rate"] == 1.0
    assert report["candidate"]["version"] == "registry:support@2"
    assert report["verdict"]["regressed"] == ["case-0", "case-1", "case-2"]
    assert "`case-0`" in paths["md"].read_text()
    # The failing run is stored against support@2, and a failing run opens no gate.
    gated = project.gateway(
        *("registry", "promote", "support@2", "production"),
        *("--approver", "bo", "--require-eval", "support"),
    )
    assert gated.returncode == 1


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("registry:support@canary", "no label 'canary'"),
        ("registry:support@7", "has no version 7"),
        ("registry:ghost", "No registry model named 'ghost'"),
        ("registry:support@Bad!", "must be a version number"),
    ],
)
def test_an_unknown_registry_target_exits_2(project: Project, target: str, message: str) -> None:
    succeed(project, "registry", "register", "support", "--alias", "local/echo")
    result = project.gateway("eval", "run", str(registry_suite(project, target=target)))
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
