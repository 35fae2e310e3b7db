"""Every key of the config schema reaches the code that acts on it, or the README says why not.

`schema_keys()` walks every leaf of `GatewayConfig` (through `model_list[]`, `litellm_params`,
`model_info`, `router_settings`, `gateway`). Each leaf needs a check in CHECKS that sets it and
sees its effect on real components built by the production builders (a request arriving at the
loopback upstream with the header or query it implies, the route taken, a retry made, a price
charged, a limit enforced), or a row in the README's "Keys accepted and not used" table saying
why the gateway ignores it. A key added to the schema with neither fails
test_every_key_is_checked_or_listed_unused.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import re
import sqlite3
import time
import types
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import httpx
import openai
import orjson
import pytest
from pydantic import BaseModel, ValidationError

from gateway.core.config import GatewayConfig
from gateway.core.errors import (
    BadRequest,
    GatewayError,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.metering.prices import PriceTable, price_map_path
from gateway.providers import Deployment, Providers, Reply, Usage, build_deployments
from gateway.routing.router import Routed, Router
from tests.conftest import MASTER_KEY, REDIS_URL, GatewayFactory, sdk
from tests.drift_checks import DRIFT_CHECKS
from tests.fakes.upstream import FakeUpstream, ReceivedRequest
from tests.index_config_checks import INDEX_CHECKS
from tests.transport_config_checks import TRANSPORT_CHECKS

README = Path(__file__).resolve().parent.parent / "README.md"
UNUSED_HEADING = "### Keys accepted and not used"
USER = [{"role": "user", "content": "config keys"}]
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


# --- the walk ---------------------------------------------------------------------------------


def _models_in(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_models_in(arg) for arg in get_args(annotation))


def _nested(annotation: Any) -> tuple[type[BaseModel], str] | None:
    """The section model a field holds and the path suffix for it ('' or '[]'), or None for a
    leaf. A shape the walk does not know fails, so it cannot skip a section silently."""
    if not _models_in(annotation):
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, ""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        present = [arg for arg in args if arg is not type(None)]
        if len(present) == 1:
            return _nested(present[0])
    if origin is list and len(args) == 1:
        inner = _nested(args[0])
        if inner is not None and inner[1] == "":
            return inner[0], "[]"
    raise AssertionError(f"teach schema_keys() to walk {annotation!r}")


def schema_keys(model: type[BaseModel] = GatewayConfig, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for name, info in model.model_fields.items():
        nested = _nested(info.annotation)
        if nested is None:
            keys.append(prefix + name)
        else:
            keys.extend(schema_keys(nested[0], f"{prefix}{name}{nested[1]}."))
    return keys


def readme_unused() -> dict[str, str]:
    """The README's table of keys accepted and not used: key -> why."""
    _, heading, rest = README.read_text().partition(UNUSED_HEADING)
    assert heading, f"README.md has no {UNUSED_HEADING!r} section"
    rows: dict[str, str] = {}
    for line in rest.splitlines():
        if line.startswith("#"):
            break
        row = re.fullmatch(r"\| `([^`]+)` \| (.+) \|", line.strip())
        if row:
            rows[row[1]] = row[2].strip()
    return rows


# --- what the checks build ----------------------------------------------------------------------


@dataclass
class Built:
    """What create_app builds from a config for routing and pricing (providers, router, prices)."""

    providers: Providers
    router: Router
    prices: PriceTable

    def deployment(self, alias: str) -> Deployment:
        return self.router.states(alias)[0].deployment

    async def chat(self, alias: str, **body: Any) -> Routed[Reply]:
        async def call(provider: Any, deployment: Deployment, sent: dict[str, Any]) -> Reply:
            reply: Reply = await provider.chat(deployment, sent)
            return reply

        return await self.router.call(self.router.chain(alias), call, {"messages": USER, **body})

    async def stream(self, alias: str) -> list[bytes]:
        async def call(provider: Any, deployment: Deployment, sent: dict[str, Any]) -> Any:
            return await provider.open_stream(deployment, sent)

        sent = {"messages": USER, "stream": True}
        routed = await self.router.call(self.router.chain(alias), call, sent)
        try:
            return [event async for event in routed.value.events()]
        finally:
            await routed.value.aclose()


@dataclass
class Harness:
    upstream: FakeUpstream
    gateway: GatewayFactory
    data_dir: Path
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def tag(self, directives: str) -> str:
        """A model string of its own (the upstream counts calls per exact string)."""
        return f"{directives},id=cf-{self.run}"

    def model(
        self, alias: str, model: str, info: dict[str, Any] | None = None, **params: Any
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "model_name": alias,
            "litellm_params": {"model": f"openai/{model}", "api_base": self.upstream.url, **params},
        }
        if info:
            entry["model_info"] = info
        return entry

    @contextlib.asynccontextmanager
    async def built(self, models: list[dict[str, Any]], **sections: Any) -> AsyncIterator[Built]:
        config = GatewayConfig.model_validate({"model_list": models, **sections})
        deployments = build_deployments(config)
        providers = Providers(config)
        try:
            yield Built(
                providers,
                Router(deployments, config.router_settings, providers),
                PriceTable.for_deployments(deployments),
            )
        finally:
            await providers.aclose()

    def received(self, model: str) -> ReceivedRequest:
        seen = self.upstream.last_request(model)
        assert seen is not None, f"the upstream never received a request for {model!r}"
        return seen


Check = Callable[[Harness], Awaitable[None] | None]


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):  # 10 s at most
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


# --- litellm_params -----------------------------------------------------------------------------


async def model_name(h: Harness) -> None:
    async with h.built([h.model("cf-alias", h.tag("gpt-4o-mini"))]) as b:
        routed = await b.chat("cf-alias")
    assert routed.deployment.alias == "cf-alias"


async def model(h: Harness) -> None:
    upstream_model = h.tag("gpt-4o-mini")
    async with h.built([h.model("cf-model", upstream_model)]) as b:
        await b.chat("cf-model")
    assert h.upstream.calls(upstream_model) == 1  # asked for without the provider prefix


async def api_base(h: Harness) -> None:
    upstream_model = h.tag("gpt-4o-mini")
    async with h.built([h.model("cf-base", upstream_model)]) as b:
        await b.chat("cf-base")
    assert h.received(upstream_model).path == "/v1/chat/completions"  # api_base ends in /v1


