"""The registry store on SQLite and PostgreSQL: numbering, refs, labels and their history,
lineage both ways, and the eval gate on promotion."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import Engine

from gateway.core.errors import BadRequest, NotFound, PermissionDenied
from gateway.core.model_refs import ModelRef, parse_ref
from gateway.evals.store import EvalStore
from gateway.registry.models import RegistryLabelSet
from gateway.registry.promotion import promote
from gateway.registry.spec import VersionSpec
from gateway.registry.store import RegistryStore

ALIASES = ["local/echo", "fake"]


def register(store: RegistryStore, name: str, **fields: Any) -> dict[str, Any]:
    fields.setdefault("alias", "local/echo")
    spec = VersionSpec.model_validate(fields)
    return store.register(name, spec, aliases=ALIASES, actor="tester").model_dump()


def shown(answer: BaseModel | list[Any]) -> Any:
    """An answer as the API shows it (JSON field names)."""
    if isinstance(answer, list):
        return [shown(item) for item in answer]
    return answer.model_dump()


def eval_report(suite: str, version: str, passed: bool) -> dict[str, Any]:
    candidate = {
        "target": version,
        "version": version,
        "pass_rate": 1.0 if passed else 0.0,
        "mean_score": 1.0 if passed else 0.0,
        "cases": 2,
        "failed": 0 if passed else 2,
        "errors": 0,
        "cost_usd": 0.0,
    }
    return {"suite": suite, "verdict": {"passed": passed}, "candidate": candidate, "baseline": None}


def test_versions_are_numbered_per_model_and_refs_resolve(engine: Engine) -> None:
    store = RegistryStore(engine)
    first = register(
        store,
        "support",
        base="gpt-4o-mini-2024-07-18",
        dataset="s3://data/train.jsonl",
        dataset_hash="AB" * 32,
        hyperparameters={"learning_rate": 2e-4, "epochs": 3},
        tags=["fine-tune"],
        metadata={"ticket": "ML-12"},
        description="first cut",
    )
    assert (first["ref"], first["kind"], first["created_by"]) == ("support@1", "llm", "tester")
    assert first["base"] == {"kind": "external", "ref": "gpt-4o-mini-2024-07-18"}
    assert first["dataset_hash"] == "sha256:" + "ab" * 32  # normalized
    assert first["hyperparameters"] == {"learning_rate": 2e-4, "epochs": 3}
    assert (first["tags"], first["metadata"]) == (["fine-tune"], {"ticket": "ML-12"})
    register(store, "support", alias="fake", kind="classic", created_by="ana")
    register(store, "other")
    third = register(store, "support")
    assert third["version"] == 3
    assert [v["version"] for v in shown(store.model("support"))["versions"]] == [1, 2, 3]
    assert shown(store.version(ModelRef("support", "2")))["created_by"] == "ana"
    assert shown(store.version(ModelRef("support", "2")))["kind"] == "classic"
    assert store.resolve(parse_ref("support")) == 3
    assert store.resolve(parse_ref("support@latest")) == 3
    assert store.resolve(parse_ref("registry:other@1")) == 1
    assert [(m["name"], m["latest"]) for m in shown(store.models())] == [
        ("other", 1),
        ("support", 3),
    ]

    with pytest.raises(NotFound, match=r"has no version 4 \(latest is 3\)"):
        store.resolve(ModelRef("support", "4"))
    with pytest.raises(NotFound, match="No registry model named 'ghost'"):
        store.version(ModelRef("ghost"))
    with pytest.raises(NotFound, match=r"no label 'canary' \(labels: none yet"):
        store.resolve(ModelRef("support", "canary"))
    with pytest.raises(BadRequest, match="ref 'Prod!' must be"):
        parse_ref("support@Prod!")
    with pytest.raises(BadRequest, match=r"unknown alias 'gpt-5'.*known: fake, local/echo"):
        register(store, "support", alias="gpt-5")
    with pytest.raises(BadRequest, match="model name 'a/b'"):
        register(store, "a/b")
    assert store.resolve(ModelRef("support")) == 3  # failed registrations left nothing


def test_labels_move_and_every_move_is_recorded(engine: Engine) -> None:
    store = RegistryStore(engine)
    for _ in range(3):
        register(store, "support")
    moved = shown(store.set_label("support", "production", 1, approver="ana", actor="ci"))
    assert (moved["from"], moved["to"], moved["moved"]) == (None, 1, True)
    store.set_label("support", "production", 2, approver="bo", actor="ci", reason="better")
    same = shown(store.set_label("support", "production", 2, approver="bo", actor="ci"))
    assert not same["moved"]  # nothing moved, nothing recorded
    store.set_label("support", "staging", 3, approver="cy", actor="ci")
    assert store.resolve(ModelRef("support", "production")) == 2
    assert shown(store.version(ModelRef("support", "staging")))["labels"] == ["staging"]
    assert shown(store.model("support"))["labels"] == {"production": 2, "staging": 3}

    trail = shown(store.history("support"))
    assert [(m["label"], m["from"], m["to"], m["approver"]) for m in trail] == [
        ("production", None, 1, "ana"),
        ("production", 1, 2, "bo"),
        ("staging", None, 3, "cy"),
    ]
    assert trail[1]["reason"] == "better"
    assert trail[1]["actor"] == "ci"
    assert len(store.history("support", "staging")) == 1

    with pytest.raises(BadRequest, match="must match"):
        store.set_label("support", "Prod", 1, approver="ana", actor="ci")
    with pytest.raises(BadRequest, match="'latest' always means the newest version"):
        store.set_label("support", "latest", 1, approver="ana", actor="ci")
    with pytest.raises(NotFound, match="has no version 9"):
        store.set_label("support", "canary", 9, approver="ana", actor="ci")
    with pytest.raises(NotFound, match="No registry model named 'ghost'"):
        store.history("ghost")
    with pytest.raises(NotFound, match="labels: production, staging"):
        store.resolve(ModelRef("support", "canary"))


def test_lineage_walks_up_to_the_external_base_and_down_through_fine_tunes(
    engine: Engine,
) -> None:
    store = RegistryStore(engine)
    register(store, "base-ft", base="gpt-4o-mini-2024-07-18")
    register(store, "base-ft", base="base-ft@1")
    store.set_label("base-ft", "production", 1, approver="ana", actor="ci")
    # A label is resolved when the version is registered: moving it later changes nothing.
    child = register(store, "support", base="base-ft@production")
    store.set_label("base-ft", "production", 2, approver="ana", actor="ci")
    register(store, "support-small", base="registry:support@1")
    external = register(store, "other", base="hf:meta-llama/Llama-3.1-8B@main")

    assert child["base"] == {
        "kind": "registry",
        "name": "base-ft",
        "version": 1,
        "ref": "base-ft@1",
    }
    assert external["base"] == {"kind": "external", "ref": "hf:meta-llama/Llama-3.1-8B@main"}

    up = shown(store.lineage(ModelRef("support-small")))
    assert [v["ref"] for v in up["ancestors"]] == ["support@1", "base-ft@1"]
    assert up["ancestors"][-1]["base"]["ref"] == "gpt-4o-mini-2024-07-18"
    assert up["descendants"] == []

    down = shown(store.lineage(ModelRef("base-ft", "1")))
    assert down["version"]["ref"] == "base-ft@1"
    assert down["ancestors"] == []
    assert [(v["ref"], v["depth"]) for v in down["descendants"]] == [
        ("base-ft@2", 1),
        ("support@1", 1),
        ("support-small@1", 2),
    ]
    assert shown(store.lineage(ModelRef("base-ft", "production")))["descendants"] == []

    with pytest.raises(NotFound, match="base 'ghost@1': No registry model named 'ghost'"):
        register(store, "support", base="ghost@1")
    with pytest.raises(NotFound, match=r"base 'support@7'.*no version 7"):
        register(store, "support", base="support@7")


def test_concurrent_registrations_get_distinct_numbers(engine: Engine) -> None:
    store = RegistryStore(engine)
    numbers: list[int] = []
    errors: list[Exception] = []
    start = threading.Barrier(6)

    def one() -> None:
        start.wait()
        try:
            numbers.append(register(store, "busy")["version"])
        except Exception as exc:  # collected: the assertion below shows what went wrong
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(numbers) == [1, 2, 3, 4, 5, 6]


def test_promotion_requires_a_passing_run_of_the_suite(engine: Engine) -> None:
    store, evals = RegistryStore(engine), EvalStore(engine)
    register(store, "support")
    register(store, "support")
    ref = ModelRef("support", "2")

    def gated() -> RegistryLabelSet:
        return promote(
            store, evals, ref, "production", approver="ana", actor="ci", require_eval="triage"
        )

    with pytest.raises(PermissionDenied, match="suite 'triage' has no passing run") as refused:
        gated()
    assert refused.value.code == "eval_required"
    assert "--target registry:support@2" in refused.value.message
    evals.record(eval_report("triage", "registry:support@2", passed=False))
    evals.record(eval_report("triage", "registry:support@1", passed=True))  # another version
    evals.record(eval_report("other", "registry:support@2", passed=True))  # another suite
    with pytest.raises(PermissionDenied):
        gated()
    run_id = evals.record(eval_report("triage", "registry:support@2", passed=True))
    moved = promote(
        store,
        evals,
        ref,
        "production",
        approver="ana",
        actor="ci",
        require_eval="evals/triage.yaml",
    )
    assert (moved.to, moved.eval_run) == (2, run_id)
    entry = shown(store.history("support"))[-1]
    assert (entry["eval_suite"], entry["eval_run"], entry["approver"]) == ("triage", run_id, "ana")
    linked = shown(store.version(ref))["evals"]
    assert {(r["suite"], r["passed"]) for r in linked} == {
        ("triage", True),
        ("triage", False),
        ("other", True),
    }
    with pytest.raises(BadRequest, match="needs an approver"):
        promote(store, evals, ref, "staging", approver="  ", actor="ci")
