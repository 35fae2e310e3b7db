"""`gateway prompts ...` against a real database and a real prompts folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.test_prompts_serving import BROKEN, GREET_V1, GREET_V2

ROOT = Path(__file__).resolve().parent.parent


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


def test_validate_exit_codes_and_file_line_messages(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "greet.prompt").write_text(GREET_V1)
    ok = cli(tmp_path, "validate")
    assert ok.returncode == 0, ok.stderr
    assert "1 prompt file valid" in ok.stdout
    (tmp_path / "prompts" / "greet.prompt").write_text(BROKEN)
    bad = cli(tmp_path, "validate")
    assert bad.returncode == 2
    line = bad.stderr.strip().splitlines()[0]
    assert line.startswith(f"{tmp_path / 'prompts' / 'greet.prompt'}:4: ")
    assert "temprature" in line
    missing = cli(tmp_path, "validate", str(tmp_path / "nope.prompt"))
    assert missing.returncode == 2


def test_shipped_prompts_are_valid() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "prompts", "validate", "prompts"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_sync_promote_rollback_history_render_diff(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "greet.prompt").write_text(GREET_V1)
    first = cli(tmp_path, "sync")
    assert first.returncode == 0, first.stderr
    v1 = first.stdout.split("greet@")[1].split()[0]
    (prompts / "greet.prompt").write_text(GREET_V2)
    second = cli(tmp_path, "sync")
    v2 = second.stdout.split("greet@")[1].split()[0]
    assert v1 != v2
    assert f"production={v1}" in cli(tmp_path, "list").stdout

    promoted = cli(tmp_path, "promote", "greet", v2, "--label", "production", "--reason", "better")
    assert promoted.returncode == 0, promoted.stderr
    assert f"production {v1} -> {v2}" in promoted.stdout
    rendered = json.loads(cli(tmp_path, "render", "greet", "--vars", '{"name": "Di"}').stdout)
    assert rendered["version"] == v2
    assert rendered["messages"][-1] == {"role": "user", "content": "\nGood morning Di"}

    rolled = cli(tmp_path, "rollback", "greet", "--label", "production", "--reason", "oops")
    assert f"production {v2} -> {v1}" in rolled.stdout
    history = cli(tmp_path, "history", "greet", "--label", "production").stdout.splitlines()
    assert len(history) == 3
    assert history[1].rstrip().endswith("better")
    assert history[2].rstrip().endswith("oops")

    diff = cli(tmp_path, "diff", "greet", v1, v2).stdout
    assert "+Good morning {{name}}" in diff

    (prompts / "greet.prompt").write_text(BROKEN)
    broken = cli(tmp_path, "sync")
    assert broken.returncode == 1
    assert "greet.prompt:4" in broken.stderr
    assert "error" not in cli(tmp_path, "show", "greet").stderr

    unknown = cli(tmp_path, "promote", "greet", "deadbeef0000")
    assert unknown.returncode == 2
    assert "no version 'deadbeef0000'" in unknown.stderr
    bad_vars = cli(tmp_path, "render", "greet", "--vars", "[1]")
    assert bad_vars.returncode == 2


def test_promote_takes_labels_for_versions(tmp_path: Path) -> None:
    """Labels stand for the versions they point at now, so an example can be pasted: no
    version id to copy from `gateway prompts list`."""
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "greet.prompt").write_text(GREET_V1)
    v1 = cli(tmp_path, "sync").stdout.split("greet@")[1].split()[0]
    (prompts / "greet.prompt").write_text(GREET_V2)
    v2 = cli(tmp_path, "sync").stdout.split("greet@")[1].split()[0]

    staged = cli(tmp_path, "promote", "greet", "latest", "--label", "staging")
    assert staged.returncode == 0, staged.stderr
    assert f"staging (none) -> {v2}" in staged.stdout
    canary = cli(
        tmp_path, "promote", "greet", "--label", "canary", "--weights", "production=90,latest=10"
    )
    assert canary.returncode == 0, canary.stderr
    assert f"canary={v1}:90+{v2}:10" in cli(tmp_path, "list").stdout
    # Two labels on one version: their weights add up (one version collapses to it).
    same = cli(tmp_path, "promote", "greet", "--label", "ab", "--weights", "staging=1,latest=1")
    assert same.returncode == 0, same.stderr
    assert f"ab (none) -> {v2}" in same.stdout
    split = cli(tmp_path, "promote", "greet", "canary", "--label", "other")
    assert split.returncode == 2
    assert "label 'canary' splits traffic; name a version instead" in split.stderr


def test_validate_and_render_with_partials_context_and_history(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    (prompts / "support").mkdir(parents=True)
    (prompts / "support" / "help.prompt").write_text(
        "---\nmodel: local/echo\ngateway.context:\n  plan: string\n---\n"
        '{{role "system"}}{{> support/tone}} ({{@plan}}, {{@auth.key.id}}){{role "user"}}Q'
    )
    (prompts / "support" / "_tone.prompt").write_text("Be calm.")
    # One file: its partials come from the prompts folder it is in.
    one = cli(tmp_path, "validate", str(prompts / "support" / "help.prompt"))
    assert one.returncode == 0, one.stderr
    assert "1 prompt file valid" in one.stdout
    (prompts / "support" / "_broken.prompt").write_text("{{#each}}")
    broken = cli(tmp_path, "validate", str(prompts / "support" / "_broken.prompt"))
    assert broken.returncode == 2
    assert broken.stderr.startswith(f"{prompts / 'support' / '_broken.prompt'}:1: ")
    (prompts / "support" / "_broken.prompt").unlink()

    assert cli(tmp_path, "sync").returncode == 0
    rendered = cli(
        tmp_path,
        "render",
        "help",
        "--context",
        '{"plan": "pro"}',
        "--messages",
        '[{"role": "user", "content": "before"}]',
    )
    assert rendered.returncode == 0, rendered.stderr
    assert json.loads(rendered.stdout)["messages"] == [
        {"role": "system", "content": "Be calm. (pro, master)"},
        {"role": "user", "content": "before"},
        {"role": "user", "content": "Q"},
    ]
    missing = cli(tmp_path, "render", "help")
    assert missing.returncode == 2
    assert "'plan' is a required property" in missing.stderr