async def api_key(h: Harness) -> None:
    upstream_model = h.tag("gpt-4o-mini")
    async with h.built([h.model("cf-key", upstream_model, api_key="sk-cf")]) as b:
        await b.chat("cf-key")
    assert h.received(upstream_model).headers["authorization"] == "Bearer sk-cf"


async def api_version(h: Harness) -> None:
    fast, azure = h.tag("gpt-4o-mini"), h.tag("azure-deployment")
    root = h.upstream.url.removesuffix("/v1")  # Azure's paths start at /openai/deployments/
    azure_entry = {
        "model_name": "cf-azure",
        "litellm_params": {
            "model": f"azure/{azure}",
            "api_base": root,
            "api_key": "azure-key",
            "api_version": "2099-01-01-cf",
        },
    }
    fast_entry = h.model("cf-fast-version", fast, api_version="2099-01-01-cf")
    async with h.built([azure_entry, fast_entry]) as b:
        await b.chat("cf-azure")  # through litellm, whose azure/ provider builds Azure's URL
        await b.chat("cf-fast-version")
    seen = h.received(azure)
    assert seen.path == f"/openai/deployments/{azure}/chat/completions"
    assert seen.query["api-version"] == "2099-01-01-cf"  # litellm's own default otherwise
    assert h.received(fast).query == {"api-version": "2099-01-01-cf"}


async def organization(h: Harness) -> None:
    fast, via_litellm = h.tag("gpt-4o-mini"), h.tag("through-litellm")
    models = [
        h.model("cf-org", fast, organization="org-cf"),
        h.model(
            "cf-org-litellm",
            via_litellm,
            info={"transport": "litellm"},
            organization="org-cf",
            api_key="sk-cf",
        ),
    ]
    async with h.built(models) as b:
        await b.chat("cf-org")
        await b.chat("cf-org-litellm")
    assert h.received(fast).headers["openai-organization"] == "org-cf"
    assert h.received(via_litellm).headers["openai-organization"] == "org-cf"


async def weight(h: Harness) -> None:
    chosen, never = h.tag("chosen"), h.tag("never")
    models = [h.model("cf-weight", never, weight=0), h.model("cf-weight", chosen, weight=1)]
    async with h.built(models) as b:
        for _ in range(6):
            await b.chat("cf-weight")
    assert (h.upstream.calls(chosen), h.upstream.calls(never)) == (6, 0)


def rpm(h: Harness) -> None:
    upstream_model = h.tag("gpt-4o-mini")
    client = sdk(h.gateway({"model_list": [h.model("cf-rpm", upstream_model, rpm=1)]}))
    client.chat.completions.create(model="cf-rpm", messages=USER)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="cf-rpm", messages=USER)  # type: ignore[arg-type]
    assert h.upstream.calls(upstream_model) == 1


def tpm(h: Harness) -> None:
    upstream_model = h.tag("gpt-4o-mini")
    client = sdk(h.gateway({"model_list": [h.model("cf-tpm", upstream_model, tpm=1000)]}))
    client.chat.completions.create(model="cf-tpm", messages=USER, max_tokens=10)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError):  # 2000 tokens reserved against 1000 a minute
        client.chat.completions.create(model="cf-tpm", messages=USER, max_tokens=2000)  # type: ignore[arg-type]
    assert h.upstream.calls(upstream_model) == 1


async def timeout(h: Harness) -> None:
    models = [h.model("cf-timeout", h.tag("hang"), timeout=0.2)]
    async with h.built(models, router_settings={"num_retries": 0}) as b:
        with pytest.raises(UpstreamTimeout):  # the router's 60 s otherwise
            await b.chat("cf-timeout")


async def stream_timeout(h: Harness) -> None:
    models = [h.model("cf-stall", h.tag("stall=1"), stream_timeout=0.2)]
    async with h.built(models, router_settings={"num_retries": 0}) as b:
        with pytest.raises(UpstreamTimeout):
            await b.stream("cf-stall")


async def max_retries(h: Harness) -> None:
    flaky = h.tag("fail_first=2")
    router = {"num_retries": 0, "retry_after": 0, "max_retry_wait": 0.05}
    async with h.built([h.model("cf-retries", flaky, max_retries=2)], router_settings=router) as b:
        routed = await b.chat("cf-retries")  # no router retries: the deployment's own ones
    assert h.upstream.calls(flaky) == 3
    assert routed.attempts == 3


async def extra_headers(h: Harness) -> None:
    upstream_model = h.tag("gpt-4o-mini")
    entry = h.model("cf-headers", upstream_model, extra_headers={"X-Cf-Check": "arrived"})
    async with h.built([entry]) as b:
        await b.chat("cf-headers")
    assert h.received(upstream_model).headers["x-cf-check"] == "arrived"


def tags(h: Harness) -> None:
    untagged, paid = h.tag("untagged"), h.tag("paid")
    models = [h.model("cf-tags", untagged), h.model("cf-tags", paid, tags=["paid"])]
    base = h.gateway({"model_list": models, "router_settings": {"enable_tag_filtering": True}})
    for _ in range(4):
        sdk(base).chat.completions.create(
            model="cf-tags",
            messages=USER,  # type: ignore[arg-type]
            extra_body={"metadata": {"tags": ["paid"]}},
        )
    assert (h.upstream.calls(paid), h.upstream.calls(untagged)) == (4, 0)


# --- model_info ---------------------------------------------------------------------------------


async def model_info_id(h: Harness) -> None:
    async with h.built([h.model("cf-id", h.tag("gpt-4o-mini"), info={"id": "cf-one"})]) as b:
        routed = await b.chat("cf-id")
    assert routed.deployment.id == "cf-one"  # x-gateway-model, request log, limits, prices


async def base_model(h: Harness) -> None:
    entries = orjson.loads(price_map_path().read_bytes())  # type: ignore[union-attr]
    listed = entries["gpt-4o-mini"]
    models = [
        h.model("cf-based", h.tag("my-own-name"), info={"base_model": "gpt-4o-mini"}),
        h.model("cf-unbased", h.tag("my-own-name")),
    ]
    async with h.built(models) as b:
        price = b.prices.price(b.deployment("cf-based"))
        assert b.prices.price(b.deployment("cf-unbased")) is None  # the name alone is unknown
    assert price is not None
    assert (price.input, price.output) == (
        listed["input_cost_per_token"],
        listed["output_cost_per_token"],
    )
    assert price.cached_input == listed["cache_read_input_token_cost"]


