"""GET /v1/monitoring/drift and /v1/monitoring/drift/{subject}: the reports the drift job (or
`gateway drift report`) stored, for the master key only, with errors in OpenAI's shape."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from gateway.core.drift_config import DriftSection
from gateway.drift.service import Drift
from gateway.drift.subjects import Subject, classic, for_call
from gateway.registry.store import RegistryStore
from gateway.store.db import make_engine
from tests.conftest import DEFAULT_MODELS, MASTER_KEY, GatewayFactory

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def feed(parts: Drift, subject: Subject, shift: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = [*rng.normal(0, 1, 150), *rng.normal(shift, 1, 150)]
    name = "x" if subject.kind == "classic" else "latency_ms"  # an LLM signal's column
    for value in values:
        parts.sampler.keep_features(subject, {name: float(value)})


@pytest.fixture
def served(gateway: GatewayFactory, tmp_path: Path) -> tuple[str, dict[str, Subject]]:
    base = gateway({"model_list": DEFAULT_MODELS, "drift": {"interval": 0}})
    engine = make_engine(f"sqlite:///{tmp_path / '.gateway' / 'gateway.db'}")
    section = DriftSection.model_validate(
        {"subjects": [{"min_rows": 100, "reference": {"rows": 150}, "embeddings": False}]}
    )
    parts = Drift.build(section, engine, RegistryStore(engine), None)
    found = {
        "drifting": classic("churn", 3),
        "steady": for_call("gpt-4o", "triage", "3f2a9c01b7de"),
        "other": for_call("claude", None, None),
    }
    for seed, (name, subject) in enumerate(found.items()):
        feed(parts, subject, 2.0 if name == "drifting" else 0.0, seed)
    asyncio.run(parts.sampler.flush())
    for subject in found.values():
        parts.monitor.evaluate(subject)
    parts.monitor.evaluate(found["drifting"])  # a second report in its history
    engine.dispose()
    return base, found


def get(base: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{base}{path}", params=params, headers=ADMIN, timeout=30)


def test_the_latest_report_of_every_subject(served: tuple[str, dict[str, Subject]]) -> None:
    base, found = served
    answer = get(base, "/v1/monitoring/drift")
    assert answer.status_code == 200
    reports = {r["subject"]: r for r in answer.json()["data"]}
    assert set(reports) == {s.id for s in found.values()}
    drifting = reports[found["drifting"].id]
    assert drifting["state"] == "drift"
    assert drifting["drifted_columns"] == ["x"]
    assert drifting["reference"]["rows"] == 150
    assert drifting["current"] == {
        "rows": 150,
        "min_rows": 100,
        "first": drifting["current"]["first"],
        "last": drifting["current"]["last"],
    }
    [column] = drifting["columns"]
    assert [(t["test"], t["threshold"], t["drifted"], t["role"]) for t in column["tests"]] == [
        ("ks", 0.05, True, "verdict"),
        ("psi", 0.1, True, "reported"),
    ]
    assert reports[found["steady"].id]["state"] == "no_drift"


def test_filters_by_model_and_prompt(served: tuple[str, dict[str, Subject]]) -> None:
    base, found = served

    def subjects(**params: Any) -> set[str]:
        return {r["subject"] for r in get(base, "/v1/monitoring/drift", **params).json()["data"]}

    assert subjects(model="churn") == {found["drifting"].id}
    assert subjects(model="gpt-4o") == {found["steady"].id}
    assert subjects(prompt="triage") == {found["steady"].id}
    assert subjects(prompt="triage@3f2a9c01b7de") == {found["steady"].id}
    assert subjects(prompt="triage@000000000000") == set()
    for malformed in ("@", "triage@", "@3f2a9c01b7de"):
        refused = get(base, "/v1/monitoring/drift", prompt=malformed)
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "prompt"
        assert "NAME@VERSION" in refused.json()["error"]["message"]


def test_a_subjects_history_newest_first(served: tuple[str, dict[str, Subject]]) -> None:
    base, found = served
    subject = found["drifting"].id
    answer = get(base, f"/v1/monitoring/drift/{subject}")
    assert answer.status_code == 200
    body = answer.json()
    assert body["subject"] == subject
    assert len(body["data"]) == 2
    assert body["data"][0]["computed_at"] >= body["data"][1]["computed_at"]
    assert len(get(base, f"/v1/monitoring/drift/{subject}", limit=1).json()["data"]) == 1
    prompt_subject = found["steady"].id  # prompt:NAME@VERSION:ALIAS, colons and all
    assert get(base, f"/v1/monitoring/drift/{prompt_subject}").status_code == 200


@pytest.mark.parametrize(
    ("path", "params", "status", "says"),
    [
        ("/v1/monitoring/drift/nonsense", {}, 400, "is not a drift subject"),
        ("/v1/monitoring/drift/model:never-sampled", {}, 404, "No drift report for"),
        ("/v1/monitoring/drift/classic:churn@3", {"limit": 0}, 400, "'limit' must be from 1"),
        ("/v1/monitoring/drift/classic:churn@3", {"limit": "x"}, 400, "limit"),
    ],
)
def test_bad_requests_are_answered_in_openais_shape(
    served: tuple[str, dict[str, Subject]],
    path: str,
    params: dict[str, Any],
    status: int,
    says: str,
) -> None:
    base, _ = served
    answer = get(base, path, **params)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert says in error["message"]
    assert error["type"] == "invalid_request_error"


def test_only_the_master_key_reads_drift(served: tuple[str, dict[str, Subject]]) -> None:
    base, _ = served
    assert httpx.get(f"{base}/v1/monitoring/drift").status_code == 401
    key = httpx.post(f"{base}/v1/keys", json={"name": "app"}, headers=ADMIN).json()["key"]
    other = httpx.get(f"{base}/v1/monitoring/drift", headers={"Authorization": f"Bearer {key}"})
    assert other.status_code == 403
    assert other.json()["error"]["type"] == "permission_error"
