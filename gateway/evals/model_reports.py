"""A model test's reports: JSON (what `eval run --json` writes and the run is stored as), a
terminal table, Markdown for a pull request, JUnit. Each shows every metric with its value,
threshold, baseline and verdict."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

from gateway.evals.model_runs import MetricCheck, Scored
from gateway.evals.model_tests import ModelTest

TIE = 1e-9  # metrics closer than this to the baseline's are the same (float noise)


def _reasons(checks: list[MetricCheck]) -> list[str]:
    return [reason for check in checks for reason in check.reasons]


def _side(run: Scored) -> dict[str, Any]:
    return {
        "target": run.target,
        "version": run.version,
        "rows": run.rows,
        "metrics": {name: round(value, 6) for name, value in run.values.items()},
        "cost_usd": round(run.cost_usd, 10),
        "latency_ms": round(run.latency_ms, 3),
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


def report(
    suite: str,
    test: ModelTest,
    candidate: Scored,
    baseline: Scored | None,
    checks: list[MetricCheck],
) -> dict[str, Any]:
    """The run as the eval store keeps it: each metric check counts as a case, so a run's
    pass rate is the share of metrics that met their thresholds."""
    failed = sum(1 for c in checks if not c.passed)
    passed = len(checks) - failed
    rate = passed / len(checks) if checks else 0.0
    verdict = {
        "passed": failed == 0,
        "reasons": _reasons(checks),
        "regressed": [c.name for c in checks if (c.regression or 0.0) > TIE],
        "improved": [c.name for c in checks if (c.regression or 0.0) < -TIE],
    }
    return {
        "suite": suite,
        "kind": "model_test",
        "verdict": verdict,
        "candidate": {
            **_side(candidate),
            "cases": len(checks),
            "passed": passed,
            "failed": failed,
            "errors": 0,
            "pass_rate": round(rate, 4),
            "mean_score": round(rate, 4),
            "results": [c.to_dict() for c in checks],
        },
        "baseline": _side(baseline) if baseline is not None else None,
        "data": {
            "file": str(test.path),
            "rows": test.rows,
            "label": test.data.label,
            "features": test.data.features,
            "positive_class": test.data.positive_class,
            "sensitive": test.data.sensitive,
        },
    }


def json_report(record: dict[str, Any]) -> str:
    return json.dumps(record, indent=2) + "\n"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def terminal(
    suite: str,
    test: ModelTest,
    candidate: Scored,
    baseline: Scored | None,
    checks: list[MetricCheck],
) -> str:
    lines = [
        f"suite {suite}: {candidate.target} ({candidate.version}) on {test.rows} rows of "
        f"{test.path.name}"
    ]
    if baseline is not None:
        lines.append(f"baseline: {baseline.target} ({baseline.version})")
    width = max([len(c.name) for c in checks] + [6])
    header = f"{'metric':{width}}  {'value':>8}  {'baseline':>8}  {'threshold':28}  result"
    lines += [header, "-" * len(header)]
    for check in checks:
        lines.append(
            f"{check.name:{width}}  {check.value:8.4f}  {_number(check.baseline):>8}  "
            f"{check.threshold():28}  {'PASS' if check.passed else 'FAIL'}"
        )
    lines.append("")
    for run in (candidate, baseline):
        if run is not None:
            lines.append(
                f"{run.target}: {run.rows} rows predicted in {run.latency_ms:.0f} ms, "
                f"cost ${run.cost_usd:.6f}"
            )
    reasons = _reasons(checks)
    lines.append("FAILED: " + "; ".join(reasons) if reasons else "PASSED")
    return "\n".join(lines) + "\n"


def markdown(
    suite: str,
    test: ModelTest,
    candidate: Scored,
    baseline: Scored | None,
    checks: list[MetricCheck],
) -> str:
    passed = all(c.passed for c in checks)
    icon = "✅" if passed else "❌"
    lines = [f"### {icon} Model test `{suite}`: {'passed' if passed else 'failed'}", ""]
    lines.append(
        f"`{candidate.version}` on {test.rows} rows of `{test.path.name}`"
        + (f", against `{baseline.version}`" if baseline is not None else "")
    )
    lines.append("")
    for reason in _reasons(checks):
        lines.append(f"- {reason}")
    if not passed:
        lines.append("")
    lines += [
        "| metric | value | baseline | threshold | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for check in checks:
        verdict = "✅ pass" if check.passed else "❌ fail"
        lines.append(
            f"| `{check.name}` | {check.value:.4f} | {_number(check.baseline)} | "
            f"{check.threshold() or '-'} | {verdict} |"
        )
    lines.append("")
    return "\n".join(lines)


def junit_suite(suite: str, candidate: Scored, checks: list[MetricCheck]) -> ET.Element:
    element = ET.Element(
        "testsuite",
        name=suite,
        tests=str(len(checks)),
        failures=str(sum(1 for c in checks if not c.passed)),
        errors="0",
        time=f"{candidate.latency_ms / 1000:.3f}",
    )
    for check in checks:
        case = ET.SubElement(
            element, "testcase", classname=f"{suite}.{candidate.version}", name=check.name
        )
        if not check.passed:
            text = "; ".join(check.reasons)
            ET.SubElement(case, "failure", message=text).text = text
        ET.SubElement(case, "system-out").text = f"{check.name} = {check.value:.6f}"
    return element