async def input_cost_per_token(h: Harness) -> None:
    entry = h.model("cf-in", h.tag("gpt-4o-mini"), info={"input_cost_per_token": 0.001})
    async with h.built([entry]) as b:
        routed = await b.chat("cf-in")
        usage = routed.value.usage
        assert usage is not None
        assert usage.prompt_tokens > 0
        assert b.prices.cost(routed.deployment, usage) == pytest.approx(usage.prompt_tokens / 1000)


async def output_cost_per_token(h: Harness) -> None:
    entry = h.model("cf-out", h.tag("gpt-4o-mini"), info={"output_cost_per_token": 0.001})
    async with h.built([entry]) as b:
        routed = await b.chat("cf-out")
        usage = routed.value.usage
        assert usage is not None
        assert usage.completion_tokens > 0
        cost = b.prices.cost(routed.deployment, usage)
        assert cost == pytest.approx(usage.completion_tokens / 1000)


async def cache_read_input_token_cost(h: Harness) -> None:
    info = {"input_cost_per_token": 1e-3, "cache_read_input_token_cost": 1e-4}
    async with h.built([h.model("cf-cache", h.tag("gpt-4o-mini"), info=info)]) as b:
        cost = b.prices.cost(b.deployment("cf-cache"), Usage(100, 0, cached_tokens=40))
    assert cost == pytest.approx(60 * 1e-3 + 40 * 1e-4)  # cached tokens are among the prompt's


async def output_cost_per_reasoning_token(h: Harness) -> None:
    info = {"output_cost_per_token": 1e-3, "output_cost_per_reasoning_token": 5e-3}
    async with h.built([h.model("cf-reason", h.tag("gpt-4o-mini"), info=info)]) as b:
        cost = b.prices.cost(b.deployment("cf-reason"), Usage(0, 50, reasoning_tokens=20))
    assert cost == pytest.approx(30 * 1e-3 + 20 * 5e-3)  # reasoning is among the completion's


async def _cost(h: Harness, usage: Usage, info: dict[str, Any] | None, **params: Any) -> float:
    """What a deployment with these prices charges for this usage."""
    async with h.built([h.model("cf-priced", h.tag("gpt-4o-mini"), info=info, **params)]) as b:
        return b.prices.cost(b.deployment("cf-priced"), usage)


async def model_info_cache_creation_input_token_cost(h: Harness) -> None:
    info = {"input_cost_per_token": 1e-3, "cache_creation_input_token_cost": 2e-3}
    cost = await _cost(h, Usage(100, 0, cache_creation_tokens=30), info)
    assert cost == pytest.approx(70 * 1e-3 + 30 * 2e-3)  # cache writes are among the prompt's


async def params_input_cost_per_token(h: Harness) -> None:
    info = {"input_cost_per_token": 0.5}  # litellm_params' price wins, as in LiteLLM
    cost = await _cost(h, Usage(100, 10), info, input_cost_per_token=1e-3)
    assert cost == pytest.approx(100 * 1e-3)  # and the unset output rate is 0, as in LiteLLM


async def params_output_cost_per_token(h: Harness) -> None:
    cost = await _cost(h, Usage(100, 10), None, output_cost_per_token=1e-3)
    assert cost == pytest.approx(10 * 1e-3)


async def params_cache_read_input_token_cost(h: Harness) -> None:
    prices = {"input_cost_per_token": 1e-3, "cache_read_input_token_cost": 1e-4}
    cost = await _cost(h, Usage(100, 0, cached_tokens=40), None, **prices)
    assert cost == pytest.approx(60 * 1e-3 + 40 * 1e-4)


async def params_cache_creation_input_token_cost(h: Harness) -> None:
    prices = {"input_cost_per_token": 1e-3, "cache_creation_input_token_cost": 2e-3}
    cost = await _cost(h, Usage(100, 0, cache_creation_tokens=30), None, **prices)
    assert cost == pytest.approx(70 * 1e-3 + 30 * 2e-3)


async def params_output_cost_per_reasoning_token(h: Harness) -> None:
    prices = {"output_cost_per_token": 1e-3, "output_cost_per_reasoning_token": 5e-3}
    cost = await _cost(h, Usage(0, 50, reasoning_tokens=20), None, **prices)
    assert cost == pytest.approx(30 * 1e-3 + 20 * 5e-3)


async def params_base_model(h: Harness) -> None:
    listed = orjson.loads(price_map_path().read_bytes())["gpt-4o"]  # type: ignore[union-attr]
    models = [h.model("cf-params-based", h.tag("my-own-name"), base_model="gpt-4o")]
    async with h.built(models) as b:
        price = b.prices.price(b.deployment("cf-params-based"))
    assert price is not None
    assert (price.input, price.output) == (
        listed["input_cost_per_token"],
        listed["output_cost_per_token"],
    )


def _limited(h: Harness, entry: dict[str, Any], rpm: bool) -> None:
    """One call passes and the next is refused by the deployment's own limit."""
    upstream_model = entry["litellm_params"]["model"].removeprefix("openai/")
    client = sdk(h.gateway({"model_list": [entry]}))
    alias = entry["model_name"]
    first, second = (10, 10) if rpm else (10, 2000)  # 2000 tokens reserved against 1000/min
    client.chat.completions.create(model=alias, messages=USER, max_tokens=first)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=alias, messages=USER, max_tokens=second)  # type: ignore[arg-type]
    assert h.upstream.calls(upstream_model) == 1


def entry_rpm(h: Harness) -> None:
    entry = h.model("cf-entry-rpm", h.tag("gpt-4o-mini"), rpm=1000)
    _limited(h, {**entry, "rpm": 1}, rpm=True)  # the entry's limit wins over litellm_params'


def entry_tpm(h: Harness) -> None:
    _limited(h, {**h.model("cf-entry-tpm", h.tag("gpt-4o-mini")), "tpm": 1000}, rpm=False)


def model_info_rpm(h: Harness) -> None:
    _limited(h, h.model("cf-info-rpm", h.tag("gpt-4o-mini"), info={"rpm": 1}), rpm=True)


