"""`gateway drift report`: exit 0 without drift, 1 with it, 2 on bad input; the reports as
text, JSON and an offline HTML page."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
import yaml

from gateway.core.config import load_config
from gateway.drift.service import Drift
from gateway.drift.subjects import Subject, classic
from gateway.store.db import make_engine, migrate
from tests.conftest import Project

DRIFTING, STEADY = classic("churn", 3), classic("fraud", 1)


def configure(project: Project, **drift: Any) -> None:
    path = project.root / "gateway.yaml"
    config = yaml.safe_load(path.read_text())
    entry = {"min_rows": 100, "reference": {"rows": 150}, "embeddings": False}
    config["drift"] = {"subjects": [entry], **drift}
    path.write_text(yaml.safe_dump(config))


def sample(project: Project, subjects: dict[Subject, float]) -> None:
    (project.root / "data").mkdir(exist_ok=True)
    engine = make_engine(f"sqlite:///{project.root / 'data' / 'gateway.db'}")
    migrate(engine)
    parts = Drift.build(load_config(project.root / "gateway.yaml").drift, engine, None, None)
    rng = np.random.default_rng(0)
    for subject, shift in subjects.items():
        values = [*rng.normal(0, 1, 150), *rng.normal(shift, 1, 150)]
        for i, value in enumerate(values):
            kind = "a" if shift and i >= 150 and i % 2 else "abc"[i % 3]  # "a" half the time
            parts.sampler.keep_features(subject, {"x": float(value), "kind": kind})
    asyncio.run(parts.sampler.flush())
    engine.dispose()


@pytest.fixture
def sampled(project: Project) -> Project:
    configure(project)
    sample(project, {DRIFTING: 2.0, STEADY: 0.0})
    return project


def test_exit_1_when_a_subject_drifted_0_when_none(sampled: Project) -> None:
    every = sampled.gateway("drift", "report")
    assert every.returncode == 1, every.stderr
    lines = every.stdout.splitlines()
    assert any(line.startswith(f"{DRIFTING.id}  DRIFT  ") for line in lines), every.stdout
    assert any(line.startswith(f"{STEADY.id}  ok  0/2 columns") for line in lines), every.stdout
    assert "[2/2]" in every.stderr  # progress, a line per subject off a terminal
    steady = sampled.gateway("drift", "report", "--model", "fraud")
    assert steady.returncode == 0, steady.stderr
    assert DRIFTING.id not in steady.stdout


def test_json_and_html(sampled: Project) -> None:
    page = sampled.root / "drift.html"
    done = sampled.gateway("drift", "report", "--json", "--html", str(page))
    assert done.returncode == 1, done.stderr
    reports = {r["subject"]: r for r in json.loads(done.stdout)["data"]}
    assert reports[DRIFTING.id]["state"] == "drift"
    assert reports[STEADY.id]["state"] == "no_drift"
    html = page.read_text()
    assert "<script" not in html  # offline: nothing to run or fetch
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert html.count("<svg") == 2  # one chart per drifted column (x and kind)
    assert f"<h2>{DRIFTING.id}</h2>" in html


def test_nothing_sampled_yet_is_no_drift(project: Project) -> None:
    (project.root / "data").mkdir()
    done = project.gateway("drift", "report")
    assert done.returncode == 0, done.stderr
    assert "no subject has drift samples yet" in done.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--model", "churn", "--prompt", "p"], "give --model or --prompt, not both"),
        (["--prompt", "nothing"], "no sampled subject matches --prompt nothing"),
        (["--prompt", "@"], "--prompt must be a prompt NAME or NAME@VERSION"),
        (["--prompt", "triage@"], "--prompt must be a prompt NAME or NAME@VERSION"),
        (["--html", "/nonexistent/dir/x.html"], "--html /nonexistent/dir/x.html: no such folder"),
    ],
)
def test_bad_input_exits_2_with_one_line(sampled: Project, args: list[str], says: str) -> None:
    done = sampled.gateway("drift", "report", *args)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {says}"), done.stderr
    assert "Traceback" not in done.stderr


def test_a_webhook_secret_from_an_unset_variable_exits_2(project: Project) -> None:
    configure(project, webhook={"url": "http://127.0.0.1:9/x", "secret": "os.environ/NOT_SET_X"})
    done = project.gateway("drift", "report")
    assert done.returncode == 2
    assert "drift.webhook.secret: environment variable NOT_SET_X is not set" in done.stderr
