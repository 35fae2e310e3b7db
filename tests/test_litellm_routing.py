"""LiteLLM's reliability and routing settings, from LiteLLM-style files, on the loopback upstream.

Each file in tests/litellm_configs/routing_*.yaml is served as written, with every api_base
pointed at the recording upstream; each test asserts what the setting changes: how many
calls reached the upstream, which deployment answered, when a deployment cooled down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.core.config import load_config
from gateway.core.errors import ConfigError
from gateway.metering.prices import context_windows
from gateway.providers import Deployment
from tests.conftest import MASTER_KEY, REDIS_URL, GatewayFactory, fake_model
from tests.fakes.upstream import FakeUpstream

CONFIGS = Path(__file__).resolve().parent / "litellm_configs"
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
SHORT = [{"role": "user", "content": "hello"}]
# 80 words: past the upstream's context=8, and ~200 tokens as the gateway estimates them
# (4 characters a token), past a max_input_tokens of 40.
LONG = [{"role": "user", "content": " ".join(["paragraph"] * 80)}]


def served(gateway: GatewayFactory, upstream: FakeUpstream, name: str, **settings: Any) -> str:
    """Serves tests/litellm_configs/NAME with its deployments on the loopback upstream."""
    config = yaml.safe_load((CONFIGS / name).read_text())
    for entry in config["model_list"]:
        entry["litellm_params"]["api_base"] = upstream.url
    return gateway(config, **settings)


def chat(base: str, model: str, messages: Any = SHORT, key: str = MASTER_KEY) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": model, "messages": messages},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def answered_by(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text[:300]
    return response.headers["x-gateway-model"]


def calls(upstream: FakeUpstream, tag: str, directives: str = "") -> int:
    prefix = f"{directives}," if directives else ""
    return upstream.calls(f"{prefix}id={tag}")


# --- litellm_settings, and which section wins ---------------------------------------------------


def test_litellm_settings_reliability_keys_apply(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    base = served(gateway, upstream, "routing_litellm_settings.yaml")
    # num_retries: 1 and fallbacks: flaky is called twice, then backup answers.
    assert answered_by(chat(base, "flaky")) == "backup#1"
    assert calls(upstream, "routing-ls-flaky", "status=500") == 2
    # request_timeout: 0.3 s per call, so a hung upstream is a 504, twice tried.
    timed_out = chat(base, "slow")
    assert timed_out.status_code == 504, timed_out.text[:300]
    assert calls(upstream, "routing-ls-slow", "hang") == 2
    # allowed_fails: 1, cooldown_time: 30: two failures cool shaky down for the next call.
    assert chat(base, "shaky").status_code == 503
    cooled = chat(base, "shaky")
    assert cooled.status_code == 503
    assert "cooling down" in cooled.json()["error"]["message"]
    assert calls(upstream, "routing-ls-shaky", "status=503") == 2


def test_router_settings_win_over_litellm_settings(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    base = served(gateway, upstream, "routing_precedence.yaml")
    assert answered_by(chat(base, "primary")) == "chosen#1"  # router_settings' fallbacks
    assert calls(upstream, "routing-pr-primary", "status=500") == 1  # its num_retries: 0
    # allowed_fails: 0 only litellm_settings sets: primary cooled down at its first failure.
    assert answered_by(chat(base, "primary")) == "chosen#1"
    assert calls(upstream, "routing-pr-primary", "status=500") == 1
    assert calls(upstream, "routing-pr-ignored") == 0


def test_litellm_settings_values_are_checked_at_their_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "model_list:\n"
        "  - model_name: a\n"
        "    litellm_params: {model: openai/a}\n"
        "litellm_settings:\n"
        "  drop_params: true\n"
        "  num_retries: many\n"
        "  fallbacks:\n"
        "    - a: [b]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "gateway.yaml:6: litellm_settings.num_retries: Input should be a valid integer" in (
        message
    )
    path.write_text(path.read_text().replace("  num_retries: many\n", ""))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}:7: litellm_settings.fallbacks[0].a[0]: 'b' is not a model_name or "
        f"model_info.id in model_list (known: a)"
    )


def test_fallback_errors_point_at_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "model_list:\n"
        "  - model_name: a\n"
        "    litellm_params: {model: openai/a}\n"
        "    model_info: {id: a-eu}\n"
        "  - model_name: b\n"
        "    litellm_params: {model: openai/b}\n"
        "router_settings:\n"
        "  fallbacks:\n"
        "    - a: [b]\n"
        "    - b: [a-eu]\n"  # a deployment id: fine
        "    - c: [a]\n"
        "  context_window_fallbacks:\n"
        "    - a: [b,\n"
        "          gpt-5]\n"
        "  default_fallbacks: [b, nope]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = str(caught.value).splitlines()
    assert lines == [
        f"{path}:11: router_settings.fallbacks[2].c: 'c' is not a model_name in model_list "
        f"(known: a, b)",
        f"{path}:14: router_settings.context_window_fallbacks[0].a[1]: 'gpt-5' is not a "
        f"model_name or model_info.id in model_list (known: a, b)",
        f"{path}:15: router_settings.default_fallbacks[1]: 'nope' is not a model_name or "
        f"model_info.id in model_list (known: a, b)",
    ]


# --- retries --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "model", "status", "expected_calls"),
    [
        ("rate-limited", "status=429,id=routing-rp-429", 429, 4),  # RateLimitErrorRetries: 3
        ("broken", "status=500,id=routing-rp-500", 502, 1),  # InternalServerErrorRetries: 0
        ("refused", "status=400,id=routing-rp-400", 400, 2),  # BadRequestErrorRetries: 1
        ("unavailable", "status=503,id=routing-rp-503", 503, 2),  # not named: num_retries 1
        ("unauthorized", "status=401,id=routing-rp-401", 502, 1),  # AuthenticationError...: 0
        ("timing-out", "status=408,id=routing-rp-408", 504, 3),  # TimeoutErrorRetries: 2
        # ContentPolicyViolationErrorRetries: 0 wins over BadRequestErrorRetries: 1
        ("filtered", "status=400,code=content_filter,id=routing-rp-filtered", 400, 1),
    ],
)
def test_retry_policy_sets_retries_per_kind_of_failure(
    gateway: GatewayFactory,
    upstream: FakeUpstream,
    alias: str,
    model: str,
    status: int,
    expected_calls: int,
) -> None:
    base = served(gateway, upstream, "routing_retry_policy.yaml")
    before = upstream.calls(model)
    assert chat(base, alias).status_code == status
    assert upstream.calls(model) - before == expected_calls


def test_num_retries_above_ten(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    base = served(gateway, upstream, "routing_num_retries_above_10.yaml")
    assert answered_by(chat(base, "stubborn")) == "stubborn#0"
    assert calls(upstream, "routing-nr12", "fail_first=12,status=500") == 13


# --- cooldowns ------------------------------------------------------------------------------


def _cooled_after(base: str, alias: str) -> int:
    """How many calls failed before one was refused because the deployment cooled down."""
    for failed in range(10):
        response = chat(base, alias)
        if response.status_code == 503 and "cooling down" in response.json()["error"]["message"]:
            return failed
    raise AssertionError(f"{alias} never cooled down")


def test_allowed_fails_policy_counts_each_kind_apart(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    base = served(gateway, upstream, "routing_allowed_fails_policy.yaml")
    assert _cooled_after(base, "rate-limited") == 4  # RateLimitErrorAllowedFails: 3
    assert _cooled_after(base, "broken") == 1  # InternalServerErrorAllowedFails: 0
    assert _cooled_after(base, "timing-out") == 2  # not named: allowed_fails: 1
    assert calls(upstream, "routing-afp-429", "status=429") == 4


def test_allowed_fails_zero_cools_down_at_the_first_failure(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    base = served(gateway, upstream, "routing_allowed_fails_zero.yaml")
    for _ in range(10):
        assert answered_by(chat(base, "pair")) == "pair#1"
    assert calls(upstream, "routing-af0-bad", "status=500") <= 1
    assert calls(upstream, "routing-af0-good") == 10


def test_disable_cooldowns_keeps_a_failing_deployment_in_rotation(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    base = served(gateway, upstream, "routing_disable_cooldowns.yaml")
    for _ in range(5):
        assert chat(base, "broken").status_code == 502  # never 503 "cooling down"
    assert calls(upstream, "routing-dc-broken", "status=500") == 5


# --- fallbacks ------------------------------------------------------------------------------


def test_default_fallbacks_serve_every_alias_without_its_own(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    base = served(gateway, upstream, "routing_default_fallbacks.yaml")
    assert answered_by(chat(base, "any-primary")) == "catch-all#2"
    assert answered_by(chat(base, "special")) == "special-backup#3"
    assert calls(upstream, "routing-df-catch-all") == 1


def test_fallback_chains_depth_first_up_to_max_fallbacks(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    base = served(gateway, upstream, "routing_fallback_chains.yaml")
    # first -> second -> second's own fallback, third.
    assert answered_by(chat(base, "first")) == "third#2"
    third = calls(upstream, "routing-fc-third")
    # limited -> first -> second: two fallbacks, max_fallbacks: 2; third is not tried.
    assert chat(base, "limited").status_code == 502
    assert calls(upstream, "routing-fc-second", "status=500") == 2
    assert calls(upstream, "routing-fc-third") == third
    # A fallback naming a deployment's model_info.id goes to that deployment alone.
    for _ in range(3):
        assert answered_by(chat(base, "pinned")) == "eu-west"
    assert calls(upstream, "routing-fc-us", "status=500") == 0


def test_fallbacks_to_a_deployment_stay_inside_the_keys_models(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    base = served(gateway, upstream, "routing_fallback_chains.yaml")
    created = httpx.post(f"{base}/v1/keys", json={"models": ["pinned"]}, headers=ADMIN)
    key = created.json()["key"]
    before = calls(upstream, "routing-fc-eu")
    assert chat(base, "pinned", key=key).status_code == 502  # eu-west serves "regional"
    assert calls(upstream, "routing-fc-eu") == before


def test_context_window_fallbacks(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    base = served(gateway, upstream, "routing_context_window_fallbacks.yaml")
    assert answered_by(chat(base, "small")) == "small#0"  # fits: no fallback
    assert answered_by(chat(base, "small", LONG)) == "large#1"
    assert calls(upstream, "routing-cw-small", "context=8") == 2  # not retried: a 400
    assert calls(upstream, "routing-cw-regular") == 0  # not the regular fallbacks
    # tiny has no context_window_fallbacks of its own: the upstream's 400 is the answer.
    refused = chat(base, "tiny", LONG)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "context_length_exceeded"
    assert "maximum context length is 8 tokens" in refused.json()["error"]["message"]
    assert calls(upstream, "routing-cw-regular") == 0


def test_context_window_failures_take_fallbacks_when_unset(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    base = served(gateway, upstream, "routing_context_window_unset.yaml")
    assert answered_by(chat(base, "small", LONG)) == "large#1"


def test_content_policy_fallbacks(gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    base = served(gateway, upstream, "routing_content_policy_fallbacks.yaml")
    assert answered_by(chat(base, "filtered")) == "lenient#2"
    assert calls(upstream, "routing-cp-filtered", "status=400,code=content_filter") == 1
    # A plain 400 is the caller's own: no fallback, whatever content_policy_fallbacks say.
    assert chat(base, "picky").status_code == 400
    assert calls(upstream, "routing-cp-lenient") == 1


# --- pre-call checks ------------------------------------------------------------------------


def test_pre_call_checks_skip_deployments_too_small_for_the_prompt(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    base = served(gateway, upstream, "routing_pre_call_checks.yaml")
    for _ in range(8):
        assert answered_by(chat(base, "chat", LONG)) == "chat#1"
    assert calls(upstream, "routing-pc-short") == 0
    seen = {answered_by(chat(base, "chat")) for _ in range(30)}
    assert seen == {"chat#0", "chat#1"}  # a short prompt fits both
    # None of short-only fits: its context_window_fallbacks, before any call to it.
    assert answered_by(chat(base, "short-only", LONG)) == "big#3"
    assert calls(upstream, "routing-pc-short-only") == 0


def test_pre_call_checks_read_the_price_maps_context_window() -> None:
    azure = Deployment(
        id="azure-eu",
        alias="gpt",
        model="azure/my-deployment",
        provider="azure",
        upstream_model="my-deployment",
        base_model="gpt-4o-mini",
    )
    unknown = Deployment(
        id="mine", alias="gpt", model="openai/mine", provider="openai", upstream_model="mine"
    )
    assert context_windows([azure, unknown], {}) == {"azure-eu": 128000}
    assert context_windows([azure], {"azure-eu": 1000}) == {"azure-eu": 1000}


# --- strategies -----------------------------------------------------------------------------


def test_usage_based_routing_sends_each_call_to_the_least_used(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    base = served(gateway, upstream, "routing_usage_based.yaml")
    order = [answered_by(chat(base, "balanced")) for _ in range(40)]
    assert taken_in_turn(order), order
    assert calls(upstream, "routing-ub-a") + calls(upstream, "routing-ub-b") == 40


def taken_in_turn(order: list[str]) -> bool:
    """Whether two deployments answering equal calls shared them as usage-based routing
    does: neither ever two calls ahead of the other, in this minute's usage. A new minute
    starts both afresh, so the order may be split once (a run is far shorter than a minute);
    random choices would leave that band within a few calls."""

    def even(part: list[str]) -> bool:
        lead = 0
        for answered in part:
            lead += 1 if answered == order[0] else -1
            if abs(lead) > 1:
                return False
        return True

    return len(set(order)) == 2 and any(
        even(order[:split]) and even(order[split:]) for split in range(len(order) + 1)
    )


def test_cost_based_routing_takes_the_cheapest_healthy_deployment(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    base = served(gateway, upstream, "routing_cost_based.yaml")
    for _ in range(5):
        assert answered_by(chat(base, "thrifty")) == "thrifty#1"
    assert calls(upstream, "routing-cb-dear") == calls(upstream, "routing-cb-mid") == 0
    # The cheapest one failing, the retry goes to the next cheapest.
    assert answered_by(chat(base, "fallible")) == "fallible#4"
    assert calls(upstream, "routing-cb-cheap-broken", "status=500") == 1


# --- Redis and provider budgets -----------------------------------------------------------


def _limited_key(base: str) -> str:
    created = httpx.post(f"{base}/v1/keys", json={"rpm_limit": 1}, headers=ADMIN)
    assert created.status_code == 200, created.text
    key: str = created.json()["key"]
    return key


def test_router_redis_settings_share_limits_across_replicas(
    gateway: GatewayFactory, upstream: FakeUpstream, redis_prefix: str
) -> None:
    assert REDIS_URL.startswith("redis://127.0.0.1:6379")  # what routing_redis.yaml names
    first = served(gateway, upstream, "routing_redis.yaml", redis_prefix=redis_prefix)
    second = served(gateway, upstream, "routing_redis.yaml", redis_prefix=redis_prefix)
    key = _limited_key(first)
    assert chat(first, "shared", key=key).status_code == 200
    refused = chat(second, "shared", key=key)  # the same minute's counter, in that Redis
    assert refused.status_code == 429, refused.text[:300]


def test_gateway_redis_url_wins_over_router_redis_settings(
    gateway: GatewayFactory, upstream: FakeUpstream, redis_prefix: str, tmp_path: Path
) -> None:
    config = yaml.safe_load((CONFIGS / "routing_redis.yaml").read_text())
    config["model_list"][0]["litellm_params"]["api_base"] = upstream.url
    config["router_settings"]["redis_port"] = 1  # nothing listens there
    base = gateway(config, redis_prefix=redis_prefix, redis_url=REDIS_URL)
    assert chat(base, "shared", key=_limited_key(base)).status_code == 200
    # Without GATEWAY_REDIS_URL, that Redis is the one used: unreachable, so metered calls
    # are refused (GATEWAY_REDIS_FAIL_OPEN is false).
    unreachable = gateway(config, redis_prefix=redis_prefix, data_dir=tmp_path / "other")
    refused = chat(unreachable, "shared", key=_limited_key(unreachable))
    assert refused.status_code == 503, refused.text[:300]
    assert refused.json()["error"]["code"] == "meter_unavailable"


def test_router_redis_password_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROUTING_TEST_REDIS_PASSWORD", "p@ss word")
    monkeypatch.setenv("ROUTING_TEST_REDIS_PORT", "6380")
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "router_settings:\n"
        "  redis_host: cache.internal\n"
        "  redis_port: os.environ/ROUTING_TEST_REDIS_PORT\n"
        "  redis_password: os.environ/ROUTING_TEST_REDIS_PASSWORD\n"
    )
    router = load_config(path).router_settings
    assert router.shared_redis_url() == "redis://:p%40ss%20word@cache.internal:6380"
    assert load_config(path, secrets=False).router_settings.redis_password == (
        "os.environ/ROUTING_TEST_REDIS_PASSWORD"
    )


def test_provider_budget_config_is_refused_with_what_to_do_instead() -> None:
    path = CONFIGS / "routing_provider_budget_config.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert f"{path}:10: router_settings.provider_budget_config:" in message
    assert "LiteLLM's provider budgets are not supported" in message
    assert "max_budget" in message


@pytest.mark.slow  # imports litellm
def test_context_window_fallbacks_through_litellm(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    """litellm's ContextWindowExceededError is the same failure as the fast path's 400."""
    config = yaml.safe_load((CONFIGS / "routing_context_window_unset.yaml").read_text())
    for entry in config["model_list"]:
        entry["litellm_params"]["api_base"] = upstream.url
        entry["litellm_params"]["api_key"] = "sk-test"
        entry["model_info"] = {"transport": "litellm"}
    config["router_settings"] = {"context_window_fallbacks": [{"small": ["large"]}]}
    base = gateway(config)
    assert answered_by(chat(base, "small", LONG)) == "large#1"
    assert calls(upstream, "routing-cwu-small", "context=8") >= 1


def test_a_key_left_empty_is_unset(tmp_path: Path) -> None:
    """`fallbacks:` with its entries commented out, as LiteLLM files often have it."""
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "model_list:\n"
        "  - model_name: a\n"
        "    litellm_params: {model: openai/a}\n"
        "router_settings:\n"
        "  fallbacks:\n"
        "  #  - a: [b]\n"
        "  num_retries:\n"
        "litellm_settings:\n"
        "  num_retries: 4\n"
        "  context_window_fallbacks:\n"
    )
    router = load_config(path).router_settings
    assert (router.fallbacks, router.context_window_fallbacks, router.num_retries) == ([], [], 4)


# --- with model_group_alias, wildcards and tags ---------------------------------------------


def test_a_group_alias_takes_its_own_fallbacks_else_its_groups(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    config = {
        "model_list": [
            fake_model(upstream, "primary", "status=500,id=routing-ga-primary"),
            fake_model(upstream, "backup-a", "id=routing-ga-a"),
            fake_model(upstream, "backup-b", "id=routing-ga-b"),
        ],
        "router_settings": {
            "num_retries": 0,
            "model_group_alias": {"old": "primary", "legacy": "primary"},
            "fallbacks": [{"primary": ["backup-a"]}, {"old": ["backup-b"]}],
        },
    }
    base = gateway(config)
    assert answered_by(chat(base, "old")) == "backup-b#2"
    assert answered_by(chat(base, "legacy")) == "backup-a#1"
    assert answered_by(chat(base, "primary")) == "backup-a#1"


def test_a_fallback_to_a_deployment_id_wins_over_a_catch_all_wildcard(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    backup = fake_model(upstream, "backup", "id=routing-gid-backup")
    backup["model_info"] = {"id": "backup-eu"}
    config = {
        "model_list": [
            fake_model(upstream, "primary", "status=500,id=routing-gid-primary"),
            backup,
            fake_model(upstream, "*", "*"),  # would send "backup-eu" upstream as a model
        ],
        "router_settings": {"num_retries": 0, "fallbacks": [{"primary": ["backup-eu"]}]},
    }
    base = gateway(config)
    assert answered_by(chat(base, "primary")) == "backup-eu"
    assert upstream.calls("backup-eu") == 0


def test_names_a_wildcard_serves_take_their_fallbacks(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    small = "openai/context=8,id=routing-wf-small"
    config = {
        "model_list": [
            fake_model(upstream, "openai/*", "*"),
            fake_model(upstream, "large", "id=routing-wf-large"),
        ],
        "router_settings": {
            "num_retries": 0,
            "default_fallbacks": ["large"],  # for every name without fallbacks of its own
            "context_window_fallbacks": [{small: ["large"]}],
        },
    }
    base = gateway(config)
    assert answered_by(chat(base, "openai/status=500,id=routing-wf-broken")) == "large#1"
    assert answered_by(chat(base, small, LONG)) == "large#1"
    # Once context_window_fallbacks are set, a name without an entry there has none.
    other = chat(base, "openai/context=8,id=routing-wf-other", LONG)
    assert other.status_code == 400, other.text[:300]
    assert calls(upstream, "routing-wf-large") == 2


def test_usage_based_routing_counts_what_a_wildcard_serves(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    deployments = []
    for name in ("wild-a", "wild-b"):
        entry = fake_model(upstream, "openai/*", "*", tpm=100000, rpm=1000)
        entry["model_info"] = {"id": name}
        deployments.append(entry)
    config = {
        "model_list": deployments,
        "router_settings": {"routing_strategy": "usage-based-routing-v2"},
    }
    base = gateway(config)
    order = [answered_by(chat(base, "openai/id=routing-wu")) for _ in range(40)]
    assert taken_in_turn(order), order  # as with exact names


def test_router_redis_keys_read_the_files_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ROUTING_FILE_REDIS_PASSWORD", raising=False)
    monkeypatch.delenv("ROUTING_UNSET_REDIS_HOST", raising=False)
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "environment_variables:\n"
        "  ROUTING_FILE_REDIS_PASSWORD: from-file\n"
        "router_settings:\n"
        "  redis_host: cache.internal\n"
        "  redis_password: os.environ/ROUTING_FILE_REDIS_PASSWORD\n"
    )
    router = load_config(path).router_settings
    assert router.shared_redis_url() == "redis://:from-file@cache.internal:6379"
    path.write_text(
        path.read_text().replace("cache.internal", "os.environ/ROUTING_UNSET_REDIS_HOST")
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}:4: router_settings.redis_host: environment variable ROUTING_UNSET_REDIS_HOST "
        f"is not set (export it, or remove this key)"
    )
