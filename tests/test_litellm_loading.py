"""Loading a LiteLLM user's file: environment_variables, credentials, a missing variable,
the master key and database LiteLLM's general_settings give, what `gateway config check` and
the start-up log say, and secrets kept out of every message."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml

from gateway.api.app import create_app
from gateway.core.config import load_config
from gateway.core.errors import ConfigError
from gateway.core.general_settings import settings_from_config, sqlalchemy_url
from gateway.core.litellm_support import RULES, Status
from gateway.core.settings import Settings
from tests.conftest import MASTER_KEY, ROOT, ServerThread, fake_model, gateway_process
from tests.fakes.upstream import FakeUpstream

USER = [{"role": "user", "content": "from litellm"}]


@pytest.fixture(autouse=True)
def environment() -> Iterator[None]:
    """Serving a file sets its environment_variables: each test leaves the process as it was."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def write(tmp_path: Path, config: dict[str, object] | str) -> Path:
    path = tmp_path / "litellm_config.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
    return path


def check(
    path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "config", "check", str(path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=clean | (env or {}),
    )


def serve(settings: Settings) -> tuple[str, ServerThread]:
    server = ServerThread(create_app(settings), settings)
    return server.start(), server


def chat(base: str, key: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": USER}
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=30)


# --- gateway config check ------------------------------------------------------------------------


LITELLM_FILE = {
    "model_list": [
        {
            "model_name": "gpt-4o",
            "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-literal-secret-1"},
        },
        {
            "model_name": "claude",
            "litellm_params": {
                "model": "anthropic/claude-sonnet-4-5",
                "api_key": "os.environ/LOADING_TEST_UNSET_KEY",
            },
        },
    ],
    "litellm_settings": {"cache": True, "drop_params": False, "num_retries": 2},
    "general_settings": {
        "master_key": "sk-master-secret-2",
        "database_url": "postgresql://u:pw-secret-3@h/db",
    },
}


def test_config_check_says_what_it_will_not_apply(tmp_path: Path) -> None:
    path = write(tmp_path, LITELLM_FILE)
    done = check(path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith(f"{path}: ok (1 deployment, 1 model); it reports:\n")
    assert "not applied (warned at start):\n" in out
    assert f"  {path}:11: litellm_settings.cache: response caching is not implemented yet" in out
    assert "applied differently:\n" in out
    assert f"{path}:16: general_settings.database_url: the gateway's database" in out
    assert "deployments left out:\n" in out
    assert "environment variable LOADING_TEST_UNSET_KEY is not set" in out
    assert "model 'claude'" in out
    # Values that ask for what the gateway does anyway, and applied keys, are not reported.
    assert "drop_params" not in out
    assert "num_retries" not in out
    assert "master_key" not in out
    for secret in ("sk-literal-secret-1", "sk-master-secret-2", "pw-secret-3"):
        assert secret not in out + done.stderr

    strict = check(path, "--strict")
    assert strict.returncode == 1
    assert strict.stdout == out


def test_config_check_never_says_only_ok(tmp_path: Path) -> None:
    done = check(ROOT / "config" / "gateway.yaml")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(
        "ok (3 deployments, 3 models); every setting in it is applied"
    )
    assert check(ROOT / "config" / "gateway.yaml", "--strict").returncode == 0


def test_config_check_refuses_litellm_features_by_name(tmp_path: Path) -> None:
    config = {
        "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/m"}}],
        "guardrails": [{"guardrail_name": "pii", "litellm_params": {"guardrail": "presidio"}}],
        "mcp_servers": {"github": {"url": "https://api.githubcopilot.com/mcp"}},
    }
    done = check(write(tmp_path, config))
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0].startswith(
        f"{tmp_path / 'litellm_config.yaml'}:5: guardrails: LiteLLM guardrails"
    )
    assert lines[1].startswith(f"{tmp_path / 'litellm_config.yaml'}:9: mcp_servers: LiteLLM's MCP")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "path", [p for p, rule in RULES.items() if rule.status is Status.REFUSED and "*" not in p]
)
def test_each_refused_feature_is_one_line_naming_it(tmp_path: Path, path: str) -> None:
    section, _, key = path.partition(".")
    value: object = {"x": 1}
    config: dict[str, object] = {"model_list": []}
    config[section] = {key: value} if key else value
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, config))
    (line,) = str(caught.value).splitlines()
    assert line.startswith(f"{tmp_path / 'litellm_config.yaml'}:")
    assert f": {path}: " in line
    assert "not supported" in line


