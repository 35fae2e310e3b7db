"""Eval suites end to end: the CLI runs a suite through the gateway, judges, reports, stores
the run, caches answers, and gates promotion."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import MASTER_KEY, GatewayFactory, Project
from tests.fakes.upstream import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent

GOOD = """---
model: {model}
input:
  schema:
    name: string
---
{{{{role "user"}}}}
Please greet {{{{name}}}} warmly.
"""
WORSE = GOOD.replace("Please greet {{{{name}}}} warmly.", "Please greet them.")


NAMES = ["Ana", "Bo", "Cy"]


def greet_suite(project: Project, **extra: Any) -> Path:
    cases = [{"id": f"greet-{n.lower()}", "vars": {"name": n}} for n in NAMES]
    spec = {
        "target": "prompt:greet@latest",
        "baseline": "prompt:greet@production",
        "defaults": {"assert": [{"type": "contains", "value": "{{name}}"}]},
        "cases": cases,
        **extra,
    }
    return project.suite("greet", **spec)


def test_worse_version_exits_1_and_names_regressed_cases(project: Project) -> None:
    project.prompt(GOOD.format(model="local/echo"))
    assert project.gateway("prompts", "sync").returncode == 0  # v1 becomes production
    project.prompt(WORSE.format(model="local/echo"))  # v2: latest, picked up on start
    suite = greet_suite(project)
    reports = project.root / "reports"
    result = project.gateway(
        "eval",
        "run",
        str(suite),
        "--junit",
        str(reports / "greet.junit.xml"),
        "--json",
        str(reports / "greet.json"),
        "--markdown",
        str(reports / "greet.md"),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED: pass rate 0.0% is below the threshold 100.0%" in result.stdout
    markdown = (reports / "greet.md").read_text()
    assert "Regressed cases" in markdown
    for name in NAMES:
        assert f"`greet-{name.lower()}`" in markdown
    assert "expected output to contain" in markdown
    # JUnit parses and counts the failures.
    suite_xml = ET.parse(reports / "greet.junit.xml").getroot().find("testsuite")
    assert suite_xml is not None
    assert (suite_xml.get("tests"), suite_xml.get("failures")) == ("3", "3")
    assert len(suite_xml.findall("testcase/failure")) == 3
    report = json.loads((reports / "greet.json").read_text())
    assert report["verdict"]["regressed"] == [f"greet-{n.lower()}" for n in NAMES]
    assert report["baseline"]["pass_rate"] == 1.0

    # The good version passes alone (exit 0) and both runs are stored, linked to versions.
    good = project.gateway("eval", "run", str(suite), "--target", "prompt:greet@production")
    assert good.returncode == 0, good.stdout + good.stderr


def test_runs_are_stored_and_gate_promotion(project: Project, gateway: GatewayFactory) -> None:
    project.prompt(GOOD.format(model="local/echo"))
    assert project.gateway("prompts", "sync").returncode == 0
    project.prompt(GOOD.format(model="local/echo").replace("warmly", "very warmly"))
    synced = project.gateway("prompts", "sync")
    v2 = synced.stdout.split("greet@")[1].split()[0]
    refused = project.gateway("prompts", "promote", "greet", v2, "--require-eval", "greet")
    assert refused.returncode == 1
    assert "no passing run" in refused.stderr

    suite = greet_suite(project, baseline=None)
    assert project.gateway("eval", "run", str(suite)).returncode == 0
    allowed = project.gateway(
        "prompts", "promote", "greet", v2, "--require-eval", "evals/greet.yaml"
    )
    assert allowed.returncode == 0, allowed.stderr

    base = gateway(
        yaml.safe_load((project.root / "gateway.yaml").read_text()),
        prompts_dir=project.root / "prompts",
        data_dir=project.root / "data",
    )
    runs = httpx.get(
        f"{base}/v1/evals/runs",
        params={"suite": "greet"},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    ).json()["data"]
    assert [(r["version"], r["passed"]) for r in runs] == [(f"greet@{v2}", True)]
    one = httpx.get(
        f"{base}/v1/evals/runs/{runs[0]['id']}", headers={"Authorization": f"Bearer {MASTER_KEY}"}
    ).json()
    assert one["report"]["candidate"]["results"][0]["status"] == "PASS"


def test_rerun_is_served_from_the_cache(project: Project, upstream: FakeUpstream) -> None:
    project.prompt(GOOD.format(model="fake"))
    suite = greet_suite(project, baseline=None)
    first = project.gateway("eval", "run", str(suite))
    assert first.returncode == 0, first.stdout + first.stderr  # "echo: Please greet Ana..."
    calls = upstream.calls(project.upstream_model)
    assert calls == 3
    second = project.gateway("eval", "run", str(suite))
    assert second.returncode == first.returncode
    assert upstream.calls(project.upstream_model) == calls  # no upstream call on a rerun
    fresh = project.gateway("eval", "run", str(suite), "--no-cache")
    assert fresh.returncode == first.returncode
    assert upstream.calls(project.upstream_model) == calls + 3


def test_judge_failure_is_an_error_not_a_failure(project: Project) -> None:
    project.prompt(GOOD.format(model="local/echo"))
    # The fake upstream answers "echo: ...", never a verdict: every judgement is unparseable.
    suite = greet_suite(
        project,
        baseline=None,
        judge="fake",
        defaults={"assert": [{"type": "llm-rubric", "value": "The greeting is warm."}]},
    )
    result = project.gateway("eval", "run", str(suite), "--json", str(project.root / "r.json"))
    assert result.returncode == 1
    report = json.loads((project.root / "r.json").read_text())
    assert report["candidate"]["errors"] == 3
    assert report["candidate"]["failed"] == 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"target": "prompt greet", "cases": [{"assert": [{"type": "contains"}]}]}, "target"),
        ({"target": "prompt:greet", "casez": []}, "unknown key 'casez'"),
        ({"target": "prompt:greet"}, "no cases"),
        ({"target": "prompt:greet", "dataset": "missing.jsonl"}, "dataset file not found"),
        (
            {"target": "prompt:greet", "cases": [{"assert": [{"type": "containz", "value": 1}]}]},
            "did you mean 'contains'",
        ),
    ],
)
def test_invalid_suites_exit_2(project: Project, spec: dict[str, Any], message: str) -> None:
    suite = project.suite("bad", **spec)
    for command in (["eval", "validate", str(suite)], ["eval", "run", str(suite)]):
        result = project.gateway(*command)
        assert result.returncode == 2, result.stdout
        assert message in result.stderr
        assert "Traceback" not in result.stderr


def test_unknown_target_exits_2(project: Project) -> None:
    suite = greet_suite(project, baseline=None)
    result = project.gateway("eval", "run", str(suite))
    assert result.returncode == 2
    assert "No prompt named 'greet'" in result.stderr


def test_shipped_suites_are_valid() -> None:
    suites = sorted(str(p) for p in (ROOT / "evals").glob("*.yaml"))
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "eval", "validate", *suites],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert len(suites) == 3


def test_published_suite_schema_is_current() -> None:
    from gateway.evals.suite import suite_json_schema

    assert (ROOT / "schemas" / "eval.schema.json").read_text() == suite_json_schema()
