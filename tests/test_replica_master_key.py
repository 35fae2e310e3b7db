"""Replicas over one database agree on the master key, or refuse to start: never a key that
works on one replica and gets 401 on the other. Two `gateway serve` processes, as an
operator starts them, over one PostgreSQL database made for the test."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import yaml

from gateway.identity.auth import SHARED_DATABASE_NEEDS_A_KEY
from tests.conftest import ROOT, gateway_process

pytestmark = pytest.mark.slow

MODELS = [{"model_name": "local/echo", "litellm_params": {"model": "local/echo"}}]
KEY = "gw-master-shared-by-both-replicas"


def _config(tmp_path: Path, **sections: object) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({"model_list": MODELS, **sections}))
    return path


def _env(config: Path, pg_url: str, **extra: str) -> dict[str, str]:
    return {
        "GATEWAY_CONFIG": str(config),
        "GATEWAY_DATABASE_URL": pg_url,
        "GATEWAY_LOG_LEVEL": "warning",
        **extra,
    }


def test_replicas_refuse_a_shared_database_without_a_master_key(
    tmp_path: Path, pg_url: str
) -> None:
    config = _config(tmp_path)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "LITELLM_"))}
    for replica in ("a", "b"):
        data_dir = tmp_path / replica
        started = subprocess.run(
            [sys.executable, "-m", "gateway", "serve", "--port", "0"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env=clean | _env(config, pg_url, GATEWAY_DATA_DIR=str(data_dir)),
        )
        assert started.returncode == 2, started.stderr
        assert started.stderr.strip() == f"error: {SHARED_DATABASE_NEEDS_A_KEY}"
        assert not (data_dir / "master_key").exists()  # no key of its own made


@pytest.mark.parametrize(
    ("where", "env", "general_settings"),
    [
        ("GATEWAY_MASTER_KEY", {"GATEWAY_MASTER_KEY": KEY}, None),
        ("general_settings.master_key", {}, {"master_key": KEY}),
        ("LITELLM_MASTER_KEY", {"LITELLM_MASTER_KEY": KEY}, None),
    ],
)
def test_two_replicas_accept_the_same_master_key(
    tmp_path: Path,
    pg_url: str,
    where: str,
    env: dict[str, str],
    general_settings: dict[str, str] | None,
) -> None:
    sections = {"general_settings": general_settings} if general_settings else {}
    config = _config(tmp_path, **sections)
    admin = {"Authorization": f"Bearer {KEY}"}
    with ExitStack() as stack:
        a, b = (
            stack.enter_context(gateway_process(tmp_path / name, env=_env(config, pg_url, **env)))[
                0
            ]
            for name in ("a", "b")
        )
        # A key made with the master key on one replica serves on the other, and the
        # master key itself is accepted by both.
        made = httpx.post(f"{a}/v1/keys", json={"name": "app"}, headers=admin, timeout=30)
        assert made.status_code == 200, f"{where}: {made.text}"
        shown = httpx.get(f"{b}/v1/keys/{made.json()['id']}", headers=admin, timeout=30)
        assert shown.status_code == 200, f"{where}: {shown.text}"
        call = {"model": "local/echo", "messages": [{"role": "user", "content": "hi"}]}
        answered = httpx.post(
            f"{b}/v1/chat/completions",
            json=call,
            headers={"Authorization": f"Bearer {made.json()['key']}"},
            timeout=30,
        )
        assert answered.status_code == 200, f"{where}: {answered.text}"
    for name in ("a", "b"):
        assert not (tmp_path / name / "master_key").exists()
