"""Fine-tunes imported from an OpenAI fine-tuning job, served by registry ref: over HTTP and
the CLI, on real gateway servers calling the loopback upstream, with the official SDK."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openai.types.fine_tuning import FineTuningJob

from tests.conftest import (
    MASTER_KEY,
    GatewayFactory,
    Project,
    fake_model,
    sdk,
    seen_within_a_second,
)
from tests.fakes.upstream import FakeUpstream

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
FINETUNES = "/v1/registry/finetunes"
MODELS = "/v1/registry/models"
FIRST = "ft:gpt-4o-mini-2024-07-18:acme:support-bot:AbC123"
SECOND = "ft:gpt-4o-mini-2024-07-18:acme:support-bot:XyZ789"
# $1 per million input tokens, $2 per million output tokens (the fake counts words).
PRICES = {"input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002}
HELLO = [{"role": "user", "content": "hello there"}]


def job(number: int = 1, **fields: Any) -> dict[str, Any]:
    """A job object as OpenAI's API returns it, built and checked by the SDK's own type."""
    data: dict[str, Any] = {
        "id": f"ftjob-{number}abc",
        "object": "fine_tuning.job",
        "model": "gpt-4o-mini-2024-07-18",
        "created_at": 1_721_764_800,
        "finished_at": 1_721_768_400,
        "fine_tuned_model": FIRST if number == 1 else SECOND,
        "organization_id": "org-acme",
        "result_files": [f"file-result{number}"],
        "status": "succeeded",
        "validation_file": f"file-valid{number}",
        "training_file": f"file-train{number}",
        "hyperparameters": {"n_epochs": 3, "batch_size": "auto", "learning_rate_multiplier": 1.8},
        "trained_tokens": 5768,
        "seed": 683058546,
        "method": {
            "type": "supervised",
            "supervised": {
                "hyperparameters": {
                    "n_epochs": 3,
                    "batch_size": "auto",
                    "learning_rate_multiplier": 1.8,
                }
            },
        },
        "estimated_finish": None,
        "integrations": [],
        "metadata": None,
        "error": None,
    }
    data.update(fields)
    return FineTuningJob.model_validate(data).to_dict()


def config(upstream: FakeUpstream) -> dict[str, Any]:
    return {
        "model_list": [
            {"model_name": "local/echo", "litellm_params": {"model": "local/echo"}},
            {**fake_model(upstream, "ft-support", FIRST), "model_info": PRICES},
            {**fake_model(upstream, "ft-support-v2", SECOND), "model_info": PRICES},
            {
                **fake_model(upstream, "fake-embed", "text-embedding-3-small"),
                "model_info": {"mode": "embedding"},
            },
        ]
    }


@pytest.fixture
def base(gateway: GatewayFactory, upstream: FakeUpstream) -> str:
    return gateway(config(upstream))


def post(base: str, path: str, body: Any, key: str = MASTER_KEY, **params: str) -> httpx.Response:
    return httpx.post(
        f"{base}{path}",
        json=body,
        params=params,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def promote(base: str, name: str, label: str, version: int) -> None:
    ok(
        httpx.put(
            f"{base}{MODELS}/{name}/labels/{label}",
            json={"version": version, "approver": "ana"},
            headers=ADMIN,
            timeout=30,
        )
    )


def chat(base: str, model: str, key: str = MASTER_KEY, **extra: Any) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": model, "messages": HELLO, **extra},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def logged(base: str, request_id: str) -> dict[str, Any]:
    row: dict[str, Any] = ok(httpx.get(f"{base}/v1/logs/{request_id}", headers=ADMIN, timeout=30))
    return row


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_an_imported_fine_tune_answers_through_its_production_label(
    base: str, upstream: FakeUpstream
) -> None:
    version = ok(post(base, FINETUNES, job()))
    assert (version["ref"], version["kind"], version["alias"]) == (
        "support-bot@1",
        "llm",
        "ft-support",  # the model_name whose deployment calls the fine-tuned model
    )
    assert version["base"] == {"kind": "external", "ref": "gpt-4o-mini-2024-07-18"}
    assert (version["job_id"], version["dataset"]) == ("ftjob-1abc", "file-train1")
    assert version["hyperparameters"] == {
        "n_epochs": 3,
        "batch_size": "auto",
        "learning_rate_multiplier": 1.8,
    }
    assert version["metadata"]["validation_file"] == "file-valid1"
    assert version["metadata"]["fine_tuned_model"] == FIRST
    assert version["metadata"]["trained_tokens"] == 5768
    promote(base, "support-bot", "production", 1)

    # The official SDK, naming the registry version.
    client = sdk(base)
    raw = client.chat.completions.with_raw_response.create(
        model="registry/support-bot@production", messages=HELLO
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == "echo: hello there"
    assert raw.headers["x-gateway-model-version"] == "support-bot@1"
    assert upstream.last_body(FIRST)["model"] == FIRST  # type: ignore[index]
    cost = float(raw.headers["x-gateway-cost-usd"])
    assert cost == pytest.approx((2 * 1 + 3 * 2) / 1e6)  # 2 words in, "echo: hello there" out

    row = logged(base, raw.headers["x-gateway-request-id"])
    assert (row["model"], row["model_version"], row["status"]) == (
        "ft-support",
        "support-bot@1",
        200,
    )
    assert row["cost_usd"] == pytest.approx(cost)

    # registry/NAME is the production version; @N and @latest name versions.
    for model in ("registry/support-bot", "registry/support-bot@1", "registry/support-bot@latest"):
        answered = chat(base, model)
        assert answered.status_code == 200, answered.text
        assert answered.headers["x-gateway-model-version"] == "support-bot@1"
    assert client.models.retrieve("registry/support-bot@production").id == (
        "registry/support-bot@production"
    )


def test_streams_and_embeddings_name_the_version_too(base: str) -> None:
    ok(post(base, FINETUNES, job()))
    promote(base, "support-bot", "production", 1)
    client = sdk(base)
    with client.chat.completions.with_streaming_response.create(
        model="registry/support-bot@production",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    ) as streamed:
        assert streamed.headers["x-gateway-model-version"] == "support-bot@1"
        request_id = streamed.headers["x-gateway-request-id"]
        chunks = list(streamed.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there"
    assert chunks[-1].usage is not None
    row = logged(base, request_id)
    assert (row["stream"], row["model_version"]) == (True, "support-bot@1")
    assert row["cost_usd"] == pytest.approx(8 / 1e6)

    ok(post(base, f"{MODELS}/embedder/versions", {"alias": "fake-embed"}))
    embedded = client.embeddings.with_raw_response.create(
        model="registry/embedder@latest", input="hello"
    )
    assert len(embedded.parse().data[0].embedding) == 8
    assert embedded.headers["x-gateway-model-version"] == "embedder@1"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_label_move_changes_what_answers_on_every_replica_within_a_second(
    gateway: GatewayFactory, upstream: FakeUpstream, request: pytest.FixtureRequest, database: str
) -> None:
    settings: dict[str, Any] = {}
    if database == "postgresql":
        settings["database_url"] = request.getfixturevalue("pg_url")
    one = gateway(config(upstream), **settings)
    other = gateway(config(upstream), **settings)  # another replica on the same database
    ok(post(one, FINETUNES, job(1)))
    second = ok(post(one, FINETUNES, job(2)))
    assert (second["ref"], second["alias"]) == ("support-bot@2", "ft-support-v2")
    promote(one, "support-bot", "production", 1)
    deadline = time.monotonic() + 30  # the other replica learns the versions and label
    while chat(other, "registry/support-bot").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    promote(one, "support-bot", "production", 2)
    moved_at = time.monotonic()
    # The replica that moved it serves the new version at once.
    assert chat(one, "registry/support-bot").headers["x-gateway-model-version"] == "support-bot@2"
    answers: list[httpx.Response] = []

    def moved() -> bool:
        answers.append(chat(other, "registry/support-bot@production"))
        assert answers[-1].status_code == 200, answers[-1].text
        return answers[-1].headers["x-gateway-model-version"] == "support-bot@2"

    seen_within_a_second(moved_at, moved, "the other replica still serves support-bot@1")
    answered = answers[-1]
    assert answered.json()["model"] == SECOND  # the upstream answered as the new fine-tune
    assert answered.headers["x-gateway-model"].startswith("ft-support-v2")


def test_importing_a_job_twice_registers_it_once(base: str) -> None:
    ok(post(base, FINETUNES, job(), name="support"))
    again = post(base, FINETUNES, job(), name="other")
    error = error_of(again, 409)
    assert error["code"] == "already_imported"
    assert "ftjob-1abc was already imported as support@1" in error["message"]
    assert [m["name"] for m in ok(httpx.get(f"{base}{MODELS}", headers=ADMIN))["data"]] == [
        "support"
    ]
    assert ok(httpx.get(f"{base}{MODELS}/support", headers=ADMIN))["latest"] == 1


def test_a_fine_tune_of_an_imported_fine_tune_is_built_on_its_version(base: str) -> None:
    ok(post(base, FINETUNES, job()))
    again = "ft:gpt-4o-mini-2024-07-18:acme:support-bot:Cc3"
    continued = job(3, model=FIRST, fine_tuned_model=again)
    version = ok(post(base, FINETUNES, continued, alias="local/echo"))
    assert (version["ref"], version["base"]["ref"]) == ("support-bot@2", "support-bot@1")
    lineage = ok(httpx.get(f"{base}{MODELS}/support-bot/lineage", headers=ADMIN, timeout=30))
    assert [v["ref"] for v in lineage["ancestors"]] == ["support-bot@1"]


def test_bad_jobs_are_refused_naming_what_is_wrong(base: str) -> None:
    running = job(status="running", fine_tuned_model=None, finished_at=None)
    error = error_of(post(base, FINETUNES, running), 400)
    assert "ftjob-1abc is 'running'" in error["message"]
    assert "succeeded" in error["message"]
    failed = job(status="failed", fine_tuned_model=None, error={"code": "x", "message": "bad file"})
    assert "'failed': bad file" in error_of(post(base, FINETUNES, failed), 400)["message"]

    not_a_job = {**job(), "object": "file"}
    error = error_of(post(base, FINETUNES, not_a_job), 400)
    assert "object" in error["message"]
    assert "fine_tuning.job" in error["message"]
    missing = {k: v for k, v in job().items() if k != "model"}
    error = error_of(post(base, FINETUNES, missing), 400)
    assert (error["param"], "model: Field required" in error["message"]) == ("model", True)
    listed = {"object": "list", "data": [job()], "has_more": False}
    assert "import one job object" in error_of(post(base, FINETUNES, listed), 400)["message"]
    assert error_of(post(base, FINETUNES, [job()]), 400)["message"]
    # Numbers OpenAI's API never returns: refused at their field, never stored.
    for field, value in [("trained_tokens", -9), ("created_at", -5)]:
        assert error_of(post(base, FINETUNES, {**job(), field: value}), 400)["param"] == field
    epochs = {**job(), "hyperparameters": {"n_epochs": -3}}
    assert "n_epochs" in error_of(post(base, FINETUNES, epochs), 400)["message"]

    # A fine-tune no model_name serves: the entry to add, or --alias.
    unserved = job(fine_tuned_model="ft:gpt-4o-mini-2024-07-18:acme::Zz9")
    error = error_of(post(base, FINETUNES, unserved), 400)
    assert "no model_name in" in error["message"]
    assert "model: openai/ft:gpt-4o-mini-2024-07-18:acme::Zz9" in error["message"]
    assert "--alias" in error["message"]
    error = error_of(post(base, FINETUNES, unserved, alias="nope"), 400)
    assert "unknown alias 'nope'" in error["message"]
    assert "alias" in error_of(post(base, FINETUNES, unserved, alias="x" * 300), 400)["param"]
    assert "id" in error_of(post(base, FINETUNES, {**job(), "id": "f" * 300}), 400)["message"]
    # Given an alias, it registers; no suffix: named after its base.
    served = ok(post(base, FINETUNES, unserved, alias="local/echo"))
    assert served["ref"] == "gpt-4o-mini-2024-07-18-ft@1"

    key = ok(post(base, "/v1/keys", {"name": "app"}))["key"]
    assert error_of(post(base, FINETUNES, job(), key=key), 403)


def test_unknown_names_labels_and_versions_are_404s_naming_them(base: str) -> None:
    refused = chat(base, "registry/nobody@production")
    unknown = error_of(refused, 404)
    assert unknown["code"] == "model_not_found"
    assert "'nobody'" in unknown["message"]
    row = logged(base, refused.headers["x-gateway-request-id"])
    assert (row["model"], row["model_version"], row["status"]) == (
        "registry/nobody@production",
        None,
        404,
    )
    ok(post(base, FINETUNES, job()))
    unlabelled = error_of(chat(base, "registry/support-bot"), 404)
    assert "labelled 'production'" in unlabelled["message"]
    assert "gateway registry promote support-bot@N production" in unlabelled["message"]
    assert "'staging'" in error_of(chat(base, "registry/support-bot@staging"), 404)["message"]
    assert "no version 7" in error_of(chat(base, "registry/support-bot@7"), 404)["message"]
    malformed = error_of(chat(base, "registry/support bot@1"), 400)
    assert "registry/NAME@N" in malformed["message"]
    # The OpenAI SDK sees the 404 as NotFoundError.
    import openai

    with pytest.raises(openai.NotFoundError, match="nobody"):
        sdk(base).chat.completions.create(model="registry/nobody", messages=HELLO)


def test_a_key_must_be_allowed_the_alias_serving_the_version(base: str) -> None:
    ok(post(base, FINETUNES, job(1)))
    ok(post(base, FINETUNES, job(2)))
    key = ok(post(base, "/v1/keys", {"models": ["ft-support"]}))["key"]
    assert chat(base, "registry/support-bot@1", key).status_code == 200
    answered = chat(base, "registry/support-bot@2", key)
    refused = error_of(answered, 403)
    assert refused["code"] == "model_not_allowed"
    assert "support-bot@2 is served by 'ft-support-v2'" in refused["message"]
    row = logged(base, answered.headers["x-gateway-request-id"])
    assert (row["model_version"], row["status"]) == ("support-bot@2", 403)
    # The registry name is not a model the key can be given: the alias is.
    by_name = ok(post(base, "/v1/keys", {"models": ["registry/*"]}))["key"]
    assert error_of(chat(base, "registry/support-bot@1", by_name), 403)


def test_cli_import_then_chat_through_the_registry(
    project: Project, gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    served = config(upstream)
    (project.root / "gateway.yaml").write_text(yaml.safe_dump(served))
    path = project.root / "job.json"
    path.write_text(json.dumps(job()))

    imported = project.gateway("registry", "finetune", "import", str(path))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith("imported ftjob-1abc as support-bot@1 (alias ft-support;")
    again = project.gateway("registry", "finetune", "import", str(path), "--name", "other")
    assert again.returncode == 0, again.stderr
    assert "ftjob-1abc was already imported as support-bot@1" in again.stdout
    shown = json.loads(project.gateway("registry", "show", "support-bot@1").stdout)
    assert (shown["job_id"], shown["base"]["ref"]) == ("ftjob-1abc", "gpt-4o-mini-2024-07-18")
    promoted = project.gateway(
        "registry", "promote", "support-bot@1", "production", "--approver", "ana"
    )
    assert promoted.returncode == 0, promoted.stderr

    base = gateway(served, data_dir=project.root / "data")
    answered = chat(base, "registry/support-bot@production")
    assert answered.status_code == 200, answered.text
    assert answered.headers["x-gateway-model-version"] == "support-bot@1"
    row = logged(base, answered.headers["x-gateway-request-id"])
    assert (row["model_version"], row["cost_usd"]) == ("support-bot@1", pytest.approx(8 / 1e6))


def bad_import(project: Project, *args: str) -> str:
    result = project.gateway("registry", "finetune", "import", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ")
    return result.stderr


def test_cli_refuses_bad_jobs_with_exit_2(project: Project, tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job(status="cancelled", fine_tuned_model=None)))
    assert "ftjob-1abc is 'cancelled'" in bad_import(project, str(path))
    path.write_text("{not json")
    assert "not JSON" in bad_import(project, str(path))
    assert "cannot read it" in bad_import(project, str(tmp_path / "missing.json"))
    path.write_text(json.dumps({**job(), "object": "fine_tuning.job.event"}))
    assert f"{path}: object" in bad_import(project, str(path))
    path.write_text(json.dumps(job()))
    unserved = bad_import(project, str(path))  # the project's config has no ft-support
    assert "add one to its model_list" in unserved
    assert "  - model_name: support-bot\n" in unserved
    assert f"      model: openai/{FIRST}\n" in unserved
    assert "--alias ALIAS" in unserved
    assert "unknown alias 'nope'" in bad_import(project, str(path), "--alias", "nope")
    assert "model name 'bad name'" in bad_import(
        project, str(path), "--alias", "local/echo", "--name", "bad name"
    )
