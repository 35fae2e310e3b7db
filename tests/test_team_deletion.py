"""Deleting a team: its keys stop working on every replica, their history stays, and the id
can be used again (REST, the CLI and LiteLLM's /team/delete)."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from sqlalchemy import Engine

from gateway.core.errors import NotFound
from gateway.identity.keys import KeyStore
from tests.conftest import MASTER_KEY, GatewayFactory, Project, sdk, seen_within_a_second
from tests.test_litellm_admin import generate, litellm_error, ok, post

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
USER = [{"role": "user", "content": "hello"}]


def new_key(base: str, **fields: object) -> dict[str, str]:
    created = httpx.post(f"{base}/v1/keys", json=fields, headers=ADMIN)
    assert created.status_code == 200, created.text
    return {"id": created.json()["id"], "key": created.json()["key"]}


def answers(base: str, key: str) -> bool:
    try:
        sdk(base, key=key).chat.completions.create(model="local/echo", messages=USER)
    except openai.AuthenticationError:
        return False
    return True


def test_deleting_a_team_revokes_its_keys_on_every_replica_and_keeps_their_history(
    gateway: GatewayFactory,
) -> None:
    base = gateway()
    replica = gateway()  # the same database: another replica
    team = httpx.post(f"{base}/v1/teams", json={"id": "gone", "max_budget": 5}, headers=ADMIN)
    assert team.status_code == 200, team.text
    member, outsider = new_key(base, team="gone"), new_key(base)
    revoked_before = new_key(base, team="gone")
    assert httpx.delete(f"{base}/v1/keys/{revoked_before['id']}", headers=ADMIN).is_success
    for server in (base, replica):  # a key minted on another replica works at first use
        assert answers(server, member["key"])

    deleted = httpx.delete(f"{base}/v1/teams/gone", headers=ADMIN)
    deleted_at = time.monotonic()
    assert deleted.status_code == 200, deleted.text
    # The keys it revoked: the one already revoked is not among them.
    assert deleted.json() == {"id": "gone", "deleted": True, "revoked_keys": [member["id"]]}
    assert not answers(base, member["key"])
    seen_within_a_second(
        deleted_at,
        lambda: not answers(replica, member["key"]),
        "the other replica still serves a deleted team's key",
    )
    assert answers(base, outsider["key"])

    for server in (base, replica):
        missing = httpx.get(f"{server}/v1/teams/gone", headers=ADMIN)
        assert missing.status_code == 404
        assert "No team 'gone'" in missing.json()["error"]["message"]
        listed = httpx.get(f"{server}/v1/teams", headers=ADMIN).json()["data"]
        assert "gone" not in [t["id"] for t in listed]
    shown = httpx.get(f"{base}/v1/keys/{member['id']}", headers=ADMIN).json()
    assert (shown["revoked"], shown["team"]) == (True, "gone")
    report = httpx.get(f"{base}/v1/costs", params={"group_by": "team"}, headers=ADMIN).json()
    assert "gone" in [row["team"] for row in report["data"]]  # its calls stay counted

    again = httpx.delete(f"{base}/v1/teams/gone", headers=ADMIN)
    assert again.status_code == 404
    assert again.json()["error"]["message"] == "No team 'gone'; nothing was deleted."
    # The id is free again: a new team starts with no keys.
    assert httpx.post(f"{base}/v1/teams", json={"id": "gone"}, headers=ADMIN).is_success
    assert answers(base, new_key(base, team="gone")["key"])
    assert not answers(base, member["key"])


def test_only_the_master_key_deletes_teams(gateway: GatewayFactory) -> None:
    base = gateway()
    member = new_key(base, team="kept")
    refused = httpx.delete(
        f"{base}/v1/teams/kept", headers={"Authorization": f"Bearer {member['key']}"}
    )
    assert refused.status_code == 403
    assert httpx.delete(f"{base}/v1/teams/kept").status_code == 401
    assert answers(base, member["key"])


def test_litellm_team_delete_is_all_or_nothing(gateway: GatewayFactory) -> None:
    base = gateway()
    team_id = ok(post(base, "/team/new", {"team_alias": "Research"}))["team_id"]
    key = generate(base, team_id=team_id)
    refused = post(base, "/team/delete", {"team_ids": [team_id, "nope"]})
    assert "No team 'nope'" in litellm_error(refused, 404)["message"]
    assert answers(base, key["key"])  # nothing was deleted
    litellm_error(post(base, "/team/delete", {"team_ids": []}), 400)
    assert ok(post(base, "/team/delete", {"team_ids": [team_id]})) == {"deleted_teams": [team_id]}
    assert not answers(base, key["key"])
    litellm_error(httpx.get(f"{base}/team/info", params={"team_id": team_id}, headers=ADMIN), 404)


def test_teams_delete_on_the_command_line(project: Project) -> None:
    team = "platform"
    assert project.gateway("teams", "create", team).returncode == 0
    made = project.gateway("keys", "create", "--name", "ci", "--team", team)
    assert made.returncode == 0, made.stderr
    key_id = next(
        line.split(": ", 1)[1] for line in made.stdout.splitlines() if line.startswith("id: ")
    )
    deleted = project.gateway("teams", "delete", team)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"deleted team {team}; keys revoked: {key_id}"
    shown = project.gateway("keys", "show", key_id)
    assert "revoked: True" in shown.stdout
    again = project.gateway("teams", "delete", team)
    assert again.returncode == 2
    assert again.stderr.strip().endswith(f"No team '{team}'; nothing was deleted.")
    assert "Traceback" not in again.stderr


def test_the_store_deletes_teams_all_or_nothing_on_both_databases(engine: Engine) -> None:
    store = KeyStore(engine)
    (live, _), (revoked, _) = (store.create({"team": t}) for t in ("a", "a"))
    store.revoke(revoked.id)
    (other, _) = store.create({"team": "b"})
    with pytest.raises(NotFound, match=r"No team 'nope'; nothing was deleted\."):
        store.delete_teams(["a", "nope"])
    assert [t.id for t in store.list_teams()] == ["a", "b"]
    assert [record.id for record in store.delete_teams(["a", "a"])] == [live.id]
    assert [t.id for t in store.list_teams()] == ["b"]
    assert store.get(live.id).revoked
    assert not store.get(other.id).revoked


def test_hostile_team_ids_get_short_clear_answers(gateway: GatewayFactory) -> None:
    base = gateway()
    huge = "x" * 60_000  # httpx sends URLs up to 65,536 characters
    for path in (f"/v1/teams/{huge}", "/v1/teams/a%0Ab"):
        for method in ("GET", "DELETE"):
            answer = httpx.request(method, f"{base}{path}", headers=ADMIN)
            assert answer.status_code == 404, (method, path[:40], answer.text[:200])
            assert len(answer.content) < 1000
            assert answer.json()["error"]["message"].startswith("No team ")
    nul = httpx.delete(f"{base}/v1/teams/%00", headers=ADMIN)
    assert nul.status_code == 400
    assert "NUL" in nul.json()["error"]["message"]
    many = post(base, "/team/delete", {"team_ids": [f"t{i}" for i in range(100_000)]})
    assert litellm_error(many, 400)["param"] == "team_ids"
    nested = post(base, "/team/delete", {"team_ids": [["a"]]})
    litellm_error(nested, 400)
