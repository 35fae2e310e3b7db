"""Config validation: LiteLLM files load; mistakes name the file, the line and the key path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.core.config import load_config
from gateway.core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def test_shipped_config_is_valid() -> None:
    config = load_config(ROOT / "config" / "gateway.yaml")
    assert config.aliases() == ["local/echo", "local/all-MiniLM-L6-v2", "iris"]


def test_litellm_proxy_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    path = write(
        tmp_path,
        """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
      rpm: 100
      temperature: 0.2
    model_info:
      id: gpt4o-primary
      some_custom_field: kept
  - model_name: claude
    litellm_params: {model: anthropic/claude-sonnet-4-5, api_key: os.environ/OPENAI_API_KEY}
router_settings:
  routing_strategy: simple-shuffle
  num_retries: 3
  timeout: 30
  fallbacks: [{"gpt-4o": ["claude"]}]
litellm_settings:
  drop_params: true
general_settings:
  master_key: sk-1234
""",
    )
    config = load_config(path)
    params = config.model_list[0].litellm_params
    assert params.api_key == "sk-test"
    assert params.extra_params() == {"temperature": 0.2}
    assert config.router_settings.fallbacks == [{"gpt-4o": ["claude"]}]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n"
            "      api_bse: http://x\n",
            "gateway.yaml:5: model_list[0].litellm_params.api_bse: unknown key 'api_bse': "
            "did you mean 'api_base'?",
        ),
        (
            "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n"
            "      weight: heavy\n",
            "gateway.yaml:5: model_list[0].litellm_params.weight: Input should be a valid number",
        ),
        (
            "model_list:\n  - model_name: a\n    litelm_params:\n      model: openai/x\n",
            "gateway.yaml:3: model_list[0].litelm_params: unknown key 'litelm_params': "
            "did you mean 'litellm_params'?",
        ),
        (
            "modle_list: []\n",
            "gateway.yaml:1: modle_list: unknown key 'modle_list': did you mean 'model_list'?",
        ),
        (
            "router_settings:\n  routing_strategy: fastest\n",
            "gateway.yaml:2: router_settings.routing_strategy: Input should be",
        ),
        (
            "model_list:\n  - model_name: a\n    litellm_params: {model: openai/x}\n"
            "router_settings:\n  fallbacks: [{a: [b]}]\n",
            "gateway.yaml:5: router_settings.fallbacks[0].a[0]: 'b' is not a model_name",
        ),
        ("model_list: [\n", "gateway.yaml:2: invalid YAML"),
        ("- just a list\n", "the top level must be a mapping"),
    ],
)
def test_invalid_configs_name_file_line_and_path(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert expected in str(caught.value)


def test_missing_secret_leaves_out_only_its_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As LiteLLM: the deployment whose variable is not set fails, the rest of the file loads.
    monkeypatch.delenv("NO_SUCH_KEY_FOR_TEST", raising=False)
    path = write(
        tmp_path,
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n"
        "      api_key: os.environ/NO_SUCH_KEY_FOR_TEST\n"
        "  - model_name: b\n    litellm_params:\n      model: openai/y\n",
    )
    config = load_config(path)
    assert config.aliases() == ["b"]
    assert config.model_list[0].model_info.id == "b#1"  # the id it has when both load
    (left_out,) = config.report.left_out
    message = left_out.line()
    assert "gateway.yaml:5" in message
    assert "NO_SUCH_KEY_FOR_TEST is not set" in message
    assert "model 'a'" in message


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_config_check_cli_exit_codes(tmp_path: Path) -> None:
    ok = _check(ROOT / "config" / "gateway.yaml")
    assert ok.returncode == 0, ok.stderr
    assert "ok (3 deployments, 3 models)" in ok.stdout

    bad = _check(write(tmp_path, "model_list:\n  - model_name: a\n"))
    assert bad.returncode == 2
    assert "gateway.yaml:2: model_list[0].litellm_params: Field required" in bad.stderr
    assert "Traceback" not in bad.stderr

    missing = _check(tmp_path / "absent.yaml")
    assert missing.returncode == 2
    assert "absent.yaml: file not found" in missing.stderr


def test_published_schema_is_current() -> None:
    from gateway.core.config import config_json_schema

    published = (ROOT / "schemas" / "gateway.schema.json").read_text()
    assert published == config_json_schema(), "run: gateway config schema > schemas/..."
