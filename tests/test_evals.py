"""Eval suites end to end: the CLI runs a suite through the gateway, judges, reports, stores
the run, caches answers, and gates promotion."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import MASTER_KEY, GatewayFactory, Project, fake_model
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
    # Progress, on stderr: each run names itself, then one line per finished case.
    assert "prompt:greet@latest: 3 cases" in result.stderr
    assert "baseline prompt:greet@production: 3 cases" in result.stderr
    assert len(PROGRESS.findall(result.stderr)) == 6
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


PROGRESS = re.compile(r"^\[(\d+)/(\d+)\] (\S+) (passed|failed|error)\b.*$", re.MULTILINE)


def test_progress_lines_appear_as_cases_finish(project: Project, upstream: FakeUpstream) -> None:
    """Off a terminal (CI), each finished case is one plain line on stderr, written when it
    finishes: the run is not silent until the report."""
    config = yaml.safe_load((project.root / "gateway.yaml").read_text())
    slow = f"id=slow-{project.root.name},latency=600"  # each call takes a while
    config["model_list"].append(fake_model(upstream, "slow", slow))
    (project.root / "gateway.yaml").write_text(yaml.safe_dump(config))
    cases = [{"id": f"case-{i}", "vars": {"input": f"hello {i}"}} for i in (1, 2, 3)]
    suite = project.suite(
        "slow",
        target="model:slow",
        concurrency=1,
        defaults={"assert": [{"type": "contains", "value": "hello"}]},
        cases=cases,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "eval", "run", str(suite), "--no-cache"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=project.env(),
    )
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if PROGRESS.match(line):
            break
    # The first case's line arrived while two slow cases were still to run.
    still_running = process.poll() is None
    _, rest = process.communicate(timeout=120)
    assert still_running, "".join(seen) + rest
    assert process.returncode == 0, "".join(seen) + rest
    lines = PROGRESS.findall("".join(seen) + rest)
    assert [(done, total) for done, total, _, _ in lines] == [("1", "3"), ("2", "3"), ("3", "3")]
    assert sorted(case for _, _, case, _ in lines) == ["case-1", "case-2", "case-3"]
    assert {status for *_, status in lines} == {"passed"}
    assert "model:slow: 3 cases" in "".join(seen)


def test_a_terminal_gets_a_progress_bar(project: Project) -> None:
    project.prompt(GOOD.format(model="local/echo"))
    assert project.gateway("prompts", "sync").returncode == 0
    suite = greet_suite(project, baseline=None)
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "eval", "run", str(suite)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
        cwd=ROOT,
        env=project.env() | {"TERM": "xterm-256color", "COLUMNS": "120"},
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    stdout, _ = process.communicate(timeout=120)
    assert process.returncode == 0, shown.decode(errors="replace")
    text = shown.decode(errors="replace")
    assert "━" in text  # rich's bar
    assert "3/3" in text
    assert not PROGRESS.search(text)  # no plain lines on a terminal
    assert b"3/3 passed" in stdout  # the report itself is unchanged, on stdout


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"target": "prompt greet", "cases": [{"assert": [{"type": "contains"}]}]}, "target"),
        ({"target": "prompt:greet", "casez": []}, "unknown key 'casez': did you mean 'cases'?"),
        (
            {"target": "prompt:greet", "cases": [{"vars": {}, "asert": []}]},
            "cases[0].asert: unknown key 'asert': did you mean 'assert'?",
        ),
        (
            {"target": "prompt:greet", "cases": [{"assert": [{"type": "contains", "valeu": 1}]}]},
            "unknown key 'valeu': did you mean 'value'?",
        ),
        ({"target": "prompt:greet", "defualts": {}}, "did you mean 'defaults'?"),
        (
            {"target": "prompt:greet", "zzz": 1},
            "unknown key 'zzz' (allowed: baseline, cases, concurrency,",
        ),
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


def test_a_misspelt_key_in_a_dataset_row_gets_a_suggestion(project: Project) -> None:
    (project.root / "rows.jsonl").write_text('{"vars": {"input": "hi"}, "asert": []}\n')
    suite = project.suite("rows", target="model:local/echo", dataset="rows.jsonl")
    result = project.gateway("eval", "validate", str(suite))
    assert result.returncode == 2
    assert "rows.jsonl:1: asert: unknown key 'asert': did you mean 'assert'?" in result.stderr


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
    assert len(suites) == 4


def test_published_suite_schema_is_current() -> None:
    from gateway.evals.suite import suite_json_schema

    assert (ROOT / "schemas" / "eval.schema.json").read_text() == suite_json_schema()