def model_info_tpm(h: Harness) -> None:
    _limited(h, h.model("cf-info-tpm", h.tag("gpt-4o-mini"), info={"tpm": 1000}), rpm=False)


async def transport(h: Harness) -> None:
    upstream_model = h.tag("gpt-4o-mini")
    entry = h.model("cf-litellm", upstream_model, info={"transport": "litellm"}, api_key="k")
    async with h.built([entry]) as b:
        deployment = b.deployment("cf-litellm")
        assert b.providers.for_deployment(deployment) is b.providers.litellm
        await b.chat("cf-litellm")
    assert h.upstream.calls(upstream_model) == 1


# --- router_settings ----------------------------------------------------------------------------


async def routing_strategy(h: Harness) -> None:
    busy, idle = h.tag("hang"), h.tag("gpt-4o-mini")
    models = [h.model("cf-busy", busy), h.model("cf-busy", idle)]
    router = {"routing_strategy": "least-busy", "num_retries": 0}
    async with h.built(models, router_settings=router) as b:
        hung = asyncio.create_task(b.chat("cf-busy"))  # a tie: least-busy takes the first
        await _until(lambda: h.upstream.in_flight(busy) == 1)
        for _ in range(4):
            await b.chat("cf-busy")
        hung.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hung
    assert (h.upstream.calls(busy), h.upstream.calls(idle)) == (1, 4)


async def num_retries(h: Harness) -> None:
    broken = h.tag("status=500")
    router = {"num_retries": 1, "allowed_fails": 10, "max_retry_wait": 0.05}
    async with h.built([h.model("cf-numretries", broken)], router_settings=router) as b:
        with pytest.raises(UpstreamError):
            await b.chat("cf-numretries")
    assert h.upstream.calls(broken) == 2  # 3 with the default of 2


async def router_timeout(h: Harness) -> None:
    router = {"timeout": 0.2, "num_retries": 0}
    async with h.built([h.model("cf-rtimeout", h.tag("hang"))], router_settings=router) as b:
        with pytest.raises(UpstreamTimeout):
            await b.chat("cf-rtimeout")


async def router_stream_timeout(h: Harness) -> None:
    router = {"stream_timeout": 0.2, "num_retries": 0}
    async with h.built([h.model("cf-rstall", h.tag("stall=1"))], router_settings=router) as b:
        with pytest.raises(UpstreamTimeout):
            await b.stream("cf-rstall")


async def fallbacks(h: Harness) -> None:
    models = [h.model("cf-primary", h.tag("status=500")), h.model("cf-backup", h.tag("ok"))]
    router = {"num_retries": 0, "fallbacks": [{"cf-primary": ["cf-backup"]}]}
    async with h.built(models, router_settings=router) as b:
        routed = await b.chat("cf-primary")
    assert routed.deployment.alias == "cf-backup"


async def allowed_fails(h: Harness) -> None:
    broken = h.tag("status=500")
    router = {"allowed_fails": 1, "num_retries": 0}
    async with h.built([h.model("cf-fails", broken)], router_settings=router) as b:
        for _ in range(2):  # more than one failure cools it down
            with pytest.raises(UpstreamError):
                await b.chat("cf-fails")
        with pytest.raises(UpstreamUnavailable, match="cooling down"):
            await b.chat("cf-fails")  # the default of 3 would still try it
    assert h.upstream.calls(broken) == 2


async def cooldown_time(h: Harness) -> None:
    broken = h.tag("status=500")
    router = {"allowed_fails": 0, "cooldown_time": 0, "num_retries": 0}
    async with h.built([h.model("cf-cooldown", broken)], router_settings=router) as b:
        for _ in range(2):
            with pytest.raises(UpstreamError):
                await b.chat("cf-cooldown")  # the default 5 s would refuse the second
    assert h.upstream.calls(broken) == 2


async def retry_after(h: Harness) -> None:
    router = {"retry_after": 0.2, "num_retries": 1}
    async with h.built([h.model("cf-wait", h.tag("fail_first=1"))], router_settings=router) as b:
        routed = await b.chat("cf-wait")
    # upstream_seconds adds each backoff wait as chosen (not as measured): exact, not timing.
    assert routed.attempts == 2
    assert routed.upstream_seconds >= 0.2


async def max_retry_wait(h: Harness) -> None:
    limited = h.tag("status=429,retry_after=1")
    router = {"max_retry_wait": 0.5, "num_retries": 1}
    async with h.built([h.model("cf-maxwait", limited)], router_settings=router) as b:
        with pytest.raises(RateLimited):
            await b.chat("cf-maxwait")
    assert h.upstream.calls(limited) == 1  # the default 2 s would sit out the 1 s and retry


def max_input_tokens(h: Harness) -> None:
    small, large = h.tag("gpt-4o-mini"), h.tag("gpt-4o")
    config = {
        "model_list": [
            h.model("cf-window", small, {"max_input_tokens": 20}),
            h.model("cf-window", large),
        ],
        "router_settings": {"enable_pre_call_checks": True},
    }
    client = sdk(h.gateway(config))
    long = [{"role": "user", "content": "word " * 100}]
    for _ in range(6):
        client.chat.completions.create(model="cf-window", messages=long)  # type: ignore[arg-type]
    assert (h.upstream.calls(small), h.upstream.calls(large)) == (0, 6)


async def context_window_fallbacks(h: Harness) -> None:
    small, regular = h.tag("context=2"), h.tag("gpt-4o-mini")
    models = [h.model("cf-cw", small), h.model("cf-cw-big", h.tag("gpt-4o"))]
    models.append(h.model("cf-cw-regular", regular))
    router = {
        "context_window_fallbacks": [{"cf-cw": ["cf-cw-big"]}],
        "fallbacks": [{"cf-cw": ["cf-cw-regular"]}],
    }
    async with h.built(models, router_settings=router) as b:
        routed = await b.chat("cf-cw")  # "config keys": 2 words are not more than 2
        assert routed.deployment.alias == "cf-cw"
        routed = await b.chat("cf-cw", messages=[{"role": "user", "content": "a b c"}])
    assert routed.deployment.alias == "cf-cw-big"  # the regular fallbacks without it
    assert h.upstream.calls(regular) == 0


