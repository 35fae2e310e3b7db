"""LiteLLM's admin API, as scripts migrating from the LiteLLM proxy call it: keys, teams, spend
logs, model info and health, in LiteLLM's request and answer shapes, mapped onto the gateway's
own keys, teams, request log and router. Answers are checked against LiteLLM's own pydantic
types (imported here only: the gateway itself never imports litellm outside its providers)."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY, GatewayFactory, fake_model, sdk
from tests.fakes.upstream import FakeUpstream

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
USER = [{"role": "user", "content": "one two three"}]
SECRET = "sk-upstream-secret-never-shown"


def litellm_types() -> Any:
    """LiteLLM's proxy types (a slow import, so only where a test compares shapes)."""
    from litellm.proxy import _types

    return _types


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


def models(upstream: FakeUpstream, **router: Any) -> dict[str, Any]:
    """`priced` on the loopback upstream at $1 per 1k tokens (easy budgets), local/echo free,
    and `broken`, an upstream that always fails."""
    priced = fake_model(upstream, "priced", f"gpt-4o-mini,id=priced-{uuid.uuid4().hex[:8]}")
    priced["litellm_params"]["api_key"] = SECRET
    priced["litellm_params"]["rpm"] = 600
    priced["model_info"] = {"input_cost_per_token": 0.001, "output_cost_per_token": 0.001}
    broken = fake_model(upstream, "broken", f"status=500,id=broken-{uuid.uuid4().hex[:8]}")
    config: dict[str, Any] = {
        "model_list": [
            priced,
            broken,
            {"model_name": "local/echo", "litellm_params": {"model": "local/echo"}},
        ],
        "gateway": {"default_max_tokens": 10},
    }
    if router:
        config["router_settings"] = router
    return config


def serve(gateway: GatewayFactory, upstream: FakeUpstream, database: str | None = None) -> str:
    settings = {} if database is None else {"database_url": database}
    return gateway(models(upstream), **settings)


def post(base: str, path: str, body: Any, auth: str = MASTER_KEY) -> httpx.Response:
    return httpx.post(
        f"{base}{path}", json=body, headers={"Authorization": f"Bearer {auth}"}, timeout=30
    )


