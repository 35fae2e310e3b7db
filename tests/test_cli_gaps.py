"""The `gateway` command as a new user meets it: teams, key options, `config check` without a
path, help screens, plurals, and messages that say what happened (real processes, a real
database)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
import typer
import yaml
from typer.core import TyperArgument, TyperOption

from gateway.cli.main import command
from tests.conftest import ROOT, Project
from tests.test_evals import GOOD, WORSE


def succeed(project: Project, *args: str) -> str:
    result = project.gateway(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def fields(output: str) -> dict[str, str]:
    """`name: value` lines, as `keys show` and `teams show` print them."""
    return dict(line.split(": ", 1) for line in output.splitlines() if ": " in line)


# --- teams -------------------------------------------------------------------------------------


def test_teams_create_list_show_update(project: Project) -> None:
    created = succeed(
        project,
        *("teams", "create", "platform", "--max-budget", "25", "--budget-duration", "30d"),
        *("--rpm", "120", "--metadata", '{"owner": "ana"}'),
    )
    assert created.splitlines()[0] == "created team platform"
    shown = fields(created)
    assert (shown["max_budget"], shown["budget_duration"], shown["rpm_limit"]) == (
        "25.0",
        "30d",
        "120",
    )
    assert json.loads(shown["metadata"]) == {"owner": "ana"}

    # A key's --team creates the team too; the team's page lists its keys.
    key = fields(succeed(project, "keys", "create", "--name", "ci", "--team", "search"))["id"]
    listed = succeed(project, "teams", "list").splitlines()
    assert listed[0].split()[:2] == ["id", "budget"]
    assert [line.split()[0] for line in listed[1:]] == ["platform", "search"]
    assert "25.00" in listed[1]
    search = succeed(project, "teams", "show", "search")
    assert f"keys: {key}" in search

    # update changes what it is given and keeps the rest.
    updated = fields(succeed(project, "teams", "update", "platform", "--tpm", "5000"))
    assert (updated["tpm_limit"], updated["rpm_limit"], updated["max_budget"]) == (
        "5000",
        "120",
        "25.0",
    )
    again = succeed(project, "teams", "create", "platform", "--rpm", "60")
    assert again.splitlines()[0] == "updated team platform (it existed)"
    assert fields(again)["max_budget"] == "25.0"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "t", "--budget-duration", "fortnight"], "--budget-duration"),
        (["create", "t", "--max-budget", "-1"], "--max-budget"),
        (["create", "t", "--rpm", "0"], "--rpm"),
        (["create", "t", "--metadata", "[1]"], "--metadata must be a JSON object"),
        (["create", "x" * 65], "TEAM (id): String should have at most 64 characters"),
        (["create", "a\tb"], "team id 'a\\tb' must be 1 to 64 characters"),
        (["show", "nope"], "No team 'nope'"),
        (["update", "nope", "--rpm", "5"], "No team 'nope'"),
    ],
)
def test_teams_bad_input_exits_2(project: Project, args: list[str], message: str) -> None:
    project.gateway("teams", "create", "existing")  # so the data folder exists and is read
    result = project.gateway("teams", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# --- keys --------------------------------------------------------------------------------------


def test_keys_create_takes_prompts_and_log_bodies(project: Project) -> None:
    created = fields(
        succeed(
            project,
            *("keys", "create", "--name", "triage", "--prompt", "support-*"),
            *("--prompt", "greet", "--model", "local/*", "--log-bodies"),
        )
    )
    shown = fields(succeed(project, "keys", "show", created["id"]))
    assert json.loads(shown["prompts"]) == ["support-*", "greet"]
    assert json.loads(shown["models"]) == ["local/*"]
    assert shown["log_bodies"] == "True"
    plain = fields(succeed(project, "keys", "create"))
    assert (plain["log_bodies"], plain["prompts"]) == ("False", "[]")


# --- config check ------------------------------------------------------------------------------


def test_config_check_defaults_to_GATEWAY_CONFIG(project: Project) -> None:
    config = project.root / "gateway.yaml"
    ok = project.gateway("config", "check")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"{config}: ok (2 deployments, 2 models);")

    config.write_text(
        yaml.safe_dump({"model_list": [{"model_name": "one", "litellm_params": {"model": "x/y"}}]})
    )
    checked = succeed(project, "config", "check")
    assert checked.startswith(f"{config}: ok (1 deployment, 1 model);")

    config.write_text("model_list:\n  - model_name: a\n    litelm_params: {model: x/y}\n")
    bad = project.gateway("config", "check")
    assert bad.returncode == 2
    assert (
        f"{config}:3: model_list[0].litelm_params: unknown key 'litelm_params': "
        "did you mean 'litellm_params'?"
    ) in bad.stderr


# --- help screens ------------------------------------------------------------------------------


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, group)]
    for name, sub in getattr(group, "commands", {}).items():
        found += _commands(sub, (*path, name))
    return found


def test_no_help_screen_gives_a_flag_a_value() -> None:
    """Every command of the tree, --help included: a flag shows no value type."""
    root = command()
    checked = 0
    for path, cmd in _commands(root):
        context = typer.Context(cmd, info_name=path[-1] if path else "gateway")
        for param in cmd.get_params(context):
            shown = param.display_type_rich(ctx=context)
            if isinstance(param, TyperOption) and param.is_flag:
                assert not shown, (path, param.opts, shown)
                checked += 1
            elif isinstance(param, TyperArgument):
                assert param.metavar == (param.name or "").upper(), (path, param.name)
            assert "list[" not in (shown or ""), (path, param.name, shown)
    assert checked > 40  # --help of every command, and the flags


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["keys", "create"],
        ["eval", "run"],
        ["costs", "report"],
        ["teams", "create"],
    ],
)
def test_help_screens_read_naturally(project: Project, args: list[str]) -> None:
    env = project.env() | {"COLUMNS": "160", "TERM": "dumb"}
    result = subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "<bool>" not in result.stdout
    assert "list[" not in result.stdout
    assert re.search(r"--help\s+Show this message and exit", result.stdout), result.stdout
    if args == ["eval", "run"]:
        assert "[OPTIONS] {SUITES}..." in result.stdout
        assert re.search(r"--no-cache\s+Call again", result.stdout), result.stdout


# --- messages ----------------------------------------------------------------------------------


def test_counts_agree_with_their_nouns(project: Project) -> None:
    project.prompt(GOOD.format(model="local/echo"))
    validated = succeed(project, "prompts", "validate")
    assert validated.startswith("1 prompt file valid (models checked against")
    suite = project.suite(
        "one",
        target="model:local/echo",
        cases=[
            {"id": "hi", "vars": {"input": "hi"}, "assert": [{"type": "equals", "value": "hi"}]}
        ],
    )
    validated = succeed(project, "eval", "validate", str(suite))
    assert validated.strip() == f"{suite}: ok (1 case, target model:local/echo)"
    ran = project.gateway("eval", "run", str(suite), "--no-store")
    assert ran.returncode == 0, ran.stderr
    assert "model:local/echo: 1 case\n" in ran.stderr
    assert "1/1 passed (100.0%), 0 errors," in ran.stdout


def test_diff_says_when_there_is_no_difference(project: Project) -> None:
    project.prompt(GOOD.format(model="local/echo"))
    synced = succeed(project, "prompts", "sync")
    v1 = synced.split("greet@")[1].split()[0]
    same = project.gateway("prompts", "diff", "greet", "production", "latest")
    assert same.returncode == 0, same.stderr
    assert same.stdout == ""
    assert same.stderr.strip() == (
        f"no difference: greet@production and greet@latest are both version {v1}"
    )

    project.prompt(WORSE.format(model="local/echo"))
    v2 = succeed(project, "prompts", "sync").split("greet@")[1].split()[0]
    changed = project.gateway("prompts", "diff", "greet", v1, v2)
    assert changed.returncode == 0, changed.stderr
    assert "-Please greet {{name}} warmly." in changed.stdout
    assert changed.stderr == ""


def test_history_lines_end_with_a_reason_only_when_one_was_given(project: Project) -> None:
    project.prompt(GOOD.format(model="local/echo"))
    v1 = succeed(project, "prompts", "sync").split("greet@")[1].split()[0]
    project.prompt(WORSE.format(model="local/echo"))
    v2 = succeed(project, "prompts", "sync").split("greet@")[1].split()[0]
    succeed(project, "prompts", "promote", "greet", v2)
    succeed(project, "prompts", "promote", "greet", v1, "--reason", "worse")
    lines = succeed(project, "prompts", "history", "greet", "--label", "production").splitlines()
    assert len(lines) == 3
    assert not lines[1].rstrip().endswith(":"), lines[1]
    assert lines[2].rstrip().endswith(": worse"), lines[2]
