"""Tag-based routing as LiteLLM's proxy does it (router_settings.enable_tag_filtering): the
request's tags (body `metadata.tags`, body `tags`, header `x-litellm-tags`) pick the
deployments whose `litellm_params.tags` match; against the loopback upstream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import MASTER_KEY, GatewayFactory, fake_model
from tests.fakes.upstream import FakeUpstream

CONFIG = Path(__file__).resolve().parent / "litellm_configs" / "wild_tag_routing.yaml"
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
USER = [{"role": "user", "content": "tagged"}]


@pytest.fixture
def tagged(gateway: GatewayFactory, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("WILD_UPSTREAM", upstream.url)
    return gateway(yaml.safe_load(CONFIG.read_text()))


def _post(base: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/chat/completions",
        json={"messages": USER, **body},
        headers={**ADMIN, **headers},
    )


def _served_by(base: str, body: dict[str, Any], **headers: str) -> str:
    response = _post(base, body, **headers)
    assert response.status_code == 200, response.text
    return response.headers["x-gateway-model"]


def test_tags_in_metadata_pick_the_tagged_deployment(tagged: str, upstream: FakeUpstream) -> None:
    body = {"model": "gpt-4", "metadata": {"tags": ["paid"], "purpose": "kept"}}
    for _ in range(5):
        assert _served_by(tagged, body) == "paid"
    sent = upstream.last_body("tag-paid")
    assert sent is not None
    assert "tags" not in sent  # routing metadata, never the provider's
    assert sent["metadata"] == {"purpose": "kept"}


def test_body_tags_and_the_header_carry_tags_too(tagged: str, upstream: FakeUpstream) -> None:
    assert _served_by(tagged, {"model": "gpt-4", "tags": ["eu"]}) == "paid"
    assert "tags" not in (upstream.last_body("tag-paid") or {"tags": "never sent"})
    assert _served_by(tagged, {"model": "gpt-4"}, **{"x-litellm-tags": "teamB, paid"}) == "paid"


def test_untagged_and_unmatched_requests_go_to_the_default_deployment(tagged: str) -> None:
    for _ in range(5):
        assert _served_by(tagged, {"model": "gpt-4"}) == "free"
        assert _served_by(tagged, {"model": "gpt-4", "tags": ["nobody-has-it"]}) == "free"


def test_without_a_default_an_untagged_request_goes_anywhere_and_a_mismatch_is_refused(
    tagged: str,
) -> None:
    assert _served_by(tagged, {"model": "strict-only"}) == "strict"
    refused = _post(tagged, {"model": "strict-only", "tags": ["teamB"]})
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["message"].startswith(
        "Not allowed to access model due to tags configuration: no deployment of 'strict-only'"
    )
    assert error["code"] == "no_deployment_for_tags"


def test_tags_must_be_an_array_of_strings(tagged: str) -> None:
    refused = _post(tagged, {"model": "gpt-4", "metadata": {"tags": "paid"}})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "metadata.tags"


def test_match_all_needs_every_request_tag_on_the_deployment(
    gateway: GatewayFactory, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WILD_UPSTREAM", upstream.url)
    config = yaml.safe_load(CONFIG.read_text())
    config["router_settings"]["tag_filtering_match_any"] = False
    base = gateway(config)
    assert _served_by(base, {"model": "gpt-4", "tags": ["paid", "eu"]}) == "paid"
    # "paid" alone matches, but not both: the default deployment takes it.
    assert _served_by(base, {"model": "gpt-4", "tags": ["paid", "us"]}) == "free"


def test_fallbacks_without_a_matching_deployment_are_skipped(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    primary = fake_model(upstream, "primary", "status=500,id=tag-fb", tags=["teamA"])
    other = fake_model(upstream, "other-team", "tag-fb-other", tags=["teamB"])
    mine = fake_model(upstream, "mine", "tag-fb-mine", tags=["teamA"])
    config = {
        "model_list": [primary, other, mine],
        "router_settings": {
            "enable_tag_filtering": True,
            "num_retries": 0,
            "fallbacks": [{"primary": ["other-team", "mine"]}],
        },
    }
    base = gateway(config)
    assert _served_by(base, {"model": "primary", "tags": ["teamA"]}) == "mine#2"
    assert upstream.calls("tag-fb-other") == 0


def test_tags_are_left_alone_when_tag_filtering_is_off(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    config = {"model_list": [fake_model(upstream, "plain", "tag-off", tags=["paid"])]}
    base = gateway(config)
    assert _served_by(base, {"model": "plain", "metadata": {"tags": ["free"]}}) == "plain#0"
    assert upstream.last_body("tag-off") == {
        "model": "tag-off",
        "messages": USER,
        "metadata": {"tags": ["free"]},  # passed on as the provider's own field
    }
