"""The gateway as users start it: the `gateway serve` process and its master key."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import free_port, sdk

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
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATA_DIR"] = str(tmp_path / "data")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            output = process.stdout.read() if process.stdout else ""
            process.kill()
            raise RuntimeError(f"gateway serve did not start:\n{output}")
        time.sleep(0.05)
    yield base, tmp_path / "data", process
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


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
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"GATEWAY_DATA_DIR": str(tmp_path / "data"), "GATEWAY_MASTER_KEY": "mk"}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--workers", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client = sdk(f"http://127.0.0.1:{port}", key="mk", max_retries=0)
        deadline = time.monotonic() + 60
        replies = 0
        while replies < 20 and time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                client.chat.completions.create(
                    model="local/echo", messages=[{"role": "user", "content": "hi"}]
                )
                replies += 1
            except Exception:  # not listening yet
                time.sleep(0.1)
        assert replies == 20
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
