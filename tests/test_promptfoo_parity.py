"""Differential test against promptfoo's documented verdicts (tests/data/promptfoo_parity/).

`parity.yaml` is a suite: each case an answer, assertions as a promptfoo suite writes them, and
the verdict promptfoo gives (from its docs and source; promptfoo itself cannot run here). Every
case goes through the real loader and checks; the cases that need nothing but the answer's text
also run end to end, `gateway eval run` against local/echo, which answers verbatim. Where we
differ on purpose the case says so, and the README's "Differences from promptfoo" table must
name the difference.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.evals.assertions import KNOWN_TYPES, AssertionSpec
from gateway.evals.runner import judge_answer
from gateway.evals.suite import CaseSpec, load_suite
from gateway.evals.verdicts import EvalContext
from tests.conftest import Project

DATA = Path(__file__).resolve().parent / "data" / "promptfoo_parity"
PARITY = DATA / "parity.yaml"
README = Path(__file__).resolve().parent.parent / "README.md"
SUITE = load_suite(PARITY)
CASES = {case.id: case for case in SUITE.cases}


def all_asserts(case: CaseSpec) -> list[AssertionSpec]:
    found = []
    for spec in case.asserts:
        found.append(spec)
        found += spec.asserts or []
    return found


def expected(case: CaseSpec) -> dict[str, Any]:
    meta: dict[str, Any] = case.metadata
    return meta


def context_for(case: CaseSpec) -> EvalContext:
    """The answer as the case describes it: its text, and what else it carries."""
    given: dict[str, Any] = expected(case).get("context") or {}
    embeddings = {
        text: [float(x) for x in vector] for text, vector in given.get("embeddings", {}).items()
    }

    async def judge(prompt: str) -> str:
        return str(given["judge"])

    async def embed(texts: list[str]) -> list[list[float]]:
        return [embeddings[text] for text in texts]

    return EvalContext(
        output=str(case.vars["input"]),
        vars=case.vars,
        latency_ms=given.get("latency_ms"),
        cost_usd=given.get("cost_usd"),
        tool_calls=given.get("tool_calls"),
        tools=SUITE.spec.options["tools"],
        finish_reason=given.get("finish_reason", "stop"),  # local/echo's, end to end
        judge=judge if "judge" in given else None,
        embed=embed if embeddings else None,
        metadata=case.metadata,
        description=case.description,
    )


def test_the_cases_cover_every_type_with_over_a_hundred_assertions() -> None:
    specs = [spec for case in SUITE.cases for spec in all_asserts(case)]
    assert len(specs) >= 100
    assert {spec.base_type for spec in specs} == set(KNOWN_TYPES)
    negated = {spec.base_type for spec in specs if spec.negated}
    assert len(negated) >= 15  # not- across most types
    assert all(expected(case).get("why") for case in SUITE.cases)


@pytest.mark.parametrize("case_id", sorted(CASES))
async def test_verdict_matches_promptfoo(case_id: str) -> None:
    case = CASES[case_id]
    meta = expected(case)
    judged = await judge_answer(case, context_for(case))
    reasons = "; ".join(f"{row['type']}: {row['reason']}" for row in judged.rows)
    assert judged.status == meta["expect"], f"{meta['why']} | {reasons}"
    if "score" in meta:
        assert judged.score == pytest.approx(meta["score"], abs=1e-6), reasons
    if "named_scores" in meta:
        assert judged.named_scores == pytest.approx(meta["named_scores"])


def test_every_difference_is_in_the_readme_table() -> None:
    readme = README.read_text()
    table = readme[readme.index("### Differences from promptfoo") :]
    for case in SUITE.cases:
        meta = expected(case)
        if "difference" in meta:
            assert meta["promptfoo"] != meta["expect"]
            assert meta["difference"] in table, meta["difference"]


def test_list_variables_expand_into_cases_and_templates_render() -> None:
    assert [c.id for c in SUITE.cases if c.id.startswith("matrix")] == ["matrix[1]", "matrix[2]"]
    assert CASES["matrix[2]"].asserts[0].value == "Bo"
    assert CASES["template-boolean"].asserts[0].value == "true"
    assert CASES["list-kept-whole"].vars["items"] == ["a", "b"]
    assert CASES["file-list"].asserts[0].value == ["refund", "credit"]
    assert CASES["file-expected-text"].asserts[0].value == "Hello, World!"


def end_to_end_cases() -> list[CaseSpec]:
    """The cases that need only the answer's text: local/echo can give it."""
    return [case for case in SUITE.cases if "context" not in expected(case)]


def test_end_to_end_through_the_runner_on_local_echo(project: Project) -> None:
    raw = yaml.safe_load(PARITY.read_text())
    keep = {case.id.split("[")[0] for case in end_to_end_cases()}
    raw["cases"] = [case for case in raw["cases"] if case["id"] in keep]
    for name in ("checks.py", "expected.txt", "schema.json", "terms.yaml"):
        shutil.copy(DATA / name, project.root / name)
    suite = project.root / "parity.yaml"
    suite.write_text(yaml.safe_dump(raw, allow_unicode=True))
    report = project.root / "report.json"
    markdown = project.root / "report.md"
    result = project.gateway(
        "eval", "run", str(suite), "--json", str(report), "--markdown", str(markdown), "--no-store"
    )
    assert result.returncode in (0, 1), result.stderr
    candidate = json.loads(report.read_text())["candidate"]
    results = {r["id"]: r for r in candidate["results"]}
    # Named scores are averaged over the run and shown in the report, not only stored.
    assert candidate["metrics"] == {"coverage": 0.5, "quality": 1.0, "tone": 1.0}
    assert "metrics: coverage 0.500, quality 1.000, tone 1.000" in result.stdout
    assert "| metric `coverage` | 0.500 | - |" in markdown.read_text()
    assert len(results) == len(end_to_end_cases()) >= 90
    for case in end_to_end_cases():
        got = results[case.id]
        assert got["output"] == case.vars["input"]  # verbatim, whitespace included
        assert got["status"] == expected(case)["expect"], (case.id, got["assertions"])