def get(base: str, path: str, auth: str = MASTER_KEY, **params: Any) -> httpx.Response:
    """`auth` authenticates; `params` are the query (LiteLLM's /key/info takes `key`)."""
    return httpx.get(
        f"{base}{path}", params=params, headers={"Authorization": f"Bearer {auth}"}, timeout=30
    )


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def litellm_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """LiteLLM's error shape: its `code` is the HTTP status, as a string."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == str(status)
    assert error["message"]
    return error


def generate(base: str, **fields: Any) -> dict[str, Any]:
    created: dict[str, Any] = ok(post(base, "/key/generate", fields))
    return created


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_generated_key_works_with_its_budget_limits_and_models(
    gateway: GatewayFactory, upstream: FakeUpstream, database: str | None
) -> None:
    base = serve(gateway, upstream, database)
    before = datetime.now(UTC)
    created = generate(
        base,
        key_alias="ci-bot",
        models=["priced"],
        max_budget=0.1,
        budget_duration="30d",
        rpm_limit=100,
        tpm_limit=100_000,
        metadata={"owner": "ana"},
        team_id="research",
        user_id="user-1",
        duration="1h",
        tags=["ci"],
    )
    types = litellm_types()
    # A copy: LiteLLM's validator writes `token` over `key` in the mapping it is given.
    shaped = types.GenerateKeyResponse.model_validate(dict(created))
    assert shaped.token_id == created["token_id"]
    assert created["token"] == created["token_id"] == sha256(created["key"])
    assert (created["key_alias"], created["team_id"], created["user_id"]) == (
        "ci-bot",
        "research",
        "user-1",
    )
    assert created["models"] == ["priced"]
    assert (created["max_budget"], created["budget_duration"]) == (0.1, "30d")
    assert (created["rpm_limit"], created["tpm_limit"]) == (100, 100_000)
    assert created["metadata"] == {"owner": "ana", "tags": ["ci"]}
    expires = datetime.fromisoformat(created["expires"])
    assert before + timedelta(minutes=59) < expires < before + timedelta(minutes=61)

    client = sdk(base, key=created["key"])
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="local/echo", messages=USER)
    spent, calls = 0.0, 0
    refused: openai.RateLimitError | None = None
    while calls < 50:
        try:
            raw = client.chat.completions.with_raw_response.create(
                model="priced", messages=USER, max_tokens=5
            )
        except openai.RateLimitError as error:
            refused = error
            break
        spent += float(raw.headers["x-gateway-cost-usd"])
        calls += 1
    assert refused is not None
    assert refused.code == "insufficient_quota", refused.message
    assert 0 < calls < 50, refused.message
    assert spent <= 0.1

    for given in (created["key"], created["token"]):
        shown = ok(get(base, "/key/info", key=given))
        assert shown["key"] == given
        info = shown["info"]
        types.LiteLLM_VerificationToken.model_validate(info)
        assert "token" not in info
        assert info["key_alias"] == "ci-bot"
        assert info["status"] == "active"
        assert info["spend"] == pytest.approx(spent)
        assert info["budget_reset_at"] is not None
        assert info["user_id"] == "user-1"
        assert info["metadata"] == {"owner": "ana", "tags": ["ci"]}
    # The gateway's own admin API sees the same key, with LiteLLM's user_id kept in metadata.
    ours = ok(get(base, f"/v1/keys/{created['key_id']}"))
    assert ours["name"] == "ci-bot"
    assert ours["metadata"]["litellm"] == {"user_id": "user-1"}


def test_update_and_delete_by_key_hash_or_alias(
    gateway: GatewayFactory, upstream: FakeUpstream, database: str | None
) -> None:
    base = serve(gateway, upstream, database)
    first = generate(base, key_alias="first", user_id="u-1", metadata={"a": 1})
    second = generate(base, key_alias="second")

    updated = ok(
        post(base, "/key/update", {"key": first["key"], "rpm_limit": 1, "metadata": {"b": 2}})
    )
    litellm_types().LiteLLM_VerificationToken.model_validate(updated)
    assert updated["key"] == first["key"]
    assert updated["rpm_limit"] == 1
    assert updated["metadata"] == {"b": 2}  # replaced, as LiteLLM replaces it
    assert updated["user_id"] == "u-1"  # kept: user_id is not metadata in LiteLLM
    client = sdk(base, key=first["key"])
    client.chat.completions.create(model="local/echo", messages=USER)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="local/echo", messages=USER)

    # By alias (the key left out), and a rename; aliases stay unique.
    renamed = ok(post(base, "/key/update", {"key_alias": "second", "max_budget": 3}))
    assert renamed["max_budget"] == 3
    clash = post(base, "/key/update", {"key": second["token"], "key_alias": "first"})
    assert litellm_error(clash, 400)["param"] == "key_alias"
    taken = post(base, "/key/generate", {"key_alias": "first"})
    assert litellm_error(taken, 400)["param"] == "key_alias"
    cleared = ok(post(base, "/key/update", {"key": second["key"], "max_budget": None}))
    assert cleared["max_budget"] is None
    never = ok(post(base, "/key/update", {"key": second["key"], "duration": "1d"}))
    assert never["expires"] is not None
    never = ok(post(base, "/key/update", {"key": second["key"], "duration": None}))
    assert never["expires"] is None
    litellm_error(post(base, "/key/update", {"rpm_limit": 2}), 400)
    litellm_error(post(base, "/key/update", {"key": "sk-unknown-key-000000", "rpm_limit": 2}), 404)

    deleted = ok(post(base, "/key/delete", {"keys": [first["key"]]}))
    assert deleted == {"deleted_keys": [first["key"]]}
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="local/echo", messages=USER)
    info = ok(get(base, "/key/info", key=first["token"]))["info"]
    assert (info["status"], info["blocked"]) == ("revoked", True)
    # The alias is free again once its key is gone, as in LiteLLM.
    generate(base, key_alias="first")

    assert ok(post(base, "/key/delete", {"key_aliases": ["second"]})) == {
        "deleted_keys": ["second"]
    }
    with pytest.raises(openai.AuthenticationError):
        sdk(base, key=second["key"]).chat.completions.create(model="local/echo", messages=USER)
    litellm_error(post(base, "/key/delete", {"keys": ["sk-never-issued-00000"]}), 404)
    litellm_error(post(base, "/key/delete", {}), 400)
    litellm_error(post(base, "/key/delete", {"keys": [], "key_aliases": []}), 400)


def test_a_migrated_key_value_keeps_working(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    """Scripts re-create their LiteLLM keys with `key`, so clients keep the key they have."""
    base = serve(gateway, upstream)
    value = "sk-migrated-" + uuid.uuid4().hex
    created = generate(base, key=value, key_alias="old-client")
    assert created["key"] == value
    reply = sdk(base, key=value).chat.completions.create(model="local/echo", messages=USER)
    assert reply.choices[0].message.content == "one two three"
    assert litellm_error(post(base, "/key/generate", {"key": value}), 400)["param"] == "key"
    for bad in ("gw-not-litellm-style-key", "sk-short", MASTER_KEY):
        assert litellm_error(post(base, "/key/generate", {"key": bad}), 400)["param"] == "key"


def test_fields_without_an_equivalent_are_refused_by_name(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    base = serve(gateway, upstream)
    for field, value in (
        ("max_parallel_requests", 5),
        ("model_max_budget", {"priced": {"budget_limit": 1, "time_period": "1d"}}),
        ("soft_budget", 1.0),
        ("guardrails", ["pii"]),
        ("tpd_limit", 1000),
        ("spend", 3.5),
        ("key_type", "management"),
        ("rpm_limit_type", "guaranteed_throughput"),
        ("allowed_routes", ["/chat/completions"]),
        ("no_such_field", 1),
    ):
        error = litellm_error(post(base, "/key/generate", {field: value}), 400)
        assert error["param"] == field, error
        assert field in error["message"]
    # Bad values name LiteLLM's field, not the gateway's.
    for field, value in (
        ("duration", "soon"),
        ("budget_duration", "fortnight"),
        ("rpm_limit", 0),
        ("max_budget", -1),
        ("models", ["no-default-models"]),
    ):
        error = litellm_error(post(base, "/key/generate", {field: value}), 400)
        assert error["param"] == field, error
    # What LiteLLM clients send as defaults means nothing and is accepted.
    created = generate(
        base,
        max_parallel_requests=None,
        guardrails=[],
        model_max_budget={},
        allowed_cache_controls=[],
        config={},
        permissions={},
        aliases={},
        spend=0,
        key_type="llm_api",
        rpm_limit_type="best_effort_throughput",
        send_invite_email=True,
        models=["all-proxy-models"],
        budget_duration="monthly",
        duration="1w",
    )
    assert created["models"] == []
    assert created["budget_duration"] == "30d"
    expires = datetime.fromisoformat(created["expires"])
    assert timedelta(days=6, hours=23) < expires - datetime.now(UTC) <= timedelta(days=7)
    assert generate(base, budget_duration="2w")["budget_duration"] == "14d"


def test_teams_in_litellm_shape(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    base = serve(gateway, upstream)
    members = [{"role": "admin", "user_id": "ana"}, {"role": "user", "user_email": "bo@x.io"}]
    team = ok(
        post(
            base,
            "/team/new",
            {
                "team_alias": "Research",
                "max_budget": 10,
                "budget_duration": "1d",
                "rpm_limit": 1,
                "metadata": {"cost_center": "42"},
                "members_with_roles": members,
            },
        )
    )
    types = litellm_types()
    types.LiteLLM_TeamTable.model_validate(team)
    team_id = team["team_id"]
    assert team_id
    assert (team["team_alias"], team["max_budget"], team["rpm_limit"]) == ("Research", 10, 1)
    assert team["metadata"] == {"cost_center": "42"}
    assert team["members_with_roles"] == [
        {"role": "admin", "user_id": "ana", "user_email": None},
        {"role": "user", "user_id": None, "user_email": "bo@x.io"},
    ]
    again = post(base, "/team/new", {"team_id": team_id})
    assert litellm_error(again, 400)["param"] == "team_id"
    restricted = post(base, "/team/new", {"models": ["priced"]})
    assert litellm_error(restricted, 400)["param"] == "models"

    key = generate(base, team_id=team_id)
    client = sdk(base, key=key["key"])
    client.chat.completions.create(model="local/echo", messages=USER)
    with pytest.raises(openai.RateLimitError) as caught:  # the team's rpm_limit
        client.chat.completions.create(model="local/echo", messages=USER)
    assert f"team:{team_id}" in caught.value.message

    shown = ok(get(base, "/team/info", team_id=team_id))
    assert shown["team_id"] == team_id
    types.TeamInfoResponseObjectTeamTable.model_validate(shown["team_info"])
    assert shown["team_info"]["team_alias"] == "Research"
    assert shown["team_info"]["spend"] == 0.0  # local/echo is free
    assert [k["token"] for k in shown["keys"]] == [key["token"]]
    assert shown["team_memberships"] == []
    litellm_error(get(base, "/team/info", team_id="nope"), 404)
    litellm_error(get(base, "/team/info"), 400)

    # POST /team/update: the fields given change, the others stay; null clears.
    updated = ok(
        post(base, "/team/update", {"team_id": team_id, "max_budget": 20, "rpm_limit": None})
    )
    assert updated["team_id"] == team_id
    types.LiteLLM_TeamTable.model_validate(updated["data"])
    data = updated["data"]
    assert (data["max_budget"], data["rpm_limit"], data["budget_duration"]) == (20, None, "1d")
    assert (data["team_alias"], data["metadata"]) == ("Research", {"cost_center": "42"})
    assert data["members_with_roles"][0]["user_id"] == "ana"
    renamed = ok(post(base, "/team/update", {"team_id": team_id, "team_alias": "R&D"}))["data"]
    assert (renamed["team_alias"], renamed["max_budget"]) == ("R&D", 20)
    assert renamed["metadata"] == {"cost_center": "42"}
    client.chat.completions.create(model="local/echo", messages=USER)  # no rpm limit now
    litellm_error(post(base, "/team/update", {"team_id": "nope", "max_budget": 1}), 404)
    assert litellm_error(post(base, "/team/update", {"max_budget": 1}), 400)["param"] == "team_id"
    unsupported = post(base, "/team/update", {"team_id": team_id, "organization_id": "org"})
    assert litellm_error(unsupported, 400)["param"] == "organization_id"
    refused = post(base, "/team/update", {"team_id": team_id, "max_budget": 1}, auth=key["key"])
    assert "master key" in litellm_error(refused, 403)["message"]

    # GET /team/list: every team with its live keys; a virtual key sees its own team only.
    other = ok(post(base, "/team/new", {"team_alias": "Ops"}))["team_id"]
    listed = ok(get(base, "/team/list"))
    assert {t["team_id"] for t in listed} == {team_id, other}
    for entry in listed:
        types.TeamListResponseObject.model_validate(entry)
    (research,) = [t for t in listed if t["team_id"] == team_id]
    assert [k["token"] for k in research["keys"]] == [key["token"]]
    assert research["team_alias"] == "R&D"
    own = ok(get(base, "/team/list", auth=key["key"]))
    assert [t["team_id"] for t in own] == [team_id]
    assert ok(get(base, "/team/list", auth=generate(base)["key"])) == []


def test_spend_logs_per_request(
    gateway: GatewayFactory, upstream: FakeUpstream, database: str | None
) -> None:
    base = serve(gateway, upstream, database)
    alpha = generate(base, key_alias="alpha", user_id="ana", team_id="t1")
    beta = generate(base, key_alias="beta")
    ids = []
    for key, model in ((alpha, "priced"), (alpha, "local/echo"), (beta, "priced")):
        raw = sdk(base, key=key["key"]).chat.completions.with_raw_response.create(
            model=model, messages=USER
        )
        ids.append(raw.headers["x-gateway-request-id"])

    rows = ok(get(base, "/spend/logs"))
    assert [r["request_id"] for r in rows] == ids[::-1]  # newest first
    first = rows[-1]
    assert first["api_key"] == alpha["token"]
    assert first["call_type"] == "acompletion"
    assert first["model_group"] == "priced"
    assert first["model"].startswith("gpt-4o-mini")
    assert first["user"] == "ana"
    assert first["team_id"] == "t1"
    assert first["status"] == "success"
    assert first["prompt_tokens"] == 3
    assert first["total_tokens"] == first["prompt_tokens"] + first["completion_tokens"]
    assert first["spend"] == pytest.approx(0.001 * first["total_tokens"])
    assert first["metadata"]["user_api_key_alias"] == "alpha"
    assert SECRET not in json.dumps(rows)
    spend_logs = litellm_types().LiteLLM_SpendLogs
    for row in rows:
        # LiteLLM's model reads metadata and request_tags from the database's JSON text.
        as_stored = {**row, "metadata": json.dumps(row["metadata"])}
        as_stored["request_tags"] = json.dumps(row["request_tags"])
        spend_logs.model_validate(as_stored)

    def picked(**params: Any) -> list[str]:
        return [r["request_id"] for r in ok(get(base, "/spend/logs", **params))]

    assert picked(api_key=alpha["key"]) == [ids[1], ids[0]]
    assert picked(api_key=alpha["token"]) == [ids[1], ids[0]]
    assert picked(api_key="sk-unknown-key-000000") == []
    assert picked(user_id="ana") == [ids[1], ids[0]]
    assert picked(user_id="nobody") == []
    assert picked(request_id=ids[2]) == [ids[2]]
    assert picked(request_id="nope") == []
    today = datetime.now(UTC).date()
    tomorrow = today + timedelta(days=1)
    span = {"start_date": str(today), "end_date": str(tomorrow)}
    assert picked(summarize="false", **span) == ids[::-1]
    summary = ok(get(base, "/spend/logs", **span))
    assert [day["startTime"] for day in summary] == [str(today), str(tomorrow)]
    assert summary[0]["spend"] == pytest.approx(sum(r["spend"] for r in rows))
    assert set(summary[0]["models"]) == {rows[2]["model"], rows[1]["model"]}
    assert summary[0][alpha["token"]] == pytest.approx(rows[2]["spend"] + rows[1]["spend"])
    assert summary[0]["users"]["ana"] == pytest.approx(rows[2]["spend"] + rows[1]["spend"])
    assert summary[1] == {"startTime": str(tomorrow), "spend": 0, "users": {}, "models": {}}
    litellm_error(get(base, "/spend/logs", start_date="yesterday", end_date="x"), 400)

    # A virtual key reads its own rows only.
    own = ok(get(base, "/spend/logs", auth=beta["key"]))
    assert [r["request_id"] for r in own] == [ids[2]]
    litellm_error(get(base, "/spend/logs", auth=beta["key"], api_key=alpha["token"]), 403)


def test_model_info_and_model_groups(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    base = serve(gateway, upstream)
    for path in ("/model/info", "/v1/model/info"):
        listed = ok(get(base, path))["data"]
        assert [m["model_name"] for m in listed] == ["priced", "broken", "local/echo"]
    priced = listed[0]
    assert priced["litellm_params"]["model"].startswith("openai/gpt-4o-mini")
    assert priced["litellm_params"]["api_base"] == upstream.url
    assert priced["litellm_params"]["rpm"] == 600
    assert priced["model_info"]["id"] == "priced#0"
    assert priced["model_info"]["input_cost_per_token"] == 0.001
    assert priced["model_info"]["mode"] == "chat"
    text = get(base, "/model/info").text
    assert SECRET not in text
    assert "api_key" not in text
    one = ok(get(base, "/model/info", litellm_model_id="priced#0"))["data"]
    assert [m["model_name"] for m in one] == ["priced"]
    litellm_error(get(base, "/model/info", litellm_model_id="nope"), 400)

    from litellm.types.router import ModelGroupInfo

    groups = ok(get(base, "/model_group/info"))["data"]
    for group in groups:
        ModelGroupInfo.model_validate(group)
    assert [g["model_group"] for g in groups] == ["priced", "broken", "local/echo"]
    assert groups[0]["providers"] == ["openai"]
    assert (groups[0]["input_cost_per_token"], groups[0]["rpm"]) == (0.001, 600)
    assert ok(get(base, "/model_group/info", model_group="priced"))["data"][0] == groups[0]
    assert ok(get(base, "/model_group/info", model_group="nope")) == {"data": []}

    # A key limited to some models sees only those, and no upstream address.
    limited = generate(base, models=["priced"])
    seen = ok(get(base, "/model/info", auth=limited["key"]))["data"]
    assert [m["model_name"] for m in seen] == ["priced"]
    assert "api_base" not in seen[0]["litellm_params"]
    seen_groups = ok(get(base, "/model_group/info", auth=limited["key"]))["data"]
    assert [g["model_group"] for g in seen_groups] == ["priced"]


def test_health_from_the_routers_cooldowns(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    base = gateway(models(upstream, allowed_fails=0, cooldown_time=60, num_retries=0))
    live = httpx.get(f"{base}/health/liveliness")
    assert (live.status_code, live.json()) == (200, "I'm alive!")
    assert httpx.get(f"{base}/health/liveness").json() == "I'm alive!"
    ready = httpx.get(f"{base}/health/readiness")
    assert (ready.status_code, ready.json()) == (200, {"status": "healthy", "db": "connected"})
    litellm_error(httpx.get(f"{base}/health"), 401)

    health = ok(get(base, "/health"))
    assert (health["healthy_count"], health["unhealthy_count"]) == (3, 0)
    assert {e["model_id"] for e in health["healthy_endpoints"]} == {
        "priced#0",
        "broken#1",
        "local/echo#2",
    }
    with pytest.raises(openai.InternalServerError):
        sdk(base).chat.completions.create(model="broken", messages=USER)
    health = ok(get(base, "/health"))
    assert (health["healthy_count"], health["unhealthy_count"]) == (2, 1)
    [sick] = health["unhealthy_endpoints"]
    assert sick["model_id"] == "broken#1"
    assert sick["api_base"] == upstream.url
    assert "cooling down" in sick["error"]
    assert get(base, "/health", model="broken").status_code == 503
    only = ok(get(base, "/health", model="priced"))
    assert (only["healthy_count"], only["unhealthy_count"]) == (1, 0)
    litellm_error(get(base, "/health", model="nope"), 404)

    limited = generate(base, models=["priced"])
    seen = ok(get(base, "/health", auth=limited["key"]))
    assert [e["model_id"] for e in seen["healthy_endpoints"]] == ["priced#0"]
    assert "api_base" not in seen["healthy_endpoints"][0]


def test_litellm_auth_headers(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    base = serve(gateway, upstream)
    for headers in (
        {"x-litellm-api-key": f"Bearer {MASTER_KEY}"},
        {"x-litellm-api-key": MASTER_KEY},
        {"x-api-key": MASTER_KEY},
        {"api-key": MASTER_KEY},
        # LiteLLM reads its own header first.
        {"x-litellm-api-key": MASTER_KEY, "Authorization": "Bearer wrong"},
    ):
        response = httpx.get(f"{base}/model_group/info", headers=headers)
        assert response.status_code == 200, (headers, response.text)
    litellm_error(httpx.get(f"{base}/model_group/info"), 401)
    wrong = httpx.get(f"{base}/model_group/info", headers={"x-litellm-api-key": "sk-wrong"})
    litellm_error(wrong, 401)

    key = generate(base)
    for path, body in (
        ("/key/generate", {}),
        ("/key/update", {"key": key["key"], "rpm_limit": 5}),
        ("/key/delete", {"keys": [key["key"]]}),
        ("/team/new", {}),
    ):
        litellm_error(post(base, path, body, auth=key["key"]), 403)
    litellm_error(get(base, "/team/info", auth=key["key"], team_id="t"), 403)
    # A key reads its own info (LiteLLM's default when ?key= is left out), not another's.
    own = ok(get(base, "/key/info", auth=key["key"]))
    assert own["info"]["key_alias"] is None
    other = generate(base)
    litellm_error(
        httpx.get(
            f"{base}/key/info",
            params={"key": other["token"]},
            headers={"Authorization": f"Bearer {key['key']}"},
        ),
        403,
    )
    litellm_error(get(base, "/key/info"), 400)  # the master key is not a key to describe


def test_openapi_describes_the_litellm_routes(gateway: GatewayFactory) -> None:
    paths = httpx.get(f"{gateway()}/openapi.json").json()["paths"]
    for path, method in (
        ("/key/generate", "post"),
        ("/key/info", "get"),
        ("/key/update", "post"),
        ("/key/delete", "post"),
        ("/team/new", "post"),
        ("/team/info", "get"),
        ("/spend/logs", "get"),
        ("/model/info", "get"),
        ("/v1/model/info", "get"),
        ("/model_group/info", "get"),
        ("/health", "get"),
        ("/health/liveliness", "get"),
        ("/health/readiness", "get"),
    ):
        assert method in paths[path], path
        assert "LiteLLM" in paths[path][method]["tags"]


def test_field_names_are_litellms() -> None:
    """What the gateway declares in LiteLLM's shapes uses LiteLLM's names; the few fields it
    adds are named here."""
    from litellm.types.router import ModelGroupInfo

    from gateway.api.litellm_admin import models as ours

    types = litellm_types()
    assert set(ours.KeyRequest.model_fields) <= set(types.GenerateKeyRequest.model_fields)
    only_generate = set(ours.KeyRequest.model_fields) - set(types.UpdateKeyRequest.model_fields)
    assert only_generate == {"key_type", "send_invite_email"}
    assert set(ours.TeamRequest.model_fields) <= set(types.NewTeamRequest.model_fields)
    assert set(ours.KeyDeleteRequest.model_fields) == set(types.KeyRequest.model_fields)
    token = set(types.LiteLLM_VerificationToken.model_fields)
    assert set(ours.LiteLLMKey.model_fields) - token == {"key_id", "status", "prompts"}
    assert set(ours.KeyGenerated.model_fields) - set(types.GenerateKeyResponse.model_fields) == {
        "key_id",
        "status",
        "budget_reset_at",
        "model_spend",
        "soft_budget_cooldown",
    }
    assert set(ours.LiteLLMTeam.model_fields) <= set(types.LiteLLM_TeamTable.model_fields)
    logged = set(types.SpendLogsPayload.__annotations__) | set(types.LiteLLM_SpendLogs.model_fields)
    assert set(ours.SpendLog.model_fields) <= logged
    assert set(ours.ModelGroup.model_fields) <= set(ModelGroupInfo.model_fields)
