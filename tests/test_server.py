"""The gateway as users start it: the `gateway serve` process and its master key."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.api.app import create_app
from gateway.core.settings import Settings
from tests.conftest import MASTER_KEY, GatewayFactory, ServerThread, gateway_process, sdk

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


def _ready(base: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{base}/readyz", timeout=5).json()
    return body


@pytest.mark.slow
def test_preloaded_embedding_model_and_no_progress_bars_in_the_log(tmp_path: Path) -> None:
    """GATEWAY_PRELOAD_EMBEDDINGS loads the model at start (readiness waits for it), and
    embeddings calls write no progress bar into the server's log."""
    env = {"GATEWAY_PRELOAD_EMBEDDINGS": "true", "GATEWAY_MASTER_KEY": "mk"}
    with gateway_process(tmp_path / "data", env=env) as (base, process):
        deadline = time.monotonic() + 120
        while (embeddings := _ready(base)["checks"].get("embeddings")) != "loaded":
            assert embeddings == "loading", embeddings
            assert time.monotonic() < deadline, "the embedding model did not load"
            time.sleep(0.1)
        assert httpx.get(f"{base}/readyz").status_code == 200
        client = sdk(base, key="mk")
        for texts in (["one"], ["two", "three"]):
            client.embeddings.create(model="local/all-MiniLM-L6-v2", input=texts)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        output = process.stdout.read() if process.stdout else ""
    assert "embedding model local/all-MiniLM-L6-v2 loaded" in output
    for bar in ("Batches", "it/s", "%|"):
        assert bar not in output, output


def test_readiness_names_a_lazy_embedding_model(gateway: GatewayFactory) -> None:
    ready = _ready(gateway())
    assert ready["status"] == "ready"
    assert ready["checks"]["embeddings"].startswith("not loaded")
    assert "GATEWAY_PRELOAD_EMBEDDINGS" in ready["checks"]["embeddings"]


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "gateway.access"]


def test_no_access_log_by_default(
    gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    base = gateway()
    sdk(base).chat.completions.create(
        model="local/echo", messages=[{"role": "user", "content": "hi"}]
    )
    httpx.get(f"{base}/healthz")
    assert _access_lines(caplog) == []


def test_access_log_is_one_structured_line_per_request(
    gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    base = gateway(access_log=True)
    reply = sdk(base).chat.completions.with_raw_response.create(
        model="local/echo", messages=[{"role": "user", "content": "a private question"}]
    )
    request_id = reply.headers["x-gateway-request-id"]
    refused = httpx.post(
        f"{base}/v1/chat/completions",
        headers={"Authorization": "Bearer sk-not-a-real-key"},
        json={"model": "local/echo", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert refused.status_code == 401
    keys = httpx.get(f"{base}/v1/keys", headers={"Authorization": f"Bearer {MASTER_KEY}"})
    assert keys.status_code == 200
    assert httpx.get(f"{base}/nowhere").status_code == 404
    lines = _access_lines(caplog)
    assert [(x["method"], x["path"], x["status"]) for x in lines] == [
        ("POST", "/v1/chat/completions", 200),
        ("POST", "/v1/chat/completions", 401),
        ("GET", "/v1/keys", 200),
        ("GET", "/nowhere", 404),
    ]
    assert lines[0]["request_id"] == request_id
    assert lines[0]["key_id"] == lines[2]["key_id"] is not None  # the master key's id
    assert [lines[1]["key_id"], lines[3]["key_id"]] == [None, None]
    assert all(isinstance(x["ms"], float) and x["ms"] >= 0 for x in lines)
    text = caplog.text
    for secret in ("a private question", "sk-not-a-real-key", MASTER_KEY):
        assert secret not in text
