"""A version identifies exactly what reaches the model, on every replica: the partials and
named schemas a prompt uses are part of its version and stored with it, and versions stored
before the gateway rendered as Dotprompt does keep rendering as they did."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

from gateway.prompts.catalog import PromptCatalog
from gateway.prompts.files import parse_prompt, scan
from gateway.prompts.library import load_library
from gateway.prompts.prompt import legacy_normalize, legacy_version_of
from gateway.prompts.render import PromptRenderer
from gateway.prompts.store import PromptStore, now_utc, version_diff
from gateway.store.tables import prompt_versions
from tests.conftest import MASTER_KEY, GatewayFactory, sdk

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
TRIAGE = """---
model: local/echo
input:
  schema:
    ticket: string
output:
  schema: Verdict
---
{{role "system"}}{{> house-rules}}
{{role "user"}}{{ticket}}
"""
RULES_V1 = "Be kind."
RULES_V2 = "Be kind and brief."
VERDICT = "label: string\nurgent?: boolean\n"


def render(prompt: Any, variables: dict[str, Any], history: Any = None) -> list[dict[str, Any]]:
    return asyncio.run(PromptRenderer().render(prompt, variables, None, history))


def folder(tmp_path: Path) -> Path:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "triage.prompt").write_text(TRIAGE)
    (prompts / "_house-rules.prompt").write_text(RULES_V1)
    (prompts / "Verdict.schema.yaml").write_text(VERDICT)
    return prompts


def test_partials_and_schemas_are_part_of_the_version(engine: Engine, tmp_path: Path) -> None:
    prompts = folder(tmp_path)
    store = PromptStore(engine)
    first = store.sync(prompts)
    assert first.errors == []
    [(_, v1)] = first.registered
    stored = store.version("triage", v1)
    assert stored.includes == {
        "partials": {"house-rules": RULES_V1},
        "schemas": {"Verdict": load_library(prompts).schemas["Verdict"]},
    }
    # The text of the file alone did not change: the partial did, and so did the version.
    (prompts / "_house-rules.prompt").write_text(RULES_V2)
    [(_, v2)] = store.sync(prompts).registered
    assert v2 != v1
    assert store.labels("triage")["production"] == {"version": v1}
    assert store.labels("triage")["latest"] == {"version": v2}
    diff = "".join(version_diff("triage", stored, store.version("triage", v2)))
    assert f"--- triage@{v1}/_house-rules.prompt" in diff
    assert "-Be kind.\n\\ No newline at end of file\n+Be kind and brief.\n\\ No" in diff

    # Each stored version renders with its own copy, whatever is on disk now.
    catalog = PromptCatalog(store)
    catalog.refresh()
    old = catalog.resolve("triage", "production")
    new = catalog.resolve("triage", "latest")
    assert render(old, {"ticket": "t"})[0] == {"role": "system", "content": "Be kind.\n"}
    assert render(new, {"ticket": "t"})[0] == {"role": "system", "content": "Be kind and brief.\n"}
    assert new.output_schema == parse_prompt(prompts / "triage.prompt").output_schema
    assert new.output_schema == scan(prompts)[0][0].output_schema
    assert (old.version, new.version) == (v1, v2)


def test_a_broken_partial_fails_the_prompts_that_use_it(tmp_path: Path) -> None:
    prompts = folder(tmp_path)
    (prompts / "_house-rules.prompt").write_text("{{#if x}}never closed")
    files, errors = scan(prompts)
    assert files == []
    assert [e.problems for e in errors] == [
        [f"{prompts / '_house-rules.prompt'}:1: {{{{#if}}}} is never closed (add {{{{/if}}}})"],
        [
            f"{prompts / 'triage.prompt'}:9: {{{{> house-rules}}}}: the partial has problems "
            f"(see {prompts / '_house-rules.prompt'})"
        ],
    ]


def test_versions_stored_before_keep_their_id_and_rendering(engine: Engine, tmp_path: Path) -> None:
    """A version registered before the gateway rendered as Dotprompt does (no includes
    stored) keeps serving what it served: messages stripped, the caller's messages after."""
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    text = '---\nmodel: local/echo\n---\n{{role "system"}}\nBe kind.   \n{{role "user"}}\nHi\n'
    (prompts / "old.prompt").write_text(text)
    legacy = legacy_version_of(text)
    with engine.begin() as connection:
        connection.execute(
            prompt_versions.insert().values(
                name="old",
                version=legacy,
                content=legacy_normalize(text),
                path="old.prompt",
                created_at=now_utc(),
            )
        )
    store = PromptStore(engine)
    store.promote("old", "production", {"version": legacy}, "ops", "stored before")
    # The same file synced now is a new version: it reaches the model differently.
    [(_, current)] = store.sync(prompts).registered
    assert current != legacy
    assert store.labels("old")["production"] == {"version": legacy}
    assert store.version("old", legacy).includes is None

    catalog = PromptCatalog(store)
    catalog.refresh()
    history = [{"role": "user", "content": "earlier"}]
    assert render(catalog.resolve("old", "production"), {}, history) == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi"},
        *history,
    ]
    assert render(catalog.resolve("old", version=current), {}, history) == [
        {"role": "system", "content": "\nBe kind.   \n"},
        *history,
        {"role": "user", "content": "\nHi"},
    ]


