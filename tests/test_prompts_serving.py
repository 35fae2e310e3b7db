"""Prompts served by name: versions from sync, labels, weighted splits, a broken file never
breaking serving, and changes reaching every replica within a second."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import create_engine, select

from gateway.core.errors import BadRequest
from gateway.prompts.calling import apply_prompt, prompt_ref
from gateway.prompts.files import parse_prompt
from gateway.store.tables import request_log
from tests.conftest import MASTER_KEY, GatewayFactory, sdk, seen_within_a_second

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}

GREET_V1 = """---
model: local/echo
config:
  temperature: 0.3
input:
  schema:
    name: string
---
{{role "system"}}
You greet people.
{{role "user"}}
Hello {{name}}
"""
GREET_V2 = GREET_V1.replace("Hello {{name}}", "Good morning {{name}}")
BROKEN = GREET_V1.replace("temperature: 0.3", "temprature: 0.3")


@pytest.fixture
def prompts_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "prompts"
    directory.mkdir()
    (directory / "greet.prompt").write_text(GREET_V1)
    return directory


def greet(client: openai.OpenAI, **prompt: Any) -> tuple[str, str]:
    prompt.setdefault("variables", {"name": "Ana"})
    raw = client.chat.completions.with_raw_response.create(
        model="prompt", messages=[], extra_body={"prompt": {"name": "greet", **prompt}}
    )
    return raw.parse().choices[0].message.content or "", raw.headers["x-gateway-prompt"]


def sync(base: str) -> dict[str, Any]:
    response = httpx.post(f"{base}/v1/prompts/sync", headers=ADMIN)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def promote(base: str, **move: Any) -> dict[str, Any]:
    response = httpx.post(f"{base}/v1/prompts/greet/labels", json=move, headers=ADMIN)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_edit_sync_promote_rollback(gateway: GatewayFactory, prompts_dir: Path) -> None:
    base = gateway(prompts_dir=prompts_dir)
    client = sdk(base)
    text, served = greet(client)
    # local/echo answers the user message verbatim: as Dotprompt renders it, it begins
    # with the line break after {{role "user"}}.
    assert text == "\nHello Ana"
    v1 = served.split("@")[1]

    (prompts_dir / "greet.prompt").write_text(GREET_V2)
    registered = sync(base)["registered"]
    assert len(registered) == 1
    v2 = registered[0].split("@")[1]
    assert v2 != v1
    # The old version keeps serving production until someone promotes the new one.
    assert greet(client) == ("\nHello Ana", f"greet@{v1}")
    assert greet(client, label="latest") == ("\nGood morning Ana", f"greet@{v2}")
    assert greet(client, version=v1) == ("\nHello Ana", f"greet@{v1}")

    moved = promote(base, label="production", version=v2, reason="friendlier", actor="ana")
    assert moved["from"] == {"version": v1}
    assert greet(client) == ("\nGood morning Ana", f"greet@{v2}")

    response = httpx.post(
        f"{base}/v1/prompts/greet/labels/production/rollback",
        json={"reason": "complaints"},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    assert greet(client) == ("\nHello Ana", f"greet@{v1}")

    history = httpx.get(
        f"{base}/v1/prompts/greet/history", params={"label": "production"}, headers=ADMIN
    ).json()["data"]
    assert [(h["from"], h["to"], h["reason"]) for h in history] == [
        (None, {"version": v1}, "first version of the prompt"),
        ({"version": v1}, {"version": v2}, "friendlier"),
        ({"version": v2}, {"version": v1}, "complaints"),
    ]
    assert history[1]["actor"] == "ana"
    assert all(h["at"] for h in history)


def test_a_change_reaches_another_replica_within_a_second(
    gateway: GatewayFactory, prompts_dir: Path
) -> None:
    first = gateway(prompts_dir=prompts_dir)
    second = gateway(prompts_dir=prompts_dir)  # same database: another replica
    (prompts_dir / "greet.prompt").write_text(GREET_V2)
    v2 = sync(first)["registered"][0].split("@")[1]
    promote(first, label="production", version=v2)
    moved_at = time.monotonic()
    client = sdk(second)
    seen_within_a_second(
        moved_at,
        lambda: greet(client)[1] == f"greet@{v2}",
        "the other replica still serves the old one",
    )


def test_weighted_label_splits_and_sticks(
    gateway: GatewayFactory, prompts_dir: Path, tmp_path: Path
) -> None:
    base = gateway(prompts_dir=prompts_dir)
    v1 = sync(base)["unchanged"][0].split("@")[1]
    (prompts_dir / "greet.prompt").write_text(GREET_V2)
    v2 = sync(base)["registered"][0].split("@")[1]
    promote(base, label="production", weights={v1: 70, v2: 30}, reason="canary")
    client = sdk(base)
    served: Counter[str] = Counter()
    by_user: dict[str, str] = {}
    for index in range(1000):
        user = f"user-{index}"
        _, version = _as_user(client, user)
        served[version] += 1
        by_user[user] = version
    assert abs(served[f"greet@{v1}"] / 1000 - 0.70) <= 0.05, served
    assert abs(served[f"greet@{v2}"] / 1000 - 0.30) <= 0.05, served
    for user in ("user-1", "user-2", "user-3", "user-500"):
        assert {_as_user(client, user)[1] for _ in range(10)} == {by_user[user]}
    # The header form of the sticky key works as well as the `user` field.
    header_versions = {
        httpx.post(
            f"{base}/v1/chat/completions",
            headers={
                **ADMIN,
                "x-gateway-user": "user-7",
                "x-gateway-prompt-variables": '{"name": "Ana"}',
            },
            json={"model": "prompt/greet", "messages": []},
        ).headers["x-gateway-prompt"]
        for _ in range(5)
    }
    assert header_versions == {by_user["user-7"]}
    # The request log names the version that served each call.
    engine = create_engine(f"sqlite:///{tmp_path / '.gateway' / 'gateway.db'}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            rows = connection.execute(
                select(request_log.c.prompt_name, request_log.c.prompt_version)
            ).all()
        if len(rows) >= 1000:
            break
        time.sleep(0.1)
    logged = Counter(f"{name}@{version}" for name, version in rows if name)
    assert logged[f"greet@{v1}"] >= served[f"greet@{v1}"]
    assert logged[f"greet@{v2}"] >= served[f"greet@{v2}"]


def _as_user(client: openai.OpenAI, user: str) -> tuple[str, str]:
    raw = client.chat.completions.with_raw_response.create(
        model="prompt",
        messages=[],
        user=user,
        extra_body={"prompt": {"name": "greet", "variables": {"name": "Ana"}}},
    )
    return raw.parse().choices[0].message.content or "", raw.headers["x-gateway-prompt"]


def test_a_broken_file_never_breaks_serving(gateway: GatewayFactory, prompts_dir: Path) -> None:
    base = gateway(prompts_dir=prompts_dir)
    client = sdk(base)
    good = greet(client)
    (prompts_dir / "greet.prompt").write_text(BROKEN)
    result = sync(base)
    assert result["registered"] == []
    assert any("greet.prompt:4" in e and "temprature" in e for e in result["errors"])
    assert greet(client) == good
    listed = httpx.get(f"{base}/v1/prompts", headers=ADMIN).json()
    assert listed["errors"] == result["errors"]
    # A gateway starting with the broken file on disk starts and serves the last good one.
    restarted = gateway(prompts_dir=prompts_dir)
    assert greet(sdk(restarted)) == good


def test_alias_form_variables_header_and_errors(gateway: GatewayFactory, prompts_dir: Path) -> None:
    base = gateway(prompts_dir=prompts_dir)
    response = httpx.post(
        f"{base}/v1/chat/completions",
        headers={**ADMIN, "x-gateway-prompt-variables": '{"name": "Bo"}'},
        json={"model": "prompt/greet@production", "messages": []},
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "\nHello Bo"
    client = sdk(base)
    with pytest.raises(openai.BadRequestError) as caught:
        greet(client, variables={"name": 42})
    assert "name" in caught.value.message
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="prompt", messages=[], extra_body={"prompt": {"name": "nope"}}
        )
    with pytest.raises(openai.NotFoundError) as missing_label:
        greet(client, label="staging")
    assert "staging" in missing_label.value.message
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="prompt", messages=[], extra_body={"prompt": {"name": "greet", "lable": "x"}}
        )
    bad_header = httpx.post(
        f"{base}/v1/chat/completions",
        headers={**ADMIN, "x-gateway-prompt-variables": "{nope"},
        json={"model": "prompt/greet", "messages": []},
    )
    assert bad_header.status_code == 400


def test_request_messages_are_history_and_model_override(
    gateway: GatewayFactory, prompts_dir: Path
) -> None:
    base = gateway(prompts_dir=prompts_dir)
    client = sdk(base)
    # The request's own messages are the conversation so far; the prompt has no {{history}},
    # so they go before its last user message, as Dotprompt places history: echo answers
    # the prompt's user message.
    earlier = [
        {"role": "user", "content": "and one more thing"},
        {"role": "assistant", "content": "yes?"},
    ]
    reply = client.chat.completions.create(
        model="prompt",
        messages=earlier,  # type: ignore[arg-type]
        extra_body={"prompt": {"name": "greet", "variables": {"name": "Ana"}}},
    )
    assert reply.choices[0].message.content == "\nHello Ana"
    preview = httpx.post(
        f"{base}/v1/prompts/greet/render",
        json={"variables": {"name": "Ana"}, "messages": earlier},
        headers=ADMIN,
    ).json()
    assert preview["messages"] == [
        {"role": "system", "content": "\nYou greet people.\n"},
        *earlier,
        {"role": "user", "content": "\nHello Ana"},
    ]
    with pytest.raises(openai.NotFoundError) as caught:  # an explicit model overrides
        client.chat.completions.create(
            model="no-such-alias",
            messages=[],
            extra_body={"prompt": {"name": "greet", "variables": {"name": "Ana"}}},
        )
    assert "no-such-alias" in caught.value.message


def test_apply_prompt_merges_config_under_request_overrides(prompts_dir: Path) -> None:
    prompt = parse_prompt(prompts_dir / "greet.prompt")
    messages = [{"role": "user", "content": "Hello Ana"}]
    merged = apply_prompt({"model": "prompt", "messages": []}, prompt, messages)
    assert (merged["model"], merged["temperature"]) == ("local/echo", 0.3)
    overridden = apply_prompt(
        {"model": "gpt-x", "temperature": 1.0, "messages": []}, prompt, messages
    )
    assert (overridden["model"], overridden["temperature"]) == ("gpt-x", 1.0)


def test_keys_limited_to_prompts(gateway: GatewayFactory, prompts_dir: Path) -> None:
    base = gateway(prompts_dir=prompts_dir)
    key = httpx.post(f"{base}/v1/keys", json={"prompts": ["other-*"]}, headers=ADMIN).json()
    with pytest.raises(openai.PermissionDeniedError):
        greet(sdk(base, key=key["key"]))
    listed = httpx.get(f"{base}/v1/prompts", headers={"Authorization": f"Bearer {key['key']}"})
    assert listed.json()["data"] == []


def test_inspect_render_and_diff(gateway: GatewayFactory, prompts_dir: Path) -> None:
    base = gateway(prompts_dir=prompts_dir)
    (prompts_dir / "greet.prompt").write_text(GREET_V2)
    v2 = sync(base)["registered"][0].split("@")[1]
    versions = httpx.get(f"{base}/v1/prompts/greet/versions", headers=ADMIN).json()["data"]
    assert [v["version"] for v in versions][-1] == v2
    one = httpx.get(f"{base}/v1/prompts/greet/versions/{v2}", headers=ADMIN).json()
    assert "Good morning" in one["content"]
    diff = httpx.get(
        f"{base}/v1/prompts/greet/diff",
        params={"from": "production", "to": "latest"},
        headers=ADMIN,
    ).json()
    assert "-Hello {{name}}" in diff["diff"]
    assert "+Good morning {{name}}" in diff["diff"]
    preview = httpx.post(
        f"{base}/v1/prompts/greet/render",
        json={"label": "latest", "variables": {"name": "Cy"}},
        headers=ADMIN,
    ).json()
    assert preview["messages"] == [
        {"role": "system", "content": "\nYou greet people.\n"},
        {"role": "user", "content": "\nGood morning Cy"},
    ]
    assert preview["config"] == {"temperature": 0.3}
    shown = httpx.get(f"{base}/v1/prompts/greet", headers=ADMIN).json()
    assert shown["labels"]["latest"] == {"version": v2}


def test_a_prompt_reference_carries_variant_and_context() -> None:
    """Dotprompt's variant is the file <name>.<variant>.prompt; context is the @ data, in
    the body or, for the model-string form, in a header beside the variables."""
    body: dict[str, Any] = {
        "model": "prompt",
        "prompt": {"name": "greet", "variant": "formal", "context": {"plan": "pro"}},
    }
    ref = prompt_ref(body, {})
    assert ref is not None
    assert (ref.name, ref.context, ref.variables) == ("greet.formal", {"plan": "pro"}, {})
    headers = {"x-gateway-prompt-variables": '"one value"', "x-gateway-prompt-context": '{"a": 1}'}
    by_model = prompt_ref({"model": "prompt/greet.formal@staging"}, headers)
    assert by_model is not None
    assert (by_model.name, by_model.label) == ("greet.formal", "staging")
    assert (by_model.variables, by_model.context) == ("one value", {"a": 1})
    for bad, param in (
        ({"name": "greet", "context": []}, "prompt.context"),
        ({"name": "greet", "variant": 3}, "prompt"),
    ):
        with pytest.raises(BadRequest) as caught:
            prompt_ref({"prompt": bad}, {})
        assert caught.value.param == param
    with pytest.raises(BadRequest, match="x-gateway-prompt-context must be a JSON object"):
        prompt_ref({"model": "prompt/greet"}, {"x-gateway-prompt-context": "[1]"})