async def content_policy_fallbacks(h: Harness) -> None:
    models = [
        h.model("cf-cp", h.tag("status=400,code=content_filter")),
        h.model("cf-cp-lenient", h.tag("gpt-4o-mini")),
    ]
    router = {"content_policy_fallbacks": [{"cf-cp": ["cf-cp-lenient"]}]}
    async with h.built(models, router_settings=router) as b:
        routed = await b.chat("cf-cp")  # a 400 otherwise
    assert routed.deployment.alias == "cf-cp-lenient"


async def default_fallbacks(h: Harness) -> None:
    models = [h.model("cf-df", h.tag("status=500")), h.model("cf-df-any", h.tag("ok"))]
    router = {"num_retries": 0, "default_fallbacks": ["cf-df-any"]}
    async with h.built(models, router_settings=router) as b:
        routed = await b.chat("cf-df")
    assert routed.deployment.alias == "cf-df-any"


async def max_fallbacks(h: Harness) -> None:
    second, third = h.tag("status=500,second"), h.tag("third")
    models = [
        h.model("cf-mf", h.tag("status=500")),
        h.model("cf-mf-2", second),
        h.model("cf-mf-3", third),
    ]
    router = {
        "num_retries": 0,
        "max_fallbacks": 1,
        "fallbacks": [{"cf-mf": ["cf-mf-2", "cf-mf-3"]}],
    }
    async with h.built(models, router_settings=router) as b:
        with pytest.raises(UpstreamError):
            await b.chat("cf-mf")  # the default of 5 would reach cf-mf-3
    assert (h.upstream.calls(second), h.upstream.calls(third)) == (1, 0)


async def disable_cooldowns(h: Harness) -> None:
    broken = h.tag("status=500")
    router = {"allowed_fails": 0, "num_retries": 0, "disable_cooldowns": True}
    async with h.built([h.model("cf-nocool", broken)], router_settings=router) as b:
        for _ in range(3):
            with pytest.raises(UpstreamError):  # not UpstreamUnavailable: cooling down
                await b.chat("cf-nocool")
    assert h.upstream.calls(broken) == 3


def enable_pre_call_checks(h: Harness) -> None:
    small, large = h.tag("gpt-4o-mini"), h.tag("gpt-4o")
    info = {"max_input_tokens": 20}
    config: dict[str, Any] = {
        "model_list": [h.model("cf-pre", small, info), h.model("cf-pre", large)],
        "router_settings": {"enable_pre_call_checks": False},
    }
    client = sdk(h.gateway(config))
    long = [{"role": "user", "content": "word " * 100}]
    for _ in range(30):
        client.chat.completions.create(model="cf-pre", messages=long)  # type: ignore[arg-type]
    assert h.upstream.calls(small) > 0  # on, none would reach it (see max_input_tokens)


def _metered_call(h: Harness, router: dict[str, Any], **settings: Any) -> int:
    """The status of a call whose key has a rate limit (so the meter's store decides)."""
    config = {"model_list": [h.model("cf-redis", h.tag("gpt-4o-mini"))], "router_settings": router}
    base = h.gateway(config, redis_prefix=f"gwtest:cf-{h.run}:", **settings)
    created = httpx.post(f"{base}/v1/keys", json={"rpm_limit": 1}, headers=ADMIN)
    client = sdk(base, key=created.json()["key"])
    try:
        client.chat.completions.create(model="cf-redis", messages=USER)  # type: ignore[arg-type]
    except openai.APIStatusError as exc:
        return exc.status_code
    return 200


def _redis_address() -> tuple[str, int]:
    parsed = httpx.URL(REDIS_URL)
    return parsed.host, parsed.port or 6379


def redis_host(h: Harness) -> None:
    host, port = _redis_address()
    router = {"redis_host": host, "redis_port": port}
    assert _metered_call(h, router) == 200
    # A second replica's call shares that Redis's count: the key's rpm_limit of 1 is spent.
    config = {"model_list": [h.model("cf-redis", h.tag("gpt-4o-mini"))], "router_settings": router}
    first = h.gateway(config, redis_prefix=f"gwtest:cf-{h.run}:shared:")
    second = h.gateway(config, redis_prefix=f"gwtest:cf-{h.run}:shared:")
    key = httpx.post(f"{first}/v1/keys", json={"rpm_limit": 1}, headers=ADMIN).json()["key"]
    sdk(first, key=key).chat.completions.create(model="cf-redis", messages=USER)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError):
        sdk(second, key=key).chat.completions.create(model="cf-redis", messages=USER)  # type: ignore[arg-type]


def redis_port(h: Harness) -> None:
    host, _ = _redis_address()
    # Nothing listens on port 1: the meter cannot reach it and refuses (fail closed).
    assert _metered_call(h, {"redis_host": host, "redis_port": 1}) == 503


def redis_password(h: Harness) -> None:
    host, port = _redis_address()
    # The test Redis has no password: it refuses the AUTH the password makes the client send,
    # and the meter's store fails (a Redis that answers with an error is a 500, logged).
    router = {"redis_host": host, "redis_port": port, "redis_password": "not-this-one"}
    assert _metered_call(h, router) == 500


def redis_url(h: Harness) -> None:
    assert _metered_call(h, {"redis_url": REDIS_URL}) == 200
    assert _metered_call(h, {"redis_url": "redis://127.0.0.1:1/0"}) == 503


def provider_budget_config(h: Harness) -> None:
    budgets = {"openai": {"budget_limit": 100, "time_period": "1d"}}
    with pytest.raises(ValidationError, match="provider budgets are not supported"):
        GatewayConfig.model_validate({"router_settings": {"provider_budget_config": budgets}})


def _retry_policy_check(name: str, directives: str, error: type[GatewayError]) -> Check:
    async def check(h: Harness) -> None:
        failing = h.tag(directives)
        router = {
            "num_retries": 0,
            "max_retry_wait": 0.01,
            "disable_cooldowns": True,
            "retry_policy": {name: 2},
        }
        async with h.built([h.model("cf-retry", failing)], router_settings=router) as b:
            with pytest.raises(error):
                await b.chat("cf-retry")
        assert h.upstream.calls(failing) == 3  # num_retries: 0 alone would make it 1

    return check


