"""`gateway eval run` over several suites or a folder: every suite runs (one gateway for all),
each is reported, and the exit code is the worst of them (2 invalid > 1 failed > 0 passed)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from tests.conftest import Project


def echo_suite(folder: Path, name: str, expected: str, **extra: Any) -> Path:
    """A suite on local/echo: the answer is the input, so `expected` decides pass or fail."""
    import yaml

    spec = {
        "target": "model:local/echo",
        "cases": [
            {"id": f"{name}-1", "vars": {"input": "hello"}},
            {"id": f"{name}-2", "vars": {"input": "hello again"}},
        ],
        "defaults": {"assert": [{"type": "contains", "value": expected}]},
        **extra,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_folder_runs_every_suite_and_exits_with_the_worst(project: Project) -> None:
    evals = project.root / "evals"
    echo_suite(evals, "alpha", "hello")
    echo_suite(evals, "beta", "goodbye")  # fails
    (evals / "data.jsonl").write_text('{"vars": {"input": "not a suite"}}\n')  # not a suite
    reports = project.root / "reports"
    result = project.gateway(
        *("eval", "run", str(evals), "--no-store"),
        *("--junit", str(reports / "all.junit.xml"), "--json", str(reports / "all.json")),
        "--markdown",
        str(reports / "all.md"),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    # Each suite's own report, in name order, then one line per suite.
    out = result.stdout
    assert out.index("suite alpha:") < out.index("suite beta:")
    assert "PASSED" in out
    assert "FAILED: pass rate 0.0% is below the threshold 100.0%" in out
    summary = out[out.index("2 suites:") :].splitlines()
    assert summary == ["2 suites: 1 passed, 1 failed", "  alpha  passed", "  beta   failed"]
    # Progress names the suite when there are several.
    assert "alpha: model:local/echo: 2 cases" in result.stderr
    assert "beta: model:local/echo: 2 cases" in result.stderr
    # The gateway started once for all of them.
    assert result.stderr.count("starting the gateway in process") == 1

    junit = ET.parse(reports / "all.junit.xml").getroot()
    suites = junit.findall("testsuite")
    assert [(s.get("name"), s.get("failures")) for s in suites] == [("alpha", "0"), ("beta", "2")]
    combined = json.loads((reports / "all.json").read_text())
    assert [r["suite"] for r in combined["suites"]] == ["alpha", "beta"]
    assert combined["passed"] is False
    markdown = (reports / "all.md").read_text()
    assert "Eval `alpha`: passed" in markdown
    assert "Eval `beta`: failed" in markdown


def test_several_suites_that_pass_exit_0(project: Project) -> None:
    first = echo_suite(project.root / "a", "first", "hello")
    second = echo_suite(project.root / "b", "second", "hello")
    result = project.gateway("eval", "run", str(first), str(second), "--no-store")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 suites: 2 passed" in result.stdout


def test_an_invalid_suite_does_not_stop_the_others_and_exits_2(project: Project) -> None:
    evals = project.root / "evals"
    echo_suite(evals, "good", "hello")
    echo_suite(evals, "failing", "goodbye")
    (evals / "typo.yaml").write_text("target: model:local/echo\ncasez: []\n")
    echo_suite(evals, "unknown", "hello", target="prompt:nope")
    reports = project.root / "reports"
    result = project.gateway(
        *("eval", "run", str(evals), "--no-store", "--junit", str(reports / "all.xml"))
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "typo.yaml:2: casez: unknown key 'casez': did you mean 'cases'?" in result.stderr
    assert "suite good:" in result.stdout
    assert "suite failing:" in result.stdout
    lines = result.stdout[result.stdout.index("4 suites:") :].splitlines()
    assert lines[0] == "4 suites: 1 passed, 1 failed, 2 could not run"
    assert "  typo     could not run" in lines
    assert "  unknown  could not run" in lines
    # CI's JUnit view shows the suites that could not run as errors, not as nothing.
    junit = ET.parse(reports / "all.xml").getroot()
    errors = {s.get("name"): s.get("errors") for s in junit.findall("testsuite")}
    assert errors == {"failing": "0", "good": "0", "typo": "1", "unknown": "1"}


def test_an_empty_folder_is_bad_input(project: Project) -> None:
    (project.root / "empty").mkdir()
    result = project.gateway("eval", "run", str(project.root / "empty"))
    assert result.returncode == 2
    assert "no suite files (*.yaml, *.yml)" in result.stderr
    missing = project.gateway("eval", "run", str(project.root / "nope.yaml"))
    assert missing.returncode == 2
    assert "nope.yaml: no such file or folder" in missing.stderr