def test_unknown_litellm_settings_are_warned_not_dropped(tmp_path: Path) -> None:
    config = {"litellm_settings": {"force_ipv4": True}, "general_settings": {"shiny_new_flag": 1}}
    report = load_config(write(tmp_path, config)).report
    assert [(n.path, n.status) for n in report.notes] == [
        ("litellm_settings.force_ipv4", Status.IGNORED),
        ("general_settings.shiny_new_flag", Status.IGNORED),
    ]
    assert all("no equivalent" in n.note for n in report.notes)


def test_start_logs_each_setting_not_applied_as_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = {
        "model_list": [{"model_name": "local/echo", "litellm_params": {"model": "local/echo"}}],
        "litellm_settings": {"success_callback": ["langfuse"]},
        "general_settings": {"alerting": ["slack"]},
    }
    settings = Settings(
        config=write(tmp_path, config), data_dir=tmp_path / "d", master_key=MASTER_KEY
    )
    with caplog.at_level(logging.WARNING, logger="gateway.config"):
        create_app(settings)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("litellm_settings.success_callback: callbacks are not run" in m for m in warned)
    assert any("general_settings.alerting: no Slack or email alerts" in m for m in warned)


# --- empty sections -----------------------------------------------------------------------------


def test_sections_holding_only_comments_load_as_empty(tmp_path: Path) -> None:
    text = (
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/m\n"
        "    model_info:\n      # id: later\n"
        "general_settings:\n  # master_key: sk-1234\n"
        "litellm_settings:\nrouter_settings:\nenvironment_variables:\ncredential_list:\n"
    )
    config = load_config(write(tmp_path, text))
    assert config.aliases() == ["m"]
    assert config.general_settings == {}
    assert config.router_settings.num_retries == 2
    assert config.report.notes == []


# --- environment_variables ----------------------------------------------------------------------


