"""`gateway migrate`: what a Kubernetes init container (deploy/k8s) runs before a replica
starts. Several at once over one PostgreSQL database take turns under the advisory lock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from gateway.store.db import head_revision
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.slow


def _migrate(tmp_path: Path, database_url: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"GATEWAY_DATABASE_URL": database_url, "GATEWAY_DATA_DIR": str(tmp_path / "data")}
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "migrate"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


def test_replicas_migrating_together_take_turns(tmp_path: Path, pg_url: str) -> None:
    runs = [_migrate(tmp_path, pg_url) for _ in range(3)]
    outputs = [run.communicate(timeout=120) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
        assert out.strip().endswith(f": at schema revision {head_revision()}")
        assert "postgres@127.0.0.1" in out  # where, password hidden
    engine = create_engine(pg_url)
    with engine.connect() as connection:
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    engine.dispose()
    assert versions == [(head_revision(),)]


def test_an_unreachable_database_is_one_line_and_exit_2(tmp_path: Path) -> None:
    run = _migrate(tmp_path, f"postgresql+psycopg://gateway@127.0.0.1:{free_port()}/gateway")
    out, err = run.communicate(timeout=120)
    assert run.returncode == 2
    assert out == ""
    assert err.startswith("error: cannot open the database: OperationalError: ")
    assert err.count("\n") == 1
