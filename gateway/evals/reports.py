"""Verdicts and reports: terminal table, JUnit XML, JSON and a Markdown pull-request comment."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from gateway.core.wording import plural
from gateway.evals.runner import CaseResult, RunResult
from gateway.evals.suite import SuiteSpec


@dataclass(slots=True)
class Verdict:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    regressed: list[str] = field(default_factory=list)  # passed on the baseline, not now
    improved: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reasons": self.reasons,
            "regressed": self.regressed,
            "improved": self.improved,
        }


def judge_run(candidate: RunResult, baseline: RunResult | None, spec: SuiteSpec) -> Verdict:
    verdict = Verdict(passed=True)
    if candidate.pass_rate < spec.threshold:
        verdict.passed = False
        verdict.reasons.append(
            f"pass rate {candidate.pass_rate:.1%} is below the threshold {spec.threshold:.1%}"
        )
    if baseline is not None:
        before = {c.id: c.status for c in baseline.cases}
        for case in candidate.cases:
            was = before.get(case.id)
            if was == "PASS" and case.status != "PASS":
                verdict.regressed.append(case.id)
            elif was is not None and was != "PASS" and case.status == "PASS":
                verdict.improved.append(case.id)
        drop = baseline.pass_rate - candidate.pass_rate
        if spec.max_regression is not None and drop > spec.max_regression:
            verdict.passed = False
            verdict.reasons.append(
                f"pass rate dropped {drop:.1%} below the baseline's "
                f"(allowed: {spec.max_regression:.1%})"
            )
    return verdict


def _fmt_ms(value: float | None) -> str:
    return f"{value:.0f} ms" if value is not None else "-"


def terminal(candidate: RunResult, baseline: RunResult | None, verdict: Verdict) -> str:
    before = {c.id: c for c in baseline.cases} if baseline else {}
    width = max([len(c.id) for c in candidate.cases] + [4])
    lines = [f"suite {candidate.suite}: {candidate.target} ({candidate.version})"]
    if baseline is not None:
        lines.append(f"baseline: {baseline.target} ({baseline.version})")
    header = f"{'case':{width}}  {'result':6}  {'score':>5}"
    header += "  baseline" if baseline else ""
    lines += [header, "-" * len(header)]
    for case in candidate.cases:
        row = f"{case.id:{width}}  {case.status:6}  {case.score:5.2f}"
        if baseline is not None:
            old = before.get(case.id)
            row += f"  {old.status if old else '-':8}"
        lines.append(row)
        for assertion in case.assertions:
            if not assertion["passed"] or assertion["error"]:
                mark = "error" if assertion["error"] else "fail"
                lines.append(f"{'':{width}}    {mark}: {assertion['type']}: {assertion['reason']}")
        if case.error:
            lines.append(f"{'':{width}}    error: {case.error}")
    lines.append("")
    for run in (candidate, baseline):
        if run is None:
            continue
        s = run.summary()
        lines.append(
            f"{run.target}: {s['passed']}/{s['cases']} passed ({run.pass_rate:.1%}), "
            f"{plural(s['errors'], 'error')}, mean score {run.mean_score:.3f}, "
            f"cost ${run.cost_usd:.6f}, p50 {_fmt_ms(run.p50_latency_ms)}"
        )
        if run.metrics:
            shown = ", ".join(f"{name} {score:.3f}" for name, score in run.metrics.items())
            lines.append(f"{run.target} metrics: {shown}")
    if verdict.regressed:
        lines.append(f"regressed: {', '.join(verdict.regressed)}")
    if verdict.improved:
        lines.append(f"improved: {', '.join(verdict.improved)}")
    lines.append("PASSED" if verdict.passed else "FAILED: " + "; ".join(verdict.reasons))
    return "\n".join(lines) + "\n"


def junit_suite(candidate: RunResult) -> ET.Element:
    """One run as a JUnit <testsuite>; `junit` puts one or several in a file."""
    suite = ET.Element(
        "testsuite",
        name=candidate.suite,
        tests=str(candidate.total),
        failures=str(candidate.count("FAIL")),
        errors=str(candidate.count("ERROR")),
        time=f"{sum((c.latency_ms or 0) for c in candidate.cases) / 1000:.3f}",
    )
    for case in candidate.cases:
        element = ET.SubElement(
            suite,
            "testcase",
            classname=f"{candidate.suite}.{candidate.version}",
            name=case.id,
            time=f"{(case.latency_ms or 0) / 1000:.3f}",
        )
        problems = [a for a in case.assertions if not a["passed"] or a["error"]]
        text = "\n".join(f"{a['type']}: {a['reason']}" for a in problems) or (case.error or "")
        if case.status == "FAIL":
            ET.SubElement(
                element, "failure", message=text.splitlines()[0] if text else ""
            ).text = text
        elif case.status == "ERROR":
            ET.SubElement(
                element, "error", message=text.splitlines()[0] if text else ""
            ).text = text
        if case.output is not None:
            ET.SubElement(element, "system-out").text = case.output
    return suite


def junit_not_run(suite: str, problem: str) -> ET.Element:
    """A suite that could not run (invalid, unknown target) as one errored test, so a CI
    report shows it rather than nothing."""
    element = ET.Element("testsuite", name=suite, tests="1", failures="0", errors="1", time="0")
    case = ET.SubElement(element, "testcase", classname=suite, name="(suite)", time="0")
    ET.SubElement(case, "error", message=problem.splitlines()[0]).text = problem
    return element


def junit(suites: list[ET.Element]) -> str:
    root = ET.Element("testsuites")
    root.extend(suites)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def json_report(candidate: RunResult, baseline: RunResult | None, verdict: Verdict) -> str:
    report = {
        "suite": candidate.suite,
        "verdict": verdict.to_dict(),
        "candidate": candidate.to_dict(),
        "baseline": baseline.to_dict() if baseline else None,
    }
    return json.dumps(report, indent=2) + "\n"


def _cell(text: str | None, limit: int = 80) -> str:
    text = (text or "").replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _failure(case: CaseResult) -> str:
    problems = [a for a in case.assertions if not a["passed"] or a["error"]]
    if problems:
        return "; ".join(f"{a['type']}: {a['reason']}" for a in problems)
    return case.error or ""


def _metric(run: RunResult, name: str) -> str:
    score = run.metrics.get(name)
    return "-" if score is None else f"{score:.3f}"


def markdown(candidate: RunResult, baseline: RunResult | None, verdict: Verdict) -> str:
    icon = "✅" if verdict.passed else "❌"
    lines = [f"### {icon} Eval `{candidate.suite}`: {'passed' if verdict.passed else 'failed'}", ""]
    for reason in verdict.reasons:
        lines.append(f"- {reason}")
    if verdict.reasons:
        lines.append("")
    lines += ["| | candidate | baseline |", "| --- | --- | --- |"]
    rows: list[tuple[str, Any]] = [
        ("target", lambda r: f"`{r.version}`"),
        ("pass rate", lambda r: f"{r.pass_rate:.1%} ({r.count('PASS')}/{r.total})"),
        ("errors", lambda r: str(r.count("ERROR"))),
        ("mean score", lambda r: f"{r.mean_score:.3f}"),
        ("cost", lambda r: f"${r.cost_usd:.6f}"),
        ("p50 latency", lambda r: _fmt_ms(r.p50_latency_ms)),
    ]
    for metric in sorted({*candidate.metrics, *(baseline.metrics if baseline else {})}):
        rows.append((f"metric `{metric}`", lambda r, m=metric: _metric(r, m)))
    for name, show in rows:
        lines.append(f"| {name} | {show(candidate)} | {show(baseline) if baseline else '-'} |")
    lines.append("")
    by_id = {c.id: c for c in candidate.cases}
    if verdict.regressed:
        lines += ["**Regressed cases** (passed on the baseline):", ""]
        lines += ["| case | now | why |", "| --- | --- | --- |"]
        for case_id in verdict.regressed:
            case = by_id[case_id]
            lines.append(f"| `{case_id}` | {case.status} | {_cell(_failure(case), 120)} |")
        lines.append("")
    if verdict.improved:
        lines.append(f"**Improved cases:** {', '.join(f'`{c}`' for c in verdict.improved)}")
        lines.append("")
    failing = [c for c in candidate.cases if c.status != "PASS" and c.id not in verdict.regressed]
    if failing:
        lines += ["<details><summary>Other failing cases</summary>", ""]
        lines += ["| case | result | why |", "| --- | --- | --- |"]
        for case in failing:
            lines.append(f"| `{case.id}` | {case.status} | {_cell(_failure(case), 120)} |")
        lines += ["", "</details>", ""]
    return "\n".join(lines)


def markdown_not_run(suite: str, problem: str) -> str:
    lines = [f"### ⚠️ Eval `{suite}`: could not run", "", "```", problem, "```", ""]
    return "\n".join(lines)