def test_environment_variables_feed_references_and_the_process(
    tmp_path: Path, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    os.environ["LOADING_TEST_KEY"] = "from-the-process"
    os.environ["LOADING_TEST_BASE_REF"] = upstream.url
    os.environ.pop("LOADING_TEST_AWS_REGION", None)
    entry = fake_model(
        upstream, "env-model", "id=loading-env", api_key="os.environ/LOADING_TEST_KEY"
    )
    entry["litellm_params"]["api_base"] = "os.environ/LOADING_TEST_BASE"
    config = {
        "environment_variables": {
            "LOADING_TEST_KEY": "from-the-file",
            "LOADING_TEST_BASE": "os.environ/LOADING_TEST_BASE_REF",
            "LOADING_TEST_AWS_REGION": "eu-west-1",
            "LOADING_TEST_PORT": 6379,
            "PATH": "/nowhere",
            "GATEWAY_MASTER_KEY": "sk-not-from-a-file",
        },
        "model_list": [entry],
    }
    path = write(tmp_path, config)
    report = load_config(path).report
    assert [n.path for n in report.notes] == [
        "environment_variables.PATH",
        "environment_variables.GATEWAY_MASTER_KEY",
    ]
    settings = Settings(config=path, data_dir=tmp_path / "d", master_key=MASTER_KEY)
    path_before = os.environ["PATH"]
    with caplog.at_level(logging.WARNING, logger="gateway.config"):
        base, server = serve(settings)
    try:
        assert chat(base, MASTER_KEY, "env-model").status_code == 200
    finally:
        server.stop()
    received = upstream.last_request("id=loading-env")
    assert received is not None
    assert received.headers["authorization"] == "Bearer from-the-file"  # the file's, as LiteLLM
    assert os.environ["LOADING_TEST_AWS_REGION"] == "eu-west-1"  # for litellm's providers
    assert os.environ["LOADING_TEST_PORT"] == "6379"
    assert os.environ["PATH"] == path_before
    assert os.environ.get("GATEWAY_MASTER_KEY") != "sk-not-from-a-file"
    replaced = [r.getMessage() for r in caplog.records if "replaces the value" in r.getMessage()]
    assert replaced == [
        "environment_variables.LOADING_TEST_KEY from the config file replaces the value already "
        "set in the environment (as LiteLLM does)"
    ]


# --- a missing variable -------------------------------------------------------------------------


def test_a_variable_missing_in_a_credential_points_at_the_credential(tmp_path: Path) -> None:
    os.environ.pop("LOADING_TEST_CRED_UNSET", None)
    config = {
        "credential_list": [
            {
                "credential_name": "c",
                "credential_values": {"api_key": "os.environ/LOADING_TEST_CRED_UNSET"},
            }
        ],
        "model_list": [
            {
                "model_name": "m",
                "litellm_params": {"model": "openai/m", "litellm_credential_name": "c"},
            },
            {"model_name": "n", "litellm_params": {"model": "openai/n"}},
        ],
    }
    config_loaded = load_config(write(tmp_path, config))
    (left_out,) = config_loaded.report.left_out
    assert left_out.where.endswith("litellm_config.yaml:4")  # the credential's api_key
    assert left_out.path == "model_list[0].litellm_params.api_key"
    assert config_loaded.aliases() == ["n"]


def test_credential_names_must_exist_and_be_unique(tmp_path: Path) -> None:
    unknown = {
        "model_list": [
            {
                "model_name": "m",
                "litellm_params": {"model": "openai/m", "litellm_credential_name": "nope"},
            }
        ]
    }
    with pytest.raises(
        ConfigError,
        match=r"litellm_config.yaml:5: model_list\[0\]\.litellm_params"
        r"\.litellm_credential_name: names credential 'nope', which is not in "
        r"credential_list \(known: none\)",
    ):
        load_config(write(tmp_path, unknown))
    twice = {"credential_list": [{"credential_name": "c"}, {"credential_name": "c"}]}
    with pytest.raises(
        ConfigError, match=r"credential_list\[1\] is named 'c', as credential_list\[0\] is"
    ):
        load_config(write(tmp_path, twice))


# --- general_settings.master_key ----------------------------------------------------------------


def _with_master_key(tmp_path: Path, upstream: FakeUpstream, master_key: str) -> Path:
    return write(
        tmp_path,
        {
            "model_list": [fake_model(upstream, "mk", "id=loading-master")],
            "general_settings": {"master_key": master_key},
        },
    )


def test_litellm_master_key_keeps_clients_working(tmp_path: Path, upstream: FakeUpstream) -> None:
    os.environ["LOADING_TEST_MASTER"] = "sk-litellm-clients-use-this"
    path = _with_master_key(tmp_path, upstream, "os.environ/LOADING_TEST_MASTER")
    base, server = serve(Settings(config=path, data_dir=tmp_path / "d"))
    try:
        assert chat(base, "sk-litellm-clients-use-this", "mk").status_code == 200
        assert chat(base, MASTER_KEY, "mk").status_code == 401
        created = httpx.post(
            f"{base}/v1/keys",
            json={"name": "migrated"},
            headers={"Authorization": "Bearer sk-litellm-clients-use-this"},
        )
        assert created.status_code == 200, created.text  # admin routes take it too
    finally:
        server.stop()
    assert not (tmp_path / "d" / "master_key").exists()  # no key generated beside it


def test_gateway_serve_takes_the_litellm_master_key(tmp_path: Path, upstream: FakeUpstream) -> None:
    path = _with_master_key(tmp_path, upstream, "sk-litellm-serve-key")
    with gateway_process(tmp_path / "d", "--config", str(path), "--workers", "2") as (base, _):
        assert chat(base, "sk-litellm-serve-key", "mk").status_code == 200
    assert not (tmp_path / "d" / "master_key").exists()  # none generated


def test_gateway_master_key_wins_over_the_file(tmp_path: Path, upstream: FakeUpstream) -> None:
    path = _with_master_key(tmp_path, upstream, "sk-in-the-file")
    settings = settings_from_config(
        Settings(config=path, master_key="sk-from-gateway-env"), load_config(path)
    )
    assert settings.master_key == "sk-from-gateway-env"
    os.environ["LITELLM_MASTER_KEY"] = "sk-litellm-env"
    bare = tmp_path / "bare.yaml"
    bare.write_text("model_list: []\n")
    assert (
        settings_from_config(Settings(config=bare), load_config(bare)).master_key
        == "sk-litellm-env"
    )
    assert (
        settings_from_config(Settings(config=path), load_config(path)).master_key
        == "sk-in-the-file"
    )


def test_master_key_naming_an_unset_variable_stops_the_start(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    os.environ.pop("LOADING_TEST_MASTER_UNSET", None)
    path = _with_master_key(tmp_path, upstream, "os.environ/LOADING_TEST_MASTER_UNSET")
    with pytest.raises(ConfigError) as caught:
        create_app(Settings(config=path, data_dir=tmp_path / "d"))
    assert str(caught.value) == (
        f"{path}:7: general_settings.master_key: environment variable LOADING_TEST_MASTER_UNSET "
        f"is not set (export it, or set GATEWAY_MASTER_KEY)"
    )
    done = check(path)
    assert done.returncode == 2
    assert "LOADING_TEST_MASTER_UNSET is not set" in done.stderr
    # With GATEWAY_MASTER_KEY set, the file's key is not used, so its variable does not matter.
    assert check(path, env={"GATEWAY_MASTER_KEY": "sk-x"}).returncode == 0


# --- general_settings.database_url --------------------------------------------------------------


@pytest.mark.parametrize(
    ("litellm", "sqlalchemy"),
    [
        ("postgresql://u:p@db:5432/litellm", "postgresql+psycopg://u:p@db:5432/litellm"),
        (
            "postgres://u:p@db/litellm?sslmode=require",
            "postgresql+psycopg://u:p@db/litellm?sslmode=require",
        ),
        (
            "postgresql://u:p@db/litellm?connection_limit=10&pool_timeout=20&schema=proxy",
            "postgresql+psycopg://u:p@db/litellm?options=-csearch_path%3Dproxy",
        ),
        ("postgresql+psycopg://u@db/x", "postgresql+psycopg://u@db/x"),
    ],
)
def test_litellm_database_urls_become_sqlalchemy_urls(litellm: str, sqlalchemy: str) -> None:
    assert sqlalchemy_url(litellm) == sqlalchemy


def test_litellm_database_url_is_the_gateways_database(tmp_path: Path, pg_url: str) -> None:
    # LiteLLM's form of the URL: postgresql://, Prisma's pool option.
    litellm_url = pg_url.replace("postgresql+psycopg://", "postgresql://") + "?connection_limit=5"
    os.environ["LOADING_TEST_DATABASE_URL"] = litellm_url
    config = {
        "model_list": [{"model_name": "local/echo", "litellm_params": {"model": "local/echo"}}],
        "general_settings": {"database_url": "os.environ/LOADING_TEST_DATABASE_URL"},
    }
    path = write(tmp_path, config)
    base, server = serve(Settings(config=path, data_dir=tmp_path / "d", master_key=MASTER_KEY))
    try:
        created = httpx.post(
            f"{base}/v1/keys",
            json={"name": "in-litellm-db"},
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
        )
        assert created.status_code == 200, created.text
    finally:
        server.stop()
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as db:
        names = [row[0] for row in db.execute("SELECT name FROM api_keys")]
    assert names == ["in-litellm-db"]
    assert not (tmp_path / "d" / "gateway.db").exists()
    # The CLI reads the same database (GATEWAY_DATABASE_URL unset).
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"GATEWAY_CONFIG": str(path), "GATEWAY_DATA_DIR": str(tmp_path / "d")}
    listed = subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert listed.returncode == 0, listed.stderr
    assert "in-litellm-db" in listed.stdout


# --- include ------------------------------------------------------------------------------------


def test_included_files_merge_and_keep_their_own_line_numbers(tmp_path: Path) -> None:
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "models.yaml").write_text(
        "include: [more.yaml]\n"
        "model_list:\n  - model_name: b\n    litellm_params: {model: openai/b}\n"
    )
    (tmp_path / "parts" / "more.yaml").write_text(
        "include: [../main.yaml]\n"  # a cycle: read once
        "model_list:\n  - model_name: c\n    litellm_params: {model: openai/c, api_bse: x}\n"
    )
    main = tmp_path / "main.yaml"
    main.write_text(
        "include:\n  - parts/models.yaml\n"
        "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(main)
    assert str(caught.value) == (
        f"{tmp_path / 'parts' / 'more.yaml'}:4: model_list[2].litellm_params.api_bse: unknown "
        f"key 'api_bse': did you mean 'api_base'?"
    )
    (tmp_path / "parts" / "more.yaml").write_text(
        "include: [../main.yaml]\n"
        "model_list:\n  - model_name: c\n    litellm_params: {model: openai/c}\n"
        "general_settings:\n  alerting: [slack]\n"
    )
    config = load_config(main)
    assert config.aliases() == ["a", "b", "c"]
    (note,) = config.report.notes
    assert note.where == f"{tmp_path / 'parts' / 'more.yaml'}:6"


def test_a_missing_included_file_names_the_include_line(tmp_path: Path) -> None:
    main = tmp_path / "main.yaml"
    main.write_text("model_list: []\ninclude:\n  - nowhere.yaml\n")
    with pytest.raises(ConfigError) as caught:
        load_config(main)
    assert str(caught.value) == (
        f"{main}:3: include[0]: nowhere.yaml: {tmp_path / 'nowhere.yaml'}: file not found"
    )
    main.write_text("include: models.yaml\n")
    with pytest.raises(ConfigError, match=r"main\.yaml:1: include: must be a list of file paths"):
        load_config(main)