def test_what_reaches_the_model_end_to_end(gateway: GatewayFactory, tmp_path: Path) -> None:
    """Through the server: a partial, the caller's @ data, @auth from the key and its team,
    history at {{history}} and an image, as the request log records the body sent."""
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "assist.prompt").write_text(
        "---\nmodel: local/echo\ninput:\n  schema:\n    question: string\n    photo: string\n"
        "gateway.context:\n  plan: string\n---\n"
        '{{role "system"~}}\n{{> persona}} Plan {{@plan}}, team {{@auth.team.id}} '
        "({{@auth.team.metadata.region}}), key {{@auth.key.name}} {{@auth.key.metadata.email}}.\n"
        '{{~history~}}\n{{role "user"~}}\n{{question}}{{media url=photo}}\n'
    )
    (prompts / "_persona.prompt").write_text("You are Ada.")
    base = gateway(prompts_dir=prompts)
    team = httpx.post(
        f"{base}/v1/teams", json={"id": "ops", "metadata": {"region": "eu"}}, headers=ADMIN
    )
    assert team.status_code == 200, team.text
    key = httpx.post(
        f"{base}/v1/keys",
        json={
            "name": "helper",
            "team": "ops",
            "metadata": {"email": "a@x.org"},
            "log_bodies": True,
        },
        headers=ADMIN,
    ).json()
    raw = sdk(base, key=key["key"]).chat.completions.with_raw_response.create(
        model="prompt",
        messages=[
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi!"},
        ],
        extra_body={
            "prompt": {
                "name": "assist",
                "variables": {"question": "What is this?", "photo": "https://x.org/p.png"},
                "context": {"plan": "pro"},
            }
        },
    )
    assert raw.parse().choices[0].message.content == "What is this?"  # echo: the last user text
    sent = json.loads(logged_body(base, raw.headers["x-gateway-request-id"]))
    assert sent["messages"] == [
        {
            "role": "system",
            "content": "You are Ada. Plan pro, team ops (eu), key helper a@x.org.",
        },
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi!"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://x.org/p.png"}},
            ],
        },
    ]
    bad = httpx.post(
        f"{base}/v1/chat/completions",
        json={
            "model": "prompt",
            "messages": [],
            "prompt": {
                "name": "assist",
                "variables": {"question": "q", "photo": "https://x.org/p.png"},
                "context": {"plan": 3},
            },
        },
        headers=ADMIN,
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "prompt.context"


def logged_body(base: str, request_id: str) -> str:
    """The request body the log recorded (rows are written off the request path)."""
    deadline = time.monotonic() + 10
    while True:
        shown = httpx.get(f"{base}/v1/logs/{request_id}", headers=ADMIN)
        if shown.status_code == 200:
            body: str = shown.json()["request_body"]
            return body
        assert time.monotonic() < deadline, shown.text
        time.sleep(0.05)