def _allowed_fails_check(name: str, directives: str, error: type[GatewayError]) -> Check:
    async def check(h: Harness) -> None:
        failing = h.tag(directives)
        router = {
            "num_retries": 0,
            "allowed_fails": 0,
            "cooldown_time": 60,
            "allowed_fails_policy": {name: 2},
        }
        async with h.built([h.model("cf-fails", failing)], router_settings=router) as b:
            for _ in range(3):
                with pytest.raises(error) as failed:
                    await b.chat("cf-fails")
                assert "cooling down" not in failed.value.message
            with pytest.raises(UpstreamUnavailable, match="cooling down"):
                await b.chat("cf-fails")
        assert h.upstream.calls(failing) == 3  # allowed_fails: 0 alone would make it 1

    return check


# Each kind of failure the policies name, as the upstream answers it, and the error it becomes.
FAILURES: dict[str, tuple[str, type[GatewayError]]] = {
    "BadRequest": ("status=400", BadRequest),
    "Authentication": ("status=401", UpstreamError),
    "Timeout": ("status=408", UpstreamTimeout),
    "RateLimit": ("status=429", RateLimited),
    "ContentPolicyViolation": ("status=400,code=content_filter", BadRequest),
    "InternalServer": ("status=500", UpstreamError),
    "ServiceUnavailable": ("status=503", UpstreamUnavailable),
    "BadGateway": ("status=502", UpstreamError),
    "NotFound": ("status=404", UpstreamError),
}
POLICY_CHECKS: dict[str, Check] = {
    f"router_settings.retry_policy.{kind}ErrorRetries": _retry_policy_check(
        f"{kind}ErrorRetries", *FAILURES[kind]
    )
    for kind in FAILURES
    if kind != "BadGateway"
}
# A 502 is no kind RetryPolicy names: DefaultRetries covers it.
POLICY_CHECKS["router_settings.retry_policy.DefaultRetries"] = _retry_policy_check(
    "DefaultRetries", *FAILURES["BadGateway"]
)
POLICY_CHECKS |= {
    f"router_settings.allowed_fails_policy.{kind}ErrorAllowedFails": _allowed_fails_check(
        f"{kind}ErrorAllowedFails", *FAILURES[kind]
    )
    for kind in FAILURES
    # A caller's bad request never cools a deployment down (README: keys not used).
    if kind not in ("BadRequest", "ContentPolicyViolation")
}


async def model_group_alias(h: Harness) -> None:
    router = {"model_group_alias": {"cf-old-name": {"model": "cf-group", "hidden": True}}}
    async with h.built([h.model("cf-group", h.tag("gpt-4o-mini"))], router_settings=router) as b:
        routed = await b.chat("cf-old-name")
        assert "cf-old-name" not in b.router.listed()
    assert routed.deployment.alias == "cf-group"


def _tagged_call(h: Harness, models: list[dict[str, Any]], router: dict[str, Any]) -> None:
    base = h.gateway({"model_list": models, "router_settings": router})
    sdk(base).chat.completions.create(
        model="cf-tag-setting",
        messages=USER,  # type: ignore[arg-type]
        extra_body={"tags": ["paid", "eu"]},
    )


def enable_tag_filtering(h: Harness) -> None:
    chosen, tagged = h.tag("by-weight"), h.tag("by-tag")
    models = [
        h.model("cf-tag-setting", chosen, weight=1),
        h.model("cf-tag-setting", tagged, weight=0, tags=["paid"]),
    ]
    _tagged_call(h, models, {"enable_tag_filtering": True})
    assert (h.upstream.calls(tagged), h.upstream.calls(chosen)) == (1, 0)  # weight 0 else


def tag_filtering_match_any(h: Harness) -> None:
    some, every = h.tag("some-tags"), h.tag("every-tag")
    models = [
        h.model("cf-tag-setting", some, weight=1, tags=["paid"]),
        h.model("cf-tag-setting", every, weight=0, tags=["paid", "eu"]),
    ]
    _tagged_call(h, models, {"enable_tag_filtering": True, "tag_filtering_match_any": False})
    assert (h.upstream.calls(every), h.upstream.calls(some)) == (1, 0)  # both match any tag


# --- gateway ------------------------------------------------------------------------------------


def max_body_bytes(h: Harness) -> None:
    base = h.gateway({"model_list": [], "gateway": {"max_body_bytes": 2048}})
    big = {"model": "any", "messages": [{"role": "user", "content": "x" * 4000}]}
    response = httpx.post(f"{base}/v1/chat/completions", json=big, headers=ADMIN)
    assert response.status_code == 413  # 8 MiB by default


def default_max_tokens(h: Harness) -> None:
    config = {
        "model_list": [h.model("cf-default", h.tag("gpt-4o-mini"))],
        "gateway": {"default_max_tokens": 5000},
    }
    base = h.gateway(config)
    created = httpx.post(f"{base}/v1/keys", json={"tpm_limit": 4500}, headers=ADMIN)
    client = sdk(base, key=created.json()["key"])
    client.chat.completions.create(model="cf-default", messages=USER, max_tokens=10)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError):  # 5000 reserved; the default 4096 would fit
        client.chat.completions.create(model="cf-default", messages=USER)  # type: ignore[arg-type]


def cap_max_tokens_to_budget(h: Harness) -> None:
    # $0.01 cannot cover the default 4,096 completion tokens at $10 a million: on (the
    # default) the call is capped to fit, off it is refused.
    prices = {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-5}
    clients = []
    for on in (True, False):
        config = {
            "model_list": [h.model("cf-cap", h.tag("gpt-4o-mini,fill"), prices)],
            "gateway": {"cap_max_tokens_to_budget": on},
        }
        base = h.gateway(config)
        created = httpx.post(f"{base}/v1/keys", json={"max_budget": 0.01}, headers=ADMIN)
        clients.append(sdk(base, key=created.json()["key"]))
    capping, refusing = clients
    raw = capping.chat.completions.with_raw_response.create(model="cf-cap", messages=USER)  # type: ignore[arg-type]
    assert int(raw.headers["x-gateway-max-tokens-capped"]) < 1000
    with pytest.raises(openai.RateLimitError, match="Set max_tokens to"):
        refusing.chat.completions.create(model="cf-cap", messages=USER)  # type: ignore[arg-type]


