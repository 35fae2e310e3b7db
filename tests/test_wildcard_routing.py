"""Which deployment a requested model name reaches, as in LiteLLM: wildcard model_names
(`openai/*`, `*`, `anthropic/claude-*`), router_settings.model_group_alias, and fallbacks
naming wildcard-served models; against the loopback upstream, which echoes the model it was
asked for (so the reply's `model` is what the upstream received)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
import yaml

from gateway.core.config import GatewayConfig, parse_config
from gateway.core.errors import ConfigError
from gateway.core.wildcards import WildcardName, most_specific_first, upstream_model
from gateway.core.yamlfile import YamlDocument
from gateway.metering.prices import PriceTable, price_map_path
from gateway.prompts.served import ServedModels
from gateway.providers import Providers, build_deployments
from gateway.routing.names import MAX_RESOLVED
from gateway.routing.router import Router
from tests.conftest import MASTER_KEY, GatewayFactory, fake_model, sdk
from tests.fakes.upstream import FakeUpstream

CONFIGS = Path(__file__).resolve().parent / "litellm_configs"
USER = [{"role": "user", "content": "which model answers"}]
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def _config(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CONFIGS / name).read_text())
    return loaded


@pytest.fixture
def wild(gateway: GatewayFactory, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("WILD_UPSTREAM", upstream.url)
    return gateway(_config("wild_provider_wildcards.yaml"))


def _ask(base: str, model: str, key: str = MASTER_KEY) -> tuple[str, str]:
    """The model the upstream was asked for, and the deployment that answered."""
    raw = sdk(base, key).chat.completions.with_raw_response.create(model=model, messages=USER)
    return raw.parse().model, raw.headers["x-gateway-model"]


def _key(base: str, **fields: Any) -> str:
    created = httpx.post(f"{base}/v1/keys", json=fields, headers=ADMIN)
    assert created.status_code == 200, created.text
    key: str = created.json()["key"]
    return key


def _listed(base: str, key: str = MASTER_KEY) -> list[str]:
    return [m.id for m in sdk(base, key).models.list()]


# --- the grammar, as LiteLLM's PatternMatchRouter has it ----------------------------------------


def test_litellm_order_tries_longer_patterns_first_and_keeps_ties_in_config_order() -> None:
    order = most_specific_first(["*", "openai/*", "anthropic/*", "anthropic/claude-*", "b/*"])
    assert [w.name for w in order] == [
        "anthropic/claude-*",
        "anthropic/*",
        "openai/*",
        "b/*",
        "*",
    ]


def test_captured_text_replaces_the_deployments_stars() -> None:
    def routed(pattern: str, requested: str, model: str) -> str:
        captured = WildcardName.parse(pattern).match(requested)
        assert captured is not None
        return upstream_model(captured, requested, model)

    assert routed("openai/*", "openai/gpt-4o-mini", "openai/*") == "openai/gpt-4o-mini"
    assert routed("llmengine/*", "llmengine/foo", "openai/*") == "openai/foo"
    assert routed("fo::*::static::*", "fo::hi::static::hi", "openai/fo::*::static::*") == (
        "openai/fo::hi::static::hi"
    )
    assert routed("*", "claude-x", "openai/gpt-4o") == "openai/gpt-4o"  # no star: as written
    assert routed("a/*/b/*", "a/x/b/y", "openai/*") == "a/x/b/y"  # more captures than stars
    assert routed("a*b*c", "abbcbc", "x/*-*") == "x/bbc-"  # greedy, as re's (.*)
    assert routed("**", "ab", "*|*") == "ab|"
    assert WildcardName.parse("claude-*-latest").match("claude-3-latest-foo") is None
    assert WildcardName.parse("ab*ba").match("aba") is None


def test_matching_agrees_with_litellms_regex_and_never_backtracks() -> None:
    patterns = ["*", "a*", "*b", "a*b", "a*b*c", "**", "x::*::y::*", "a*a*a*a*b", "-*.*"]
    names = ["", "a", "ab", "aab", "abbcbc", "x::1::y::2", "aaaaab", "a-b.c", "-.", "ba"]
    for pattern in patterns:
        regex = re.compile(re.escape(pattern).replace(r"\*", "(.*)"))
        for name in names:
            found = regex.fullmatch(name)
            expected = None if found is None else found.groups()
            assert WildcardName.parse(pattern).match(name) == expected, (pattern, name)
    # Four `*`s over 256 characters take re seconds of backtracking: here, one pass.
    assert WildcardName.parse("a*a*a*a*b").match("a" * 256) is None


# --- routing -------------------------------------------------------------------------------------


def test_wildcard_routes_with_the_captured_part_substituted(wild: str) -> None:
    assert _ask(wild, "openai/gpt-4o-mini") == ("gpt-4o-mini", "openai-wildcard")
    assert _ask(wild, "anthropic/some-model") == ("some-model", "anthropic-wildcard")


def test_exact_names_win_over_patterns_and_specific_patterns_over_general(wild: str) -> None:
    assert _ask(wild, "gpt-4o") == ("exact-gpt-4o", "exact-gpt-4o")
    assert _ask(wild, "anthropic/claude-sonnet-4-5") == ("claude-sonnet-4-5", "claude-wildcard")


def test_a_name_without_its_providers_prefix_reaches_the_providers_wildcard(wild: str) -> None:
    # LiteLLM infers openai for gpt-4o-mini (from its price map) and tries openai/gpt-4o-mini.
    assert _ask(wild, "gpt-4o-mini") == ("gpt-4o-mini", "openai-wildcard")


def test_a_name_no_pattern_matches_is_the_usual_404(wild: str) -> None:
    for name in ("mistral/large", "not-a-model", "openai/*"):
        with pytest.raises(openai.NotFoundError) as missing:
            _ask(wild, name)
        assert missing.value.status_code == 404
        assert missing.value.code == "model_not_found"
        assert missing.value.body["message"] == (  # type: ignore[index]
            f"The model {name!r} does not exist or you do not have access to it. "
            f"GET /v1/models lists the models this gateway serves."
        )


def test_catch_all_sends_every_unknown_name_to_its_provider(
    gateway: GatewayFactory, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WILD_UPSTREAM", upstream.url)
    base = gateway(_config("wild_catch_all.yaml"))
    assert _ask(base, "my-finetune-7") == ("my-finetune-7", "catch-all")
    assert _ask(base, "local/echo")[1] == "local/echo#1"  # configured names still win
    listed = _listed(base)
    assert "*" not in listed
    assert "gpt-4o-mini" in listed  # openai's models, named as the catch-all serves them
    assert _ask(base, "gpt-4o-mini") == ("gpt-4o-mini", "catch-all")


def test_streams_and_embeddings_route_through_wildcards_too(wild: str) -> None:
    client = sdk(wild)
    chunks = list(
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=USER, stream=True)
    )
    assert {chunk.model for chunk in chunks} == {"gpt-4o-mini"}
    embedded = client.embeddings.create(model="openai/text-embedding-3-small", input="hi")
    assert embedded.model == "text-embedding-3-small"


# --- /v1/models ----------------------------------------------------------------------------------


def test_models_list_shows_what_wildcards_serve_and_never_a_star(wild: str) -> None:
    listed = _listed(wild)
    assert not [name for name in listed if "*" in name]
    assert listed[:2] == ["gpt-4o", "gpt-4"]  # the model_names, then the visible aliases
    assert "old-mini" not in listed  # hidden
    assert "openai/gpt-4o-mini" in listed  # openai's models from the price map
    assert "openai/text-embedding-3-small" in listed
    assert "anthropic/claude-sonnet-4-5" not in listed  # served by an openai/ deployment here
    assert len(listed) == len(set(listed))
    for name in ("openai/gpt-4o-mini", "old-mini", "gpt-4"):  # each listed name routes
        assert httpx.get(f"{wild}/v1/models/{name}", headers=ADMIN).json()["id"] == name
    missing = httpx.get(f"{wild}/v1/models/mistral/large", headers=ADMIN)
    assert missing.status_code == 404


# --- model_group_alias ---------------------------------------------------------------------------


def test_group_aliases_route_to_their_target_group(wild: str) -> None:
    assert _ask(wild, "gpt-4") == ("exact-gpt-4o", "exact-gpt-4o")
    assert _ask(wild, "old-mini") == ("gpt-4o-mini", "openai-wildcard")  # hidden, still served


def _load(tmp_path: Path, router_settings: str) -> str:
    """Loads a config of gpt-4o and openai/* with these router_settings lines; its path."""
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "model_list:\n"
        "  - model_name: gpt-4o\n"
        "    litellm_params: {model: openai/gpt-4o}\n"
        "  - model_name: 'openai/*'\n"
        "    litellm_params: {model: 'openai/*'}\n"
        "router_settings:\n" + router_settings
    )
    parse_config(YamlDocument.read(path))
    return str(path)


def test_an_alias_to_a_model_no_deployment_serves_is_refused_at_load(tmp_path: Path) -> None:
    aliases = "  model_group_alias:\n    gpt-4: gpt-4o\n    mini: openai/gpt-4o-mini\n"
    _load(tmp_path, aliases)
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, aliases + "    gpt-5: gpt-5o\n")
    assert str(refused.value).startswith(
        f"{tmp_path / 'gateway.yaml'}:10: router_settings.model_group_alias.gpt-5: routes to "
        f"'gpt-5o', which is not a model_name"
    )


def test_the_long_form_takes_model_and_hidden_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gateway\.yaml:8: .*hiden"):
        _load(tmp_path, "  model_group_alias:\n    gpt-4: {model: gpt-4o, hiden: true}\n")


# --- keys ---------------------------------------------------------------------------------------


def test_key_model_globs_apply_to_the_requested_name(wild: str) -> None:
    key = _key(wild, models=["openai/*"])
    assert _ask(wild, "openai/gpt-4o-mini", key)[1] == "openai-wildcard"
    with pytest.raises(openai.PermissionDeniedError):
        _ask(wild, "anthropic/claude-sonnet-4-5", key)
    listed = _listed(wild, key)
    assert "openai/gpt-4o-mini" in listed
    assert all(name.startswith("openai/") for name in listed)


def test_a_key_allowed_a_group_may_use_its_aliases(wild: str) -> None:
    key = _key(wild, models=["gpt-4o"])
    assert _ask(wild, "gpt-4", key)[1] == "exact-gpt-4o"  # LiteLLM allows alias or target
    assert _listed(wild, key) == ["gpt-4o", "gpt-4"]
    with pytest.raises(openai.PermissionDeniedError):
        _ask(wild, "openai/gpt-4o", key)  # another name for the same upstream model is not


# --- prices and budgets --------------------------------------------------------------------------


def _map_price(name: str) -> tuple[float, float]:
    entry = orjson.loads(price_map_path().read_bytes())[name]  # type: ignore[union-attr]
    return entry["input_cost_per_token"], entry["output_cost_per_token"]


def test_a_wildcard_call_is_priced_as_the_model_it_reached(wild: str) -> None:
    for requested, priced_as in (
        ("openai/gpt-4o-mini", "gpt-4o-mini"),
        ("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5"),
    ):
        raw = sdk(wild).chat.completions.with_raw_response.create(model=requested, messages=USER)
        usage = raw.parse().usage
        assert usage is not None
        rates = _map_price(priced_as)
        expected = usage.prompt_tokens * rates[0] + usage.completion_tokens * rates[1]
        assert float(raw.headers["x-gateway-cost-usd"]) == pytest.approx(expected, abs=1e-10)
        assert expected > 0


def test_a_budget_reserves_at_the_price_of_the_model_a_wildcard_reaches(
    gateway: GatewayFactory, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WILD_UPSTREAM", upstream.url)
    config = _config("wild_provider_wildcards.yaml")
    config["gateway"] = {"cap_max_tokens_to_budget": False}
    base = gateway(config)
    key = _key(base, max_budget=0.001)
    client = sdk(base, key)
    # $0.001 covers 1,000 gpt-4o-mini completion tokens ($0.60 a million), not 1,000 of
    # claude-sonnet-4-5's ($15 a million).
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=USER, max_tokens=1000)
    with pytest.raises(openai.RateLimitError, match="budget"):
        client.chat.completions.create(
            model="anthropic/claude-sonnet-4-5", messages=USER, max_tokens=1000
        )


# --- fallbacks -----------------------------------------------------------------------------------


def test_fallbacks_may_name_a_model_only_a_wildcard_serves(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    wildcard = fake_model(upstream, "anthropic/*", "*")
    wildcard["model_info"] = {"id": "anthropic-wildcard"}
    config = {
        "model_list": [fake_model(upstream, "gpt-4o", "status=500,id=wild-fallback"), wildcard],
        "router_settings": {
            "num_retries": 0,
            "fallbacks": [{"gpt-4o": ["anthropic/claude-sonnet-4-5"]}],
        },
    }
    config["router_settings"]["model_group_alias"] = {"gpt-4": "gpt-4o"}
    base = gateway(config)
    assert _ask(base, "gpt-4o") == ("claude-sonnet-4-5", "anthropic-wildcard")
    assert _ask(base, "gpt-4") == ("claude-sonnet-4-5", "anthropic-wildcard")  # its target's


def test_one_model_failing_does_not_cool_down_the_others_a_wildcard_serves(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    config = {
        "model_list": [fake_model(upstream, "openai/*", "*")],
        # allowed_fails: 0 cools a deployment down at its first failure (LiteLLM's count).
        "router_settings": {"num_retries": 0, "allowed_fails": 0, "cooldown_time": 60},
    }
    base = gateway(config)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            _ask(base, "openai/status=500,id=wild-cooldown")
    assert upstream.calls("status=500,id=wild-cooldown") == 1  # cooling down after one
    assert _ask(base, "openai/gpt-4o-mini") == ("gpt-4o-mini", "openai/*#0")


def test_fallbacks_may_name_an_alias_and_unknown_names_are_still_refused(
    tmp_path: Path,
) -> None:
    aliases = "  model_group_alias: {gpt-4: gpt-4o}\n"
    _load(tmp_path, aliases + "  fallbacks: [{gpt-4: [openai/gpt-4o-mini]}]\n")
    with pytest.raises(ConfigError, match="'mistral/large' is not a model_name"):
        _load(tmp_path, aliases + "  fallbacks: [{gpt-4: [mistral/large]}]\n")


# --- prompts -------------------------------------------------------------------------------------


def test_a_prompt_may_name_any_model_a_wildcard_or_an_alias_serves(
    upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WILD_UPSTREAM", upstream.url)
    config = parse_config(YamlDocument.read(CONFIGS / "wild_provider_wildcards.yaml"))
    served = ServedModels.from_config(config, "wild_provider_wildcards.yaml")
    for model in ("openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gpt-4", "old-mini"):
        assert served.problem(model) is None, model
    for model in ("openai/*", "mistral/large"):
        problem = served.problem(model)
        assert problem is not None
        assert problem.startswith(f"model {model!r} is not served by this gateway")


# --- a pass-through catch-all --------------------------------------------------------------------


def test_a_pass_through_catch_all_infers_the_provider_of_a_known_bare_name() -> None:
    config = GatewayConfig.model_validate(
        {"model_list": [{"model_name": "*", "litellm_params": {"model": "*"}}]}
    )
    deployments = build_deployments(config)
    prices = PriceTable.for_deployments(deployments)
    router = Router(deployments, config.router_settings, Providers(config), prices.catalogue)

    def reached(name: str) -> tuple[str, str, str]:
        deployment = router.deployments(name)[0]
        return deployment.model, deployment.provider, deployment.upstream_model

    # As litellm.completion(model=name) would: its price map says whose model it is.
    assert reached("gpt-4o-mini") == ("openai/gpt-4o-mini", "openai", "gpt-4o-mini")
    assert reached("claude-sonnet-4-5") == (
        "anthropic/claude-sonnet-4-5",
        "anthropic",
        "claude-sonnet-4-5",
    )
    assert reached("gemini-2.5-flash")[1] == "vertex_ai"
    assert reached("groq/llama-x") == ("groq/llama-x", "groq", "llama-x")
    assert reached("my-own-model") == ("my-own-model", "openai", "my-own-model")
    assert router.listed() == []  # no provider to list the models of


def test_the_table_of_resolved_names_is_bounded() -> None:
    config = GatewayConfig.model_validate(
        {"model_list": [{"model_name": "openai/*", "litellm_params": {"model": "openai/*"}}]}
    )
    deployments = build_deployments(config)
    router = Router(deployments, config.router_settings, Providers(config))
    first = router.states("openai/model-0")
    assert router.states("openai/model-0") is first  # matched once, then looked up
    for n in range(1, MAX_RESOLVED + 100):  # callers may ask for endless distinct names
        router.states(f"openai/model-{n}")
    assert len(router.names._resolved) == MAX_RESOLVED
    assert router.states("openai/model-0") is not first  # the oldest was forgotten
