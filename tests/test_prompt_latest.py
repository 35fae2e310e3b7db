"""`latest` is the version of the file as it is now: it follows edits, reverts (a
`git checkout` of an older content) and says so when the file is gone, from the CLI and on a
running server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import GatewayFactory, sdk
from tests.test_prompts_serving import ADMIN, GREET_V1, GREET_V2, greet, sync

ROOT = Path(__file__).resolve().parent.parent
REVERT_REASON = "the file on disk is this version again"


def cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATA_DIR"] = str(tmp / "data")
    env["GATEWAY_PROMPTS_DIR"] = str(tmp / "prompts")
    return subprocess.run(
        [sys.executable, "-m", "gateway", "prompts", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


def git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Ana", "-c", "user.email=ana@example.com", *args],
        cwd=folder,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def prompts_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "prompts"
    directory.mkdir()
    (directory / "greet.prompt").write_text(GREET_V1)
    return directory


def registered(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.split("registered greet@")[1].split()[0]


def test_latest_follows_a_git_checkout_back_to_an_older_version(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "greet.prompt").write_text(GREET_V1)
    git(prompts, "init", "-q")
    git(prompts, "add", "greet.prompt")
    git(prompts, "commit", "-q", "-m", "greet")
    v1 = registered(cli(tmp_path, "sync"))
    (prompts / "greet.prompt").write_text(GREET_V2)
    v2 = registered(cli(tmp_path, "sync"))

    git(prompts, "checkout", "--", "greet.prompt")
    reverted = cli(tmp_path, "sync")
    assert reverted.returncode == 0, reverted.stderr
    assert f"latest greet@{v1} (was {v2}): {REVERT_REASON}" in reverted.stdout
    assert "0 new, 1 unchanged" in reverted.stdout
    assert f"latest={v1}" in cli(tmp_path, "list").stdout
    rendered = json.loads(
        cli(tmp_path, "render", "greet", "--label", "latest", "--vars", '{"name": "Di"}').stdout
    )
    assert rendered["version"] == v1
    history = cli(tmp_path, "history", "greet", "--label", "latest").stdout.splitlines()
    assert len(history) == 3
    assert f"{v2} -> {v1}" in history[-1]
    assert history[-1].rstrip().endswith(REVERT_REASON)
    # Production was never moved by any of this.
    assert f"production={v1}" in cli(tmp_path, "list").stdout

    again = cli(tmp_path, "sync")  # nothing changed on disk: nothing moves, nothing recorded
    assert "latest greet@" not in again.stdout
    assert len(cli(tmp_path, "history", "greet", "--label", "latest").stdout.splitlines()) == 3


def test_promote_latest_says_that_sync_manages_it(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "greet.prompt").write_text(GREET_V1)
    v1 = registered(cli(tmp_path, "sync"))
    refused = cli(tmp_path, "promote", "greet", v1, "--label", "latest")
    assert refused.returncode == 2
    message = refused.stderr
    assert "'latest' is managed by sync" in message
    assert "gateway prompts sync" in message
    assert "file" in message


def test_a_removed_file_keeps_latest_and_is_marked(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "greet.prompt").write_text(GREET_V1)
    (prompts / "other.prompt").write_text(GREET_V1)
    v1 = registered(cli(tmp_path, "sync"))
    (prompts / "greet.prompt").unlink()
    removed = cli(tmp_path, "sync")
    assert removed.returncode == 0, removed.stderr
    assert f"greet: file removed; latest stays at {v1}" in removed.stdout
    listed = cli(tmp_path, "list").stdout.splitlines()
    greet_line = next(line for line in listed if line.startswith("greet "))
    other_line = next(line for line in listed if line.startswith("other "))
    assert f"latest={v1}" in greet_line
    assert "(file removed)" in greet_line
    assert "(file removed)" not in other_line
    # The file back: nothing to move, and the mark is gone.
    (prompts / "greet.prompt").write_text(GREET_V1)
    back = cli(tmp_path, "sync")
    assert "file removed" not in back.stdout
    assert "(file removed)" not in cli(tmp_path, "list").stdout


def test_a_running_server_follows_a_revert_on_its_next_sync(
    gateway: GatewayFactory, prompts_dir: Path
) -> None:
    base = gateway(prompts_dir=prompts_dir)
    client = sdk(base)
    v1 = greet(client, label="latest")[1].split("@")[1]
    (prompts_dir / "greet.prompt").write_text(GREET_V2)
    v2 = sync(base)["registered"][0].split("@")[1]
    assert greet(client, label="latest") == ("\nGood morning Ana", f"greet@{v2}")

    (prompts_dir / "greet.prompt").write_text(GREET_V1)
    result = sync(base)
    assert result["registered"] == []
    assert result["latest_moved"] == [f"greet@{v1}"]
    assert greet(client, label="latest") == ("\nHello Ana", f"greet@{v1}")
    history = httpx.get(
        f"{base}/v1/prompts/greet/history", params={"label": "latest"}, headers=ADMIN
    ).json()["data"]
    assert (history[-1]["from"], history[-1]["to"], history[-1]["reason"]) == (
        {"version": v2},
        {"version": v1},
        REVERT_REASON,
    )
    # A restart with the same file on disk moves nothing.
    gateway(prompts_dir=prompts_dir)
    after = httpx.get(
        f"{base}/v1/prompts/greet/history", params={"label": "latest"}, headers=ADMIN
    ).json()["data"]
    assert len(after) == len(history)


def test_a_server_started_on_a_reverted_file_moves_latest_back(
    gateway: GatewayFactory, prompts_dir: Path
) -> None:
    base = gateway(prompts_dir=prompts_dir)
    v1 = greet(sdk(base), label="latest")[1].split("@")[1]
    (prompts_dir / "greet.prompt").write_text(GREET_V2)
    sync(base)
    (prompts_dir / "greet.prompt").write_text(GREET_V1)
    restarted = gateway(prompts_dir=prompts_dir)  # syncs at start
    assert greet(sdk(restarted), label="latest")[1] == f"greet@{v1}"


def test_api_refuses_promoting_latest_and_marks_removed_files(
    gateway: GatewayFactory, prompts_dir: Path
) -> None:
    base = gateway(prompts_dir=prompts_dir)
    client = sdk(base)
    served = greet(client)
    v1 = served[1].split("@")[1]
    refused = httpx.post(
        f"{base}/v1/prompts/greet/labels", json={"label": "latest", "version": v1}, headers=ADMIN
    )
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert "'latest' is managed by sync" in error["message"]
    assert error["param"] == "label"

    (prompts_dir / "greet.prompt").unlink()
    result = sync(base)
    assert result["removed"] == ["greet"]
    listed = httpx.get(f"{base}/v1/prompts", headers=ADMIN).json()["data"]
    assert [(p["name"], p["latest"], p["file_removed"]) for p in listed] == [("greet", v1, True)]
    assert greet(client) == served  # production keeps serving
