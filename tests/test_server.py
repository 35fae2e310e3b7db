"""The gateway as users start it: the `gateway serve` process and its master key."""

from __future__ import annotations

import gc
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.api.app import create_app
from gateway.core.settings import Settings
from tests.conftest import ServerThread, gateway_process, sdk

ROOT = Path(__file__).resolve().parent.parent


def test_master_key_is_generated_once_and_kept_private(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(config=ROOT / "config" / "gateway.yaml", data_dir=tmp_path / "data")
    create_app(settings)
    key_file = tmp_path / "data" / "master_key"
    key = key_file.read_text().strip()
    assert key.startswith("gw-master-")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    first = capfd.readouterr().err
    assert key in first
    assert str(key_file) in first

    create_app(settings)  # a restart reuses the key and does not print it again
    assert key_file.read_text().strip() == key
    assert key not in capfd.readouterr().err


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    with gateway_process(tmp_path / "data") as (base, process):
        yield base, tmp_path / "data", process


@pytest.mark.slow
def test_serve_starts_offline_with_defaults(
    served: tuple[str, Path, subprocess.Popen[str]],
) -> None:
    base, data_dir, process = served
    key = (data_dir / "master_key").read_text().strip()
    client = sdk(base, key=key)
    assert [m.id for m in client.models.list()] == ["local/echo", "local/all-MiniLM-L6-v2"]
    reply = client.chat.completions.create(
        model="local/echo", messages=[{"role": "user", "content": "hi from a process"}]
    )
    assert reply.choices[0].message.content == "hi from a process"
    process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so supervisors see the signal.
    assert process.wait(timeout=10) in (0, -signal.SIGTERM)
    output = process.stdout.read() if process.stdout else ""
    assert "Application shutdown complete" in output
    assert "generated a master key" in output
    assert key in output


def test_serve_refuses_an_invalid_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list:\n  - model_name: a\n    litellm_params: {model: 1}\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "GATEWAY_DATA_DIR": str(tmp_path / "d")},
    )
    assert result.returncode == 2
    assert "bad.yaml:3: model_list[0].litellm_params.model" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_two_workers_start_together_on_a_fresh_sqlite(tmp_path: Path) -> None:
    workers = gateway_process(tmp_path / "data", "--workers", "2", env={"GATEWAY_MASTER_KEY": "mk"})
    with workers as (base, _process):
        client = sdk(base, key="mk", max_retries=0)
        for _ in range(20):
            client.chat.completions.create(
                model="local/echo", messages=[{"role": "user", "content": "hi"}]
            )


def test_the_server_freezes_what_startup_made_and_tests_do_not(tmp_path: Path) -> None:
    """Long-lived startup objects leave the collector's sight in the server process only."""
    config = ROOT / "config" / "gateway.yaml"
    gc.unfreeze()
    try:
        plain = ServerThread(create_app(Settings(config=config, data_dir=tmp_path / "a")))
        plain.start()
        plain.stop()
        assert gc.get_freeze_count() == 0
        served = ServerThread(
            create_app(Settings(config=config, data_dir=tmp_path / "b"), freeze_after_start=True)
        )
        served.start()
        served.stop()
        assert gc.get_freeze_count() > 10_000  # modules, classes, routes, config...
    finally:
        gc.unfreeze()
