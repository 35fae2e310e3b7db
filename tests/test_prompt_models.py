"""A prompt's `model:` must be a chat model the gateway serves: checked by `prompts validate`,
`prompts sync` (and the server's own sync) and `promote`, with a did-you-mean, instead of
every call failing later."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import DEFAULT_MODELS, GatewayFactory, sdk
from tests.test_prompts_serving import ADMIN, GREET_V1, greet, sync

ROOT = Path(__file__).resolve().parent.parent
MODELS: list[dict[str, Any]] = [
    *DEFAULT_MODELS,
    {"model_name": "gpt-4o-mini", "litellm_params": {"model": "local/echo"}},
    {"model_name": "iris", "litellm_params": {"model": "registry/iris"}},  # a classic model
]
TYPO = GREET_V1.replace("model: local/echo", "model: gpt-4o-mni")


def write_config(path: Path, models: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"model_list": models}))
    return path


def cli(tmp: Path, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATA_DIR"] = str(tmp / "data")
    env["GATEWAY_PROMPTS_DIR"] = str(tmp / "prompts")
    env["GATEWAY_CONFIG"] = str(config or write_config(tmp / "gateway.yaml", MODELS))
    return subprocess.run(
        [sys.executable, "-m", "gateway", "prompts", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    directory = tmp_path / "prompts"
    directory.mkdir()
    (directory / "greet.prompt").write_text(GREET_V1)
    return directory


def test_validate_names_the_line_and_suggests_the_alias(tmp_path: Path, prompts: Path) -> None:
    ok = cli(tmp_path, "validate")
    assert ok.returncode == 0, ok.stderr
    (prompts / "typo.prompt").write_text(TYPO)
    bad = cli(tmp_path, "validate")
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{prompts / 'typo.prompt'}:2: model 'gpt-4o-mni' ")
    assert "did you mean 'gpt-4o-mini'?" in lines[0]
    # One file given by path is checked the same way.
    one = cli(tmp_path, "validate", str(prompts / "typo.prompt"))
    assert one.returncode == 2
    assert "did you mean 'gpt-4o-mini'?" in one.stderr


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("prompt/greet", "names a prompt"),
        ("registry/support-ft@production", "registry"),
        ("local/all-MiniLM-L6-v2", "embedding model"),
        ("iris", "is a classic model (called with POST /v2/models/iris/infer)"),
        ("claude-opus", "served: gpt-4o-mini, local/echo"),
    ],
)
def test_models_a_prompt_cannot_name(
    tmp_path: Path, prompts: Path, model: str, expected: str
) -> None:
    (prompts / "greet.prompt").write_text(GREET_V1.replace("local/echo", model))
    bad = cli(tmp_path, "validate")
    assert bad.returncode == 2
    assert f"greet.prompt:2: model {model!r}" in bad.stderr
    assert expected in bad.stderr


def test_validate_says_when_the_config_cannot_be_read(tmp_path: Path, prompts: Path) -> None:
    missing = cli(tmp_path, "validate", config=tmp_path / "nope.yaml")
    assert missing.returncode == 2
    assert "nope.yaml" in missing.stderr
    assert "GATEWAY_CONFIG" in missing.stderr
    assert "--config" in missing.stderr
    # The config is needed only to check a model: files naming none are checked without it.
    (prompts / "greet.prompt").write_text(GREET_V1.replace("model: local/echo\n", ""))
    no_model = cli(tmp_path, "validate", config=tmp_path / "nope.yaml")
    assert no_model.returncode == 0, no_model.stderr
    (prompts / "greet.prompt").write_text(GREET_V1)
    # --config points at another file, as it does for `gateway serve`.
    other = write_config(tmp_path / "other.yaml", MODELS)
    chosen = cli(tmp_path, "validate", "--config", str(other), config=tmp_path / "nope.yaml")
    assert chosen.returncode == 0, chosen.stderr


def test_validate_needs_no_secrets_of_the_config(tmp_path: Path, prompts: Path) -> None:
    secret = {
        "model_name": "gpt-4o",
        "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/NOT_SET_ANYWHERE"},
    }
    config = write_config(tmp_path / "secrets.yaml", [*MODELS, secret])
    (prompts / "greet.prompt").write_text(GREET_V1.replace("local/echo", "gpt-4o"))
    result = cli(tmp_path, "validate", config=config)
    assert result.returncode == 0, result.stderr


def test_sync_reports_and_skips_a_prompt_with_an_unknown_model(
    tmp_path: Path, prompts: Path
) -> None:
    (prompts / "typo.prompt").write_text(TYPO)
    result = cli(tmp_path, "sync")
    assert result.returncode == 1
    assert "registered greet@" in result.stdout
    assert "typo" not in result.stdout
    assert "typo.prompt:2: model 'gpt-4o-mni'" in result.stderr
    assert "did you mean 'gpt-4o-mini'?" in result.stderr
    assert "typo" not in cli(tmp_path, "list").stdout


def test_promote_refuses_a_version_whose_model_is_not_served(tmp_path: Path, prompts: Path) -> None:
    (prompts / "greet.prompt").write_text(GREET_V1.replace("local/echo", "gpt-4o-mini"))
    first = cli(tmp_path, "sync")
    assert first.returncode == 0, first.stderr
    version = first.stdout.split("greet@")[1].split()[0]
    # The gateway's config no longer serves gpt-4o-mini.
    narrower = write_config(tmp_path / "narrower.yaml", DEFAULT_MODELS)
    refused = cli(tmp_path, "promote", "greet", version, "--label", "staging", config=narrower)
    assert refused.returncode == 2
    assert f"greet@{version}" in refused.stderr
    assert "'gpt-4o-mini'" in refused.stderr
    assert "staging" not in cli(tmp_path, "list", config=narrower).stdout
    allowed = cli(tmp_path, "promote", "greet", version, "--label", "staging")
    assert allowed.returncode == 0, allowed.stderr


def test_the_server_reports_unknown_models_at_start_sync_and_promote(
    gateway: GatewayFactory, prompts: Path
) -> None:
    (prompts / "typo.prompt").write_text(TYPO.replace("gpt-4o-mni", "local/ecko"))
    base = gateway(prompts_dir=prompts)
    listed = httpx.get(f"{base}/v1/prompts", headers=ADMIN).json()
    assert [p["name"] for p in listed["data"]] == ["greet"]
    assert len(listed["errors"]) == 1
    problem = listed["errors"][0]
    assert problem.startswith("typo.prompt:2: model 'local/ecko' ")
    assert "did you mean 'local/echo'?" in problem
    assert str(prompts) not in problem
    assert sync(base)["errors"] == listed["errors"]
    greet(sdk(base))  # the good prompt serves

    # Registered by a gateway that serves `other`, promoted on one that does not.
    wider = gateway(
        {
            "model_list": [
                *DEFAULT_MODELS,
                {"model_name": "other", "litellm_params": {"model": "local/echo"}},
            ]
        },
        prompts_dir=prompts,
    )
    (prompts / "greet.prompt").write_text(GREET_V1.replace("local/echo", "other"))
    version = sync(wider)["registered"][0].split("@")[1]
    refused = httpx.post(
        f"{base}/v1/prompts/greet/labels",
        json={"label": "production", "version": version},
        headers=ADMIN,
    )
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert f"greet@{version}" in error["message"]
    assert "'other'" in error["message"]
    assert error["param"] == "version"