def log_bodies(h: Harness) -> None:
    config = {
        "model_list": [h.model("cf-bodies", h.tag("gpt-4o-mini"))],
        "gateway": {"log_bodies": True},
    }
    sdk(h.gateway(config)).chat.completions.create(model="cf-bodies", messages=USER)  # type: ignore[arg-type]
    database = h.data_dir / "gateway.db"
    deadline = time.monotonic() + 10
    row = None
    while row is None and time.monotonic() < deadline:
        with (
            contextlib.closing(sqlite3.connect(database)) as connection,
            contextlib.suppress(sqlite3.OperationalError),  # before the first migration
        ):
            row = connection.execute("SELECT request_body FROM request_log").fetchone()
        time.sleep(0.05)
    assert row is not None
    assert "config keys" in row[0]


async def cost_per_1k_predictions(h: Harness) -> None:
    entry = {
        "model_name": "cf-infer",
        "litellm_params": {"model": "v2/cf-model", "api_base": h.upstream.url},
        "model_info": {"cost_per_1k_predictions": 2.0},
    }
    async with h.built([entry]) as b:
        assert b.prices.prediction_cost(b.deployment("cf-infer"), 500) == pytest.approx(1.0)


def max_batch_size(h: Harness) -> None:
    from tests.test_classic_batching import batch_sizes

    info = {"max_batch_size": 2, "max_batch_time": 5.0}
    # Four calls at once: two full batches, each sent as soon as it is full.
    assert batch_sizes(h.gateway, h.data_dir.parent, info, calls=4) == [2, 2]


def max_batch_time(h: Harness) -> None:
    from tests.test_classic_batching import batch_sizes

    info = {"max_batch_size": 64, "max_batch_time": 1.0}
    # Far from full: the calls that arrive within the window go together.
    assert batch_sizes(h.gateway, h.data_dir.parent, info, calls=3) == [3]


async def max_response_bytes(h: Harness) -> None:
    entry = h.model("cf-big", h.tag("pad=4000"))
    async with h.built([entry], gateway={"max_response_bytes": 1024}) as b:
        with pytest.raises(UpstreamError) as caught:
            await b.chat("cf-big")
    assert "max_response_bytes" in caught.value.message


def _recovering(h: Harness, prefill: bool, **sections: Any) -> tuple[str, str]:
    """A stream of "cf-recover" cut on its first deployment and continued on the second (of
    weight 0: chosen only once the first is left out); returns the answer and the spare."""
    broken, spare = h.tag("cut=2"), h.tag("gpt-4o-mini")
    config = {
        "model_list": [
            h.model("cf-recover", broken, weight=1),
            h.model("cf-recover", spare, {"supports_assistant_prefill": prefill}, weight=0),
        ],
        **(sections or {"gateway": {"stream_recovery": {"cf-recover": True}}}),
    }
    stream = sdk(h.gateway(config)).chat.completions.create(
        model="cf-recover",
        messages=USER,  # type: ignore[arg-type]
        stream=True,
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices), spare


def stream_recovery(h: Harness) -> None:
    answer, _ = _recovering(h, prefill=True)
    assert answer == "echo: config keys"  # an error event midway without it


def enable_mid_stream_fallback_continuation(h: Harness) -> None:
    router = {"enable_mid_stream_fallback_continuation": True}
    answer, _ = _recovering(h, prefill=True, router_settings=router)
    assert answer == "echo: config keys"


def supports_assistant_prefill(h: Harness) -> None:
    for prefill in (True, False):
        _, spare = _recovering(h, prefill)
        sent = h.upstream.last_body(spare)
        assert sent is not None
        # With it: the text as a prefix to continue; without: a request to go on after it.
        assert (sent["messages"][-1].get("prefix") is True) is prefill
        assert (sent["messages"][-1]["role"] == "user") is not prefill


# --- LiteLLM's sections beside model_list ------------------------------------------------------


def environment_variables(h: Harness) -> None:
    upstream_model = h.tag("gpt-4o-mini")
    entry = h.model("cf-env", upstream_model, api_key="os.environ/CF_ENV_KEY")
    config = {"environment_variables": {"CF_ENV_KEY": "sk-from-file"}, "model_list": [entry]}
    try:
        sdk(h.gateway(config)).chat.completions.create(model="cf-env", messages=USER)  # type: ignore[arg-type]
    finally:
        os.environ.pop("CF_ENV_KEY", None)  # serving set it, as LiteLLM does
    assert h.received(upstream_model).headers["authorization"] == "Bearer sk-from-file"


def credential_list(h: Harness) -> None:
    upstream_model = h.tag("gpt-4o-mini")
    entry = h.model("cf-cred", upstream_model, litellm_credential_name="cf-credential")
    credential = {"credential_name": "cf-credential", "credential_values": {"api_key": "sk-cred"}}
    config = {"credential_list": [credential], "model_list": [entry]}
    sdk(h.gateway(config)).chat.completions.create(model="cf-cred", messages=USER)  # type: ignore[arg-type]
    assert h.received(upstream_model).headers["authorization"] == "Bearer sk-cred"


def general_settings(h: Harness) -> None:
    config = {
        "model_list": [h.model("cf-general", h.tag("gpt-4o-mini"))],
        "general_settings": {"master_key": "sk-cf-litellm-master"},
    }
    base = h.gateway(config, master_key=None)  # GATEWAY_MASTER_KEY unset: the file's key
    client = sdk(base, key="sk-cf-litellm-master")
    client.chat.completions.create(model="cf-general", messages=USER)  # type: ignore[arg-type]
    with pytest.raises(openai.AuthenticationError):
        sdk(base).chat.completions.create(model="cf-general", messages=USER)  # type: ignore[arg-type]