# --- datasets: promptfoo's CSV columns ----------------------------------------------------------

CSV = """input,__expected1,__expected2,__metric,__metadata:tier,__metadata:tags[]
"Paris","contains-any: Lyon, Paris",icontains:PARIS,geo,free,"a,b"
"kitten","levenshtein(3):sitting",not-contains:dog,,,
"colour",levenshtein:colour,"python:output.endswith('r')",,,
"Hello  ",Hello  ,starts-with:Hel,,,
"x","grade:Is it short?",is-json,,,
"""


def test_csv_expected_columns_are_read_as_promptfoo_reads_them(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text(CSV)
    (tmp_path / "suite.yaml").write_text("target: model:local/echo\ndataset: rows.csv\n")
    cases = load_suite(tmp_path / "suite.yaml").cases
    first = cases[0]
    assert [(a.type, a.value) for a in first.asserts] == [
        ("contains-any", ["Lyon", "Paris"]),
        ("icontains", "PARIS"),
    ]
    assert {a.metric for a in first.asserts} == {"geo"}
    assert first.metadata == {"tier": "free", "tags": ["a", "b"]}
    assert (cases[1].asserts[0].type, cases[1].asserts[0].threshold) == ("levenshtein", 3)
    assert cases[1].asserts[1].type == "not-contains"
    # `levenshtein:x` gets promptfoo's short-form threshold 0.75: an exact match.
    assert cases[2].asserts[0].threshold == 0.75
    assert (cases[2].asserts[1].type, cases[2].asserts[1].value) == (
        "python",
        "output.endswith('r')",
    )
    # A bare cell is equals against the whole (trimmed) cell.
    assert (cases[3].asserts[0].type, cases[3].asserts[0].value) == ("equals", "Hello")
    assert [(a.type, a.value) for a in cases[4].asserts] == [
        ("llm-rubric", "Is it short?"),
        ("is-json", None),
    ]
    verdicts = [
        asyncio.run(judge_answer(case, EvalContext(output=str(case.vars["input"]), vars={})))
        for case in cases[:4]
    ]
    assert [v.status for v in verdicts] == ["PASS", "PASS", "PASS", "FAIL"]


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("fn:output.length < 10", "JavaScript assertion; the gateway runs Python"),
        ("javascript:output === 'x'", "JavaScript assertion"),
        ("factuality:Paris is the capital", "'factuality' is a promptfoo assertion type"),
    ],
)
def test_csv_forms_the_gateway_cannot_run_are_refused(
    tmp_path: Path, cell: str, message: str
) -> None:
    (tmp_path / "rows.csv").write_text(f'input,__expected\nx,"{cell}"\n')
    (tmp_path / "suite.yaml").write_text("target: model:local/echo\ndataset: rows.csv\n")
    with pytest.raises(Exception, match=re.escape(message)) as caught:
        load_suite(tmp_path / "suite.yaml")
    assert "rows.csv:2: __expected:" in str(caught.value)


# --- files and templates that must not load -------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (
            {"vars": {"input": "x"}, "assert": [{"type": "equals", "value": "file://../../x.txt"}]},
            "is outside the project",
        ),
        (
            {"vars": {"input": "file:///etc/hostname"}, "assert": [{"type": "is-json"}]},
            "is outside the project",
        ),
        (
            {"vars": {"input": "x"}, "assert": [{"type": "equals", "value": "{{ nme }}"}]},
            "'nme' is undefined (variables: input)",
        ),
        (
            {"vars": {"input": []}, "assert": [{"type": "is-json"}]},
            "vars.input is an empty list",
        ),
        (
            {"vars": {"input": "x", "p": "(?i)x"}, "assert": [{"type": "regex", "value": "{{p}}"}]},
            "is not JavaScript",
        ),
        (
            {"vars": {"input": "x"}, "assert": [{"type": "python", "value": "file://nope.py"}]},
            "file not found",
        ),
    ],
)
def test_a_bad_value_stops_the_suite_naming_the_case(
    tmp_path: Path, case: dict[str, Any], message: str
) -> None:
    folder = tmp_path / "project" / "evals"
    folder.mkdir(parents=True)
    (tmp_path / "project" / ".gateway").mkdir()  # the project: the suite may read inside it
    (tmp_path / "x.txt").write_text("outside")
    suite = folder / "bad.yaml"
    suite.write_text(
        yaml.safe_dump({"target": "model:local/echo", "cases": [{"id": "c1", **case}]})
    )
    with pytest.raises(Exception, match=re.escape(message)) as caught:
        load_suite(suite)
    assert f"{suite}: case 'c1'" in str(caught.value)
