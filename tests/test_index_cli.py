"""`gateway index` as an operator runs it: exit codes (0 ok, 1 warn, 2 critical or bad input),
--json, --html; and, with the bundled model, the example collection built from the project's
docs and a retrieval-augmented eval suite answered from it."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, Project, fake_model
from tests.fakes.upstream import FakeUpstream
from tests.index_collections import TOO_LOW, UNTIMED, Spec, build

DIM = 32


def _configure(project: Project, upstream: FakeUpstream, *collections: dict[str, Any]) -> str:
    model = f"text-embedding-3-small,dim={DIM},id=cli-{project.root.name}"
    config = {
        "model_list": [fake_model(upstream, "embed", model)],
        "indexes": {"interval": 0, "collections": list(collections)},
    }
    (project.root / "gateway.yaml").write_text(yaml.safe_dump(config))
    return f"openai/{model}"


def _collection(project: Project, name: str, spec: Spec) -> dict[str, Any]:
    folder = project.root / "collections"
    build(folder / name, spec)
    return {
        "name": name,
        "location": str(folder),
        "model": "embed",
        "source_field": "source",
        "thresholds": UNTIMED,
    }


def _few_others(index: int, payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "embedding_model": "another/model"} if index < 3 else payload


def _stale(index: int, payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "updated_at": "2001-01-01T00:00:00+00:00"}


def test_exit_codes_follow_the_worst_status(project: Project, upstream: FakeUpstream) -> None:
    model = f"openai/text-embedding-3-small,dim={DIM},id=cli-{project.root.name}"
    healthy = _collection(project, "healthy", Spec(dim=DIM, points=300, model=model))
    warned = _collection(
        project, "warned", Spec(dim=DIM, points=300, model=model, payload=_few_others)
    )
    stale = _collection(project, "stale", Spec(dim=DIM, points=300, model=model, payload=_stale))
    stale["timestamp_field"] = "updated_at"
    _configure(project, upstream, healthy, warned, stale)

    ok = project.gateway("index", "check", "--collection", "healthy")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("healthy: ok (qdrant-edge at ")
    assert "recall          ok" in ok.stdout
    assert "[15/15] hnsw_ef curve" in ok.stderr  # progress, one line a step off a terminal

    warn = project.gateway("index", "check", "--collection", "warned")
    assert warn.returncode == 1
    assert "model_mix       warn" in warn.stdout

    everything = project.gateway("index", "check", "--json")
    assert everything.returncode == 2  # the stale one is critical
    answer = json.loads(everything.stdout)
    assert [(h["name"], h["status"]) for h in answer["data"]] == [
        ("healthy", "ok"),
        ("warned", "warn"),
        ("stale", "critical"),
    ]
    assert answer["status"] == "critical"


def test_bad_input_is_one_line_and_exit_2(project: Project, upstream: FakeUpstream) -> None:
    _configure(project, upstream, {"name": "only", "model": "embed"})
    unknown = project.gateway("index", "check", "--collection", "nope")
    assert unknown.returncode == 2
    assert unknown.stderr == "error: no collection 'nope' under indexes.collections (known: only)\n"
    (project.root / "gateway.yaml").write_text(
        yaml.safe_dump({"indexes": {"collections": [{"name": "x", "model": "not-served"}]}})
    )
    broken = project.gateway("index", "check")
    assert broken.returncode == 2
    assert "indexes.collections[0].model: 'not-served' is not a model_name" in broken.stderr


def test_html_report_is_a_self_contained_page(project: Project, upstream: FakeUpstream) -> None:
    model = f"openai/text-embedding-3-small,dim={DIM},id=cli-{project.root.name}"
    low = _collection(project, "low", Spec(dim=DIM, points=2000, model=model, **TOO_LOW))
    _configure(project, upstream, low)
    reports = project.root / "reports"
    result = project.gateway("index", "check", "--html", str(reports))
    assert result.returncode == 2  # recall is critical
    page = (reports / "low.html").read_text()
    assert page.startswith("<!doctype html>")
    assert page.count("<polyline") == 2  # recall and p95 latency per hnsw_ef
    for absent in ("<script", "http://", "https://", "<link"):
        assert absent not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_adopt_records_the_model_and_refuses_another_dimension(
    project: Project, upstream: FakeUpstream
) -> None:
    model = f"openai/text-embedding-3-small,dim={DIM},id=cli-{project.root.name}"
    right = _collection(project, "right", Spec(dim=DIM, points=100, model=model))
    wrong = _collection(project, "wrong", Spec(dim=DIM * 2, points=100, model=model))
    _configure(project, upstream, right, wrong)
    adopted = project.gateway("index", "adopt", "right")
    assert adopted.returncode == 0, adopted.stderr
    assert adopted.stdout == f"right: recorded {model} ({DIM} dimensions) in its metadata\n"
    refused = project.gateway("index", "adopt", "wrong")
    assert refused.returncode == 1
    assert "its vectors have 64 dimensions and embed makes 32" in refused.stderr


@pytest.mark.slow
def test_the_example_collection_serves_the_retrieval_suite(project: Project) -> None:
    """The bundled model, for real: the project's docs embedded through the gateway, checked
    (the dimension measured by a probe through it), and the docs-rag suite answered."""
    shutil.copy(ROOT / "prompts" / "docs-answer.prompt", project.root / "prompts")
    config = yaml.safe_load((ROOT / "config" / "gateway.yaml").read_text())
    config["indexes"]["collections"][0]["location"] = str(project.root / "indexes")
    (project.root / "gateway.yaml").write_text(yaml.safe_dump(config))

    built = project.gateway("index", "build-example")
    assert built.returncode == 0, built.stderr
    assert "embedded by local/all-MiniLM-L6-v2 into" in built.stdout
    again = project.gateway("index", "build-example")
    assert again.stdout.startswith("gateway-docs: up to date")  # nothing changed: no model load

    checked = project.gateway("index", "check", "--json")
    assert checked.returncode == 0, checked.stdout
    health = json.loads(checked.stdout)["data"][0]
    dimension = next(c for c in health["checks"] if c["name"] == "dimension")
    assert dimension["value"] == 384
    assert dimension["details"]["source"] == "measured by embedding a probe text"

    suite = project.gateway("eval", "run", str(ROOT / "evals" / "docs-rag.yaml"), "--no-store")
    assert suite.returncode == 0, suite.stdout + suite.stderr
    assert "3/3 passed" in suite.stdout