CHECKS: dict[str, Check] = {
    "model_list[].model_name": model_name,
    "model_list[].litellm_params.model": model,
    "model_list[].litellm_params.api_base": api_base,
    "model_list[].litellm_params.api_key": api_key,
    "model_list[].litellm_params.api_version": api_version,
    "model_list[].litellm_params.organization": organization,
    "model_list[].litellm_params.weight": weight,
    "model_list[].litellm_params.rpm": rpm,
    "model_list[].litellm_params.tpm": tpm,
    "model_list[].litellm_params.timeout": timeout,
    "model_list[].litellm_params.stream_timeout": stream_timeout,
    "model_list[].litellm_params.max_retries": max_retries,
    "model_list[].litellm_params.extra_headers": extra_headers,
    "model_list[].litellm_params.tags": tags,
    "model_list[].litellm_params.input_cost_per_token": params_input_cost_per_token,
    "model_list[].litellm_params.output_cost_per_token": params_output_cost_per_token,
    "model_list[].litellm_params.cache_read_input_token_cost": params_cache_read_input_token_cost,
    "model_list[].litellm_params.cache_creation_input_token_cost": (
        params_cache_creation_input_token_cost
    ),
    "model_list[].litellm_params.output_cost_per_reasoning_token": (
        params_output_cost_per_reasoning_token
    ),
    "model_list[].litellm_params.base_model": params_base_model,
    "model_list[].rpm": entry_rpm,
    "model_list[].tpm": entry_tpm,
    "model_list[].model_info.id": model_info_id,
    "model_list[].model_info.base_model": base_model,
    "model_list[].model_info.input_cost_per_token": input_cost_per_token,
    "model_list[].model_info.output_cost_per_token": output_cost_per_token,
    "model_list[].model_info.cache_read_input_token_cost": cache_read_input_token_cost,
    "model_list[].model_info.output_cost_per_reasoning_token": output_cost_per_reasoning_token,
    "model_list[].model_info.cache_creation_input_token_cost": (
        model_info_cache_creation_input_token_cost
    ),
    "model_list[].model_info.rpm": model_info_rpm,
    "model_list[].model_info.tpm": model_info_tpm,
    "model_list[].model_info.transport": transport,
    "model_list[].model_info.cost_per_1k_predictions": cost_per_1k_predictions,
    "model_list[].model_info.max_batch_size": max_batch_size,
    "model_list[].model_info.max_batch_time": max_batch_time,
    "model_list[].model_info.supports_assistant_prefill": supports_assistant_prefill,
    "router_settings.routing_strategy": routing_strategy,
    "router_settings.num_retries": num_retries,
    "router_settings.timeout": router_timeout,
    "router_settings.stream_timeout": router_stream_timeout,
    "router_settings.fallbacks": fallbacks,
    "router_settings.allowed_fails": allowed_fails,
    "router_settings.cooldown_time": cooldown_time,
    "router_settings.retry_after": retry_after,
    "router_settings.max_retry_wait": max_retry_wait,
    "model_list[].model_info.max_input_tokens": max_input_tokens,
    "router_settings.context_window_fallbacks": context_window_fallbacks,
    "router_settings.content_policy_fallbacks": content_policy_fallbacks,
    "router_settings.default_fallbacks": default_fallbacks,
    "router_settings.max_fallbacks": max_fallbacks,
    "router_settings.disable_cooldowns": disable_cooldowns,
    "router_settings.enable_pre_call_checks": enable_pre_call_checks,
    "router_settings.redis_host": redis_host,
    "router_settings.redis_port": redis_port,
    "router_settings.redis_password": redis_password,
    "router_settings.redis_url": redis_url,
    "router_settings.provider_budget_config": provider_budget_config,
    **POLICY_CHECKS,
    "router_settings.model_group_alias": model_group_alias,
    "router_settings.enable_tag_filtering": enable_tag_filtering,
    "router_settings.tag_filtering_match_any": tag_filtering_match_any,
    "router_settings.enable_mid_stream_fallback_continuation": (
        enable_mid_stream_fallback_continuation
    ),
    "gateway.max_body_bytes": max_body_bytes,
    "gateway.default_max_tokens": default_max_tokens,
    "gateway.cap_max_tokens_to_budget": cap_max_tokens_to_budget,
    "gateway.log_bodies": log_bodies,
    "gateway.max_response_bytes": max_response_bytes,
    "gateway.stream_recovery": stream_recovery,
    "environment_variables": environment_variables,
    "credential_list[].credential_name": credential_list,
    "credential_list[].credential_values": credential_list,
    "general_settings": general_settings,
}
CHECKS |= DRIFT_CHECKS  # the drift: section's keys (tests/drift_checks.py)

CHECKS.update(INDEX_CHECKS)  # the indexes: section's keys (tests/index_config_checks.py)
CHECKS.update(TRANSPORT_CHECKS)  # TLS and pool keys (tests/transport_config_checks.py)

# These import litellm (about 3 s, once per session).
THROUGH_LITELLM = {
    "model_list[].litellm_params.api_version",
    "model_list[].litellm_params.organization",
    "model_list[].model_info.transport",
}


def test_every_key_is_checked_or_listed_unused() -> None:
    keys = set(schema_keys())
    unused = readme_unused()
    missing = sorted(keys - CHECKS.keys() - unused.keys())
    assert not missing, (
        f"config keys with no consumer check: {missing}. Wire each to the code that should act "
        f"on it and add a check to CHECKS in {Path(__file__).name}, or list it with the reason "
        f"under {UNUSED_HEADING!r} in README.md"
    )
    assert not sorted(CHECKS.keys() & unused.keys()), "a key is both checked and listed unused"
    assert not sorted(CHECKS.keys() - keys), "CHECKS names keys the schema no longer has"
    assert not sorted(unused.keys() - keys), "README lists keys the schema no longer has"
    assert all(unused.values()), "every unused key says why"


def test_the_walk_reaches_every_section() -> None:
    keys = schema_keys()
    for section in ("model_list[].litellm_params.", "model_list[].model_info.", "router_settings."):
        assert any(key.startswith(section) for key in keys), section
    assert "gateway.log_bodies" in keys
    assert "litellm_settings" in keys


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(key, marks=[pytest.mark.slow] if key in THROUGH_LITELLM else [])
        for key in sorted(CHECKS)
    ],
)
def test_key_reaches_its_consumer(
    key: str, gateway: GatewayFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    outcome = CHECKS[key](Harness(upstream, gateway, tmp_path / ".gateway"))
    if inspect.isawaitable(outcome):
        asyncio.run(_bounded(outcome))


async def _bounded(check: Awaitable[None]) -> None:
    try:
        await asyncio.wait_for(check, 60)
    except GatewayError as exc:  # say what the gateway said, not only its type
        raise AssertionError(f"{type(exc).__name__}: {exc.message} ({exc.detail})") from exc
