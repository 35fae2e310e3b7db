"""What prompt authors' repositories run: the pull-request workflow
(.github/workflows/evals.yml; its schema is checked by deploy/validate.sh) and the pre-commit
hooks (.pre-commit-hooks.yaml). Their commands are run here as GitHub and pre-commit run
them: the workflow's steps in a copy of the project, the hooks with the file names
pre-commit passes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli.main import command
from tests.conftest import ROOT

VENV_BIN = Path(sys.executable).parent
WORKFLOW = yaml.safe_load((ROOT / ".github" / "workflows" / "evals.yml").read_text())
(JOB,) = WORKFLOW["jobs"].values()
STEPS = {step.get("name", step.get("uses")): step for step in JOB["steps"]}
HOOKS: list[dict[str, Any]] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
# A prompt authors' repository: these folders, as the project has them.
REPOSITORY = ("config", "prompts", "evals")


def _repository(tmp_path: Path) -> Path:
    root = tmp_path / "prompt-repo"
    for folder in REPOSITORY:
        shutil.copytree(ROOT / folder, root / folder)
    # A suite that retrieves from a vector collection needs that collection built first
    # (`make evals` builds this project's example); a prompt repository brings its own.
    for suite in (root / "evals").glob("*.yaml"):
        if "\nretrieve:" in suite.read_text():
            suite.unlink()
    return root


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    env["PYTHONPATH"] = str(ROOT)  # this checkout's gateway, as `pip install` would give
    return env | extra


def _torch_pin() -> str:
    found = re.search(r'"torch==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert found
    return found.group(1)


# -- the workflow --------------------------------------------------------------------------


def test_workflow_runs_on_pull_requests_and_may_comment() -> None:
    triggers = WORKFLOW[True]  # `on:`, which YAML 1.1 (PyYAML) reads as true; GitHub does not
    assert set(triggers) == {"pull_request"}
    assert WORKFLOW["permissions"] == {"contents": "read", "pull-requests": "write"}
    install = STEPS["Install the gateway"]["run"]
    assert f"torch=={_torch_pin()}" in install
    assert '--index-url "$TORCH_CPU_INDEX"' in install
    assert WORKFLOW["env"]["TORCH_CPU_INDEX"] == "https://download.pytorch.org/whl/cpu"


def test_the_comment_posts_the_report_the_run_writes() -> None:
    run = STEPS["Run eval suites"]["run"]
    post = STEPS["Post the report on the pull request"]
    markdown = re.search(r"--markdown (\S+)", run)
    assert markdown
    assert f"--body-file {markdown.group(1)}" in post["run"]
    assert post["if"] == "${{ always() && steps.run.outcome == 'success' }}"
    assert STEPS["Run eval suites"]["id"] == "run"
    kept = STEPS["Keep the reports"]
    assert kept["with"]["path"].rstrip("/") == WORKFLOW["env"]["REPORTS"]


def _run_step(name: str, root: Path, output: Path) -> subprocess.CompletedProcess[str]:
    step = STEPS[name]
    env = _env(**{k: str(v) for k, v in WORKFLOW["env"].items()}, GITHUB_OUTPUT=str(output))
    # Secrets are empty on a pull request without them; the project's suites need none.
    env |= {k: "" for k, v in step.get("env", {}).items() if "secrets." in str(v)}
    return subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
        env=env,
    )


@pytest.mark.slow
def test_workflow_steps_validate_run_and_write_the_report(tmp_path: Path) -> None:
    root = _repository(tmp_path)
    output = tmp_path / "github_output"
    output.touch()
    for name in ("Validate prompt files", "Validate eval suites", "Run eval suites"):
        done = _run_step(name, root, output)
        assert done.returncode == 0, f"{name}:\n{done.stdout}\n{done.stderr}"
    assert output.read_text().splitlines() == ["status=0"]
    report = (root / WORKFLOW["env"]["REPORTS"] / "evals.md").read_text()
    for suite in ("summarize", "support-triage", "rag-answer"):
        assert suite in report
    # The last step fails the job only when a suite failed.
    assert STEPS["Fail when a suite failed"]["if"] == "${{ steps.run.outputs.status != '0' }}"


@pytest.mark.slow
def test_workflow_validation_fails_on_a_broken_prompt(tmp_path: Path) -> None:
    root = _repository(tmp_path)
    (root / "prompts" / "broken.prompt").write_text("---\nmodel: [unclosed\n---\nhi\n")
    done = _run_step("Validate prompt files", root, tmp_path / "out")
    assert done.returncode == 2
    assert "broken.prompt:" in done.stdout + done.stderr


# -- the pre-commit hooks ------------------------------------------------------------------


def _variadic_command(entry: str) -> Any:
    """The command an entry names (`gateway prompts validate`), which must take file names
    after its own words, as pre-commit appends them."""
    words = entry.split()
    assert words[0] == "gateway"
    found = command()
    for word in words[1:]:
        found = found.commands[word]
    arguments = [p for p in found.params if p.param_type_name == "argument"]
    assert len(arguments) == 1
    assert arguments[0].nargs == -1, f"{entry} does not take several files"
    return found


def _files_passed(hook: dict[str, Any], root: Path) -> list[str]:
    """What pre-commit passes on `pre-commit run --all-files`: the repository's files (as
    paths from its root) that the hook's `files` pattern matches."""
    pattern = re.compile(hook["files"])
    names = [path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()]
    return sorted(name for name in names if pattern.search(name))


def test_every_hook_is_well_formed_and_names_a_real_command() -> None:
    ids = [hook["id"] for hook in HOOKS]
    assert len(ids) == len(set(ids))
    for hook in HOOKS:
        assert set(hook) <= {"id", "name", "description", "entry", "language", "files"}
        assert hook["language"] in ("python", "system")
        assert hook.get("pass_filenames", True)
        _variadic_command(hook["entry"])
    entries = {hook["entry"] for hook in HOOKS}
    assert entries == {"gateway prompts validate", "gateway eval validate"}


@pytest.mark.parametrize("hook", HOOKS, ids=[hook["id"] for hook in HOOKS])
def test_hooks_pass_on_the_projects_files(hook: dict[str, Any], tmp_path: Path) -> None:
    root = _repository(tmp_path)
    files = _files_passed(hook, root)
    assert files, f"{hook['id']} matches no file of the project"
    done = subprocess.run(
        [*hook["entry"].split(), *files],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
        env=_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("entry", "name", "text", "where"),
    [
        ("gateway prompts validate", "prompts/bad.prompt", "---\nmodel: [x\n---\nhi\n", ":"),
        ("gateway eval validate", "evals/bad.yaml", "target: prompt:x@latest\ncases: 3\n", ":"),
    ],
)
def test_hooks_fail_on_a_broken_file(
    tmp_path: Path, entry: str, name: str, text: str, where: str
) -> None:
    root = _repository(tmp_path)
    (root / name).write_text(text)
    hook = next(h for h in HOOKS if h["entry"] == entry)
    assert name in _files_passed(hook, root)
    done = subprocess.run(
        [*entry.split(), name],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
        env=_env(),
    )
    assert done.returncode == 2
    assert f"{name}{where}" in done.stdout + done.stderr
