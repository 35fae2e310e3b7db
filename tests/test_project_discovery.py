"""The CLI finds its project as git does: from the current folder up to the one holding
`config/gateway.yaml` or `.gateway/`. Run elsewhere, read commands refuse instead of creating
an empty data folder, and `gateway serve` runs on the built-in config. Real processes, run
from real folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import gateway_process

ROOT = Path(__file__).resolve().parent.parent
GREET = """---
model: local/echo
---
Hello from the project.
"""
GREET_SUITE = {
    "target": "prompt:greet@latest",
    "cases": [{"id": "hello", "assert": [{"type": "contains", "value": "Hello"}]}],
}


def gateway(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`gateway ARGS` run from `cwd`, with none of the caller's GATEWAY_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    clean["PYTHONPATH"] = os.pathsep.join([str(ROOT), clean.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=clean | env,
    )


def no_project(cwd: Path) -> str:
    return (
        f"error: no gateway project here (looked for config/gateway.yaml or .gateway/ from "
        f"{cwd} up); run from your project or set GATEWAY_DATA_DIR"
    )


def make_project(root: Path, models: list[str] | None = None) -> Path:
    """A project as a clone holds it: config/gateway.yaml and prompts/, no data yet."""
    (root / "config").mkdir(parents=True)
    config = (ROOT / "config" / "gateway.yaml").read_text()
    if models is not None:
        entries = [{"model_name": m, "litellm_params": {"model": "local/echo"}} for m in models]
        config = yaml.safe_dump({"model_list": entries})
    (root / "config" / "gateway.yaml").write_text(config)
    (root / "prompts").mkdir()
    (root / "prompts" / "greet.prompt").write_text(GREET)
    return root


def data_folders(under: Path) -> list[Path]:
    return sorted(under.rglob(".gateway"))


@pytest.mark.parametrize(
    "command",
    [
        ("keys", "list"),
        ("keys", "show", "key_x"),
        ("prompts", "list"),
        ("registry", "list"),
        ("costs", "report"),
    ],
)
def test_read_commands_outside_a_project_refuse_and_create_nothing(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = gateway(elsewhere, *command)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == no_project(elsewhere)
    assert result.stdout == ""
    assert data_folders(tmp_path) == []


def test_writes_that_need_a_project_refuse_outside_one(tmp_path: Path) -> None:
    result = gateway(tmp_path, "keys", "create", "--name", "stray")
    assert result.returncode == 2
    looked, _ = no_project(tmp_path).split("); ")
    assert result.stderr.strip() == (
        f"{looked}); run from your project, set GATEWAY_DATA_DIR, or `mkdir .gateway` to "
        f"start one here"
    )
    assert data_folders(tmp_path) == []


def test_commands_find_the_project_from_a_subfolder(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    deep = project / "src" / "app"
    deep.mkdir(parents=True)

    synced = gateway(deep, "prompts", "sync")
    assert synced.returncode == 0, synced.stderr
    assert synced.stdout.startswith("registered greet@")
    assert synced.stderr == ""  # nothing extra when the project is found
    created = gateway(deep, "keys", "create", "--name", "from-deep")
    assert created.returncode == 0, created.stderr
    assert data_folders(tmp_path) == [project / ".gateway"]

    # Any folder of the project sees the same data; the project root does too.
    assert "greet" in gateway(project / "src", "prompts", "list").stdout
    listed = gateway(project, "keys", "list")
    assert "from-deep" in listed.stdout, listed.stderr
    # `prompts validate` with no argument checks the project's prompts/, not ./prompts, and
    # their models against the project's config.
    validated = gateway(deep, "prompts", "validate")
    config = project / "config" / "gateway.yaml"
    expected = f"1 prompt file valid (models checked against {config})"
    assert validated.stdout.strip() == expected, validated.stderr


def test_a_data_folder_alone_marks_a_project(tmp_path: Path) -> None:
    (tmp_path / ".gateway").mkdir()
    sub = tmp_path / "notes"
    sub.mkdir()
    assert gateway(sub, "keys", "create", "--name", "here").returncode == 0
    listed = gateway(sub, "keys", "list")
    assert "here" in listed.stdout, listed.stderr
    assert data_folders(tmp_path) == [tmp_path / ".gateway"]


def test_explicit_settings_win_and_relative_ones_stay_relative_to_the_cwd(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path / "project")
    sub = project / "sub"
    sub.mkdir()
    created = gateway(sub, "keys", "create", "--name", "mine", GATEWAY_DATA_DIR="own-data")
    assert created.returncode == 0, created.stderr
    assert (sub / "own-data" / "gateway.db").is_file()
    assert not (project / ".gateway").exists()
    # An explicit data folder that does not exist is named, not silently made.
    missing = gateway(sub, "keys", "list", GATEWAY_DATA_DIR="typo-data")
    assert missing.returncode == 2
    assert "typo-data" in missing.stderr
    assert not (sub / "typo-data").exists()


def test_read_commands_in_a_fresh_project_show_nothing_and_create_nothing(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path / "project")
    for command in (("keys", "list"), ("prompts", "list"), ("registry", "list")):
        result = gateway(project, *command)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
    shown = gateway(project, "prompts", "show", "greet")
    assert shown.returncode == 2  # nothing is recorded yet
    assert "greet" in shown.stderr
    assert data_folders(tmp_path) == []


def notes(stderr: str) -> list[str]:
    """What an eval run wrote to stderr besides its progress (gateway/cli/progress.py)."""
    return [
        line
        for line in stderr.strip().splitlines()
        if not (
            line.startswith(("[", "starting the gateway in process"))
            or line.endswith((" case", " cases"))
        )
    ]


def test_in_process_eval_run_mints_no_master_key(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    suite = project / "evals" / "echo.yaml"
    suite.parent.mkdir()
    suite.write_text(yaml.safe_dump(GREET_SUITE))
    result = gateway(project / "evals", "eval", "run", "echo.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "generated a master key" not in result.stderr
    assert notes(result.stderr) == []  # inside a project: nothing beyond the progress lines
    assert (project / ".gateway").is_dir()  # the run is recorded in the project ...
    assert not (project / ".gateway" / "master_key").exists()  # ... but no key is minted


def test_in_process_eval_run_outside_a_project_says_where_data_goes(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "greet.prompt").write_text(GREET)
    suite = tmp_path / "greet.yaml"
    suite.write_text(yaml.safe_dump(GREET_SUITE))
    result = gateway(tmp_path, "eval", "run", "greet.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    (note,) = notes(result.stderr)
    assert "built-in" in note
    assert str(tmp_path / ".gateway") in note
    assert not (tmp_path / ".gateway" / "master_key").exists()


def test_builtin_config_is_the_shipped_one() -> None:
    from gateway.core.project import BUILTIN_CONFIG

    assert BUILTIN_CONFIG.read_text() == (ROOT / "config" / "gateway.yaml").read_text(), (
        "config/gateway.yaml changed: copy it to gateway/core/default_config.yaml"
    )


def _serve_log(process: subprocess.Popen[str]) -> str:
    process.terminate()
    process.wait(timeout=15)
    return process.stdout.read() if process.stdout else ""


@pytest.mark.slow
def test_serve_outside_a_project_runs_the_builtin_config(tmp_path: Path) -> None:
    with gateway_process(None, cwd=tmp_path, env={"GATEWAY_MASTER_KEY": "mk"}) as (base, proc):
        models = httpx.get(f"{base}/v1/models", headers={"Authorization": "Bearer mk"}).json()
        output = _serve_log(proc)
    assert [m["id"] for m in models["data"]] == ["local/echo", "local/all-MiniLM-L6-v2"]
    notes = [line for line in output.splitlines() if "built-in" in line]
    assert len(notes) == 1, output
    assert str(tmp_path / ".gateway") in notes[0]  # where its data goes, said once
    assert (tmp_path / ".gateway" / "gateway.db").is_file()


@pytest.mark.slow
def test_serve_from_a_subfolder_uses_the_projects_config_and_data(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", models=["project-echo"])
    sub = project / "docs"
    sub.mkdir()
    with gateway_process(None, "--workers", "2", cwd=sub) as (base, proc):
        key = (project / ".gateway" / "master_key").read_text().strip()
        models = httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {key}"})
        output = _serve_log(proc)
    assert [m["id"] for m in models.json()["data"]] == ["project-echo"], output
    assert "built-in" not in output
    assert data_folders(tmp_path) == [project / ".gateway"]
