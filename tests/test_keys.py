"""Virtual keys: minted by the master key, stored hashed, restricted, revoked and rotated."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import create_engine, select

from gateway.store.tables import api_keys
from tests.conftest import MASTER_KEY, GatewayFactory, sdk

ROOT = Path(__file__).resolve().parent.parent
USER = [{"role": "user", "content": "hello"}]
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def make_key(base: str, **fields: Any) -> dict[str, Any]:
    response = httpx.post(f"{base}/v1/keys", json=fields, headers=ADMIN)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def test_create_and_use_a_key(gateway: GatewayFactory, tmp_path: Path) -> None:
    base = gateway()
    created = make_key(base, name="ci", team="platform", metadata={"owner": "ana"})
    assert created["key"].startswith("gw-")
    assert created["id"].startswith("key_")
    assert created["team"] == "platform"
    reply = sdk(base, key=created["key"]).chat.completions.create(model="local/echo", messages=USER)
    assert reply.choices[0].message.content == "hello"
    # Only the hash and a display prefix are stored; the key itself never is.
    engine = create_engine(f"sqlite:///{tmp_path / '.gateway' / 'gateway.db'}")
    with engine.connect() as connection:
        row = connection.execute(select(api_keys)).one()._mapping
    assert created["key"] not in [str(v) for v in row.values()]
    assert row["prefix"] == created["key"][:10]
    listed = httpx.get(f"{base}/v1/keys", headers=ADMIN).json()["data"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0]
    assert "key_hash" not in listed[0]


def test_only_the_master_key_administers(gateway: GatewayFactory) -> None:
    base = gateway()
    created = make_key(base)
    response = httpx.post(
        f"{base}/v1/keys", json={}, headers={"Authorization": f"Bearer {created['key']}"}
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "master_key_required"


def test_bad_key_fields_are_400(gateway: GatewayFactory) -> None:
    base = gateway()
    for fields in (
        {"rpm_limit": 0},
        {"tpm_limit": 10**10},
        {"budget_duration": "fortnight"},
        {"colour": "red"},
    ):
        response = httpx.post(f"{base}/v1/keys", json=fields, headers=ADMIN)
        assert response.status_code == 400, fields
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_model_globs_restrict_a_key(gateway: GatewayFactory) -> None:
    base = gateway()
    created = make_key(base, models=["local/*-L6-v2"])
    client = sdk(base, key=created["key"])
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="local/echo", messages=USER)
    assert "local/echo" in caught.value.message
    assert [m.id for m in client.models.list()] == ["local/all-MiniLM-L6-v2"]


def test_revoked_expired_and_rotated_keys(gateway: GatewayFactory) -> None:
    base = gateway()
    revoked = make_key(base)
    assert httpx.delete(f"{base}/v1/keys/{revoked['id']}", headers=ADMIN).status_code == 200
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(base, key=revoked["key"]).chat.completions.create(model="local/echo", messages=USER)
    assert "revoked" in caught.value.message

    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    expired = make_key(base, expires_at=past)
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(base, key=expired["key"]).chat.completions.create(model="local/echo", messages=USER)
    assert "expired" in caught.value.message

    old = make_key(base)
    rotated = httpx.post(f"{base}/v1/keys/{old['id']}/rotate", headers=ADMIN).json()
    assert rotated["id"] == old["id"]
    assert rotated["key"] != old["key"]
    with pytest.raises(openai.AuthenticationError):
        sdk(base, key=old["key"]).chat.completions.create(model="local/echo", messages=USER)
    sdk(base, key=rotated["key"]).chat.completions.create(model="local/echo", messages=USER)


def test_patch_changes_limits(gateway: GatewayFactory) -> None:
    base = gateway()
    created = make_key(base, name="before")
    patched = httpx.patch(
        f"{base}/v1/keys/{created['id']}", json={"name": "after", "rpm_limit": 5}, headers=ADMIN
    ).json()
    assert (patched["name"], patched["rpm_limit"]) == ("after", 5)
    assert httpx.get(f"{base}/v1/keys/nope", headers=ADMIN).status_code == 404


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "gateway", "keys", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


def test_keys_cli(tmp_path: Path) -> None:
    created = _cli(tmp_path, "create", "--name", "cli-key", "--team", "t1", "--rpm", "10")
    assert created.returncode == 0, created.stderr
    lines = dict(line.split(": ", 1) for line in created.stdout.splitlines() if ": " in line)
    assert lines["key"].startswith("gw-")
    key_id = lines["id"]
    listed = _cli(tmp_path, "list")
    assert key_id in listed.stdout
    assert lines["key"] not in listed.stdout
    assert _cli(tmp_path, "revoke", key_id).returncode == 0
    shown = _cli(tmp_path, "show", key_id)
    assert "revoked: True" in shown.stdout
    missing = _cli(tmp_path, "show", "key_nope")
    assert missing.returncode == 2
    assert "No key with id 'key_nope'" in missing.stderr
    bad = _cli(tmp_path, "create", "--budget-duration", "fortnight")
    assert bad.returncode == 2
    assert "budget_duration" in bad.stderr
