"""LiteLLM's model info, model groups and deployment health, from the router the gateway
serves with: a key limited to some models sees only those, and only the master key sees
upstream addresses. Credentials are never shown."""

from __future__ import annotations

import math
import time

from gateway.api.litellm_admin.models import (
    DeploymentInfo,
    DeploymentList,
    DeploymentModelInfo,
    DeploymentParams,
    HealthEndpoint,
    HealthReport,
    ModelGroup,
    ModelGroupList,
)
from gateway.core.errors import BadRequest, ModelNotFound
from gateway.identity.auth import Caller
from gateway.providers import Deployment
from gateway.routing.health import DeploymentState
from gateway.state import GatewayState


def _visible(state: GatewayState, caller: Caller) -> list[str]:
    key = caller.key
    return [a for a in state.router.aliases() if key is None or key.allows_model(a)]


def deployment_info(state: GatewayState, d: Deployment, show_base: bool) -> DeploymentInfo:
    price = state.prices.price(d)
    return DeploymentInfo(
        model_name=d.alias,
        litellm_params=DeploymentParams(
            model=d.model,
            api_base=d.api_base if show_base else None,
            api_version=d.api_version,
            organization=d.organization,
            rpm=d.rpm,
            tpm=d.tpm,
            timeout=d.timeout,
            stream_timeout=d.stream_timeout,
            max_retries=d.max_retries,
            weight=d.weight,
        ),
        model_info=DeploymentModelInfo(
            id=d.id,
            mode=d.mode,
            base_model=d.base_model,
            litellm_provider=d.provider,
            input_cost_per_token=price.input if price else None,
            output_cost_per_token=price.output if price else None,
            cache_read_input_token_cost=price.cached_input if price else None,
        ),
    )


def model_info(state: GatewayState, caller: Caller, model_id: str | None) -> DeploymentList:
    """Every deployment the caller may use, in config order; or the one `model_id` names."""
    visible = set(_visible(state, caller))
    shown = [d for d in state.deployments if d.alias in visible]
    if model_id is not None:
        shown = [d for d in shown if d.id == model_id]
        if not shown:
            raise BadRequest(f"Model id = {model_id} not found.", param="litellm_model_id")
    return DeploymentList(
        data=[deployment_info(state, d, caller.is_master) for d in shown],
    )


def _most(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _total(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def model_groups(state: GatewayState, caller: Caller, group: str | None) -> ModelGroupList:
    """An entry per alias: its providers, its highest prices, its summed rpm and tpm (as
    LiteLLM's router reports a model group)."""
    found = []
    for alias in _visible(state, caller):
        if group is not None and alias != group:
            continue
        deployments = [s.deployment for s in state.router.states(alias)]
        prices = [state.prices.price(d) for d in deployments]
        found.append(
            ModelGroup(
                model_group=alias,
                providers=list(dict.fromkeys(d.provider for d in deployments)),
                input_cost_per_token=_most([p.input if p else None for p in prices]),
                output_cost_per_token=_most([p.output if p else None for p in prices]),
                mode=deployments[0].mode,
                tpm=_total([d.tpm for d in deployments]),
                rpm=_total([d.rpm for d in deployments]),
            )
        )
    return ModelGroupList(data=found)


def _endpoint(s: DeploymentState, now: float, show_base: bool) -> HealthEndpoint:
    d = s.deployment
    error = None
    if not s.healthy(now):
        wait = math.ceil(s.cooldown_until - now)
        error = f"cooling down after repeated failures; tried again in {wait} s"
    return HealthEndpoint(
        model=d.model,
        model_id=d.id,
        model_name=d.alias,
        api_base=d.api_base if show_base else None,
        custom_llm_provider=d.provider,
        mode=d.mode,
        rpm=d.rpm,
        tpm=d.tpm,
        error=error,
    )


def health(
    state: GatewayState, caller: Caller, model: str | None, model_id: str | None
) -> HealthReport:
    """Healthy unless cooling down in this process's router; no upstream is called."""
    aliases = _visible(state, caller)
    if model is not None:
        if model not in aliases:
            raise ModelNotFound(f"No model {model!r} to check.", param="model")
        aliases = [model]
    states = [s for a in aliases for s in state.router.states(a)]
    if model_id is not None:
        states = [s for s in states if s.deployment.id == model_id]
        if not states:
            raise ModelNotFound(f"No deployment with model_id {model_id!r}.", param="model_id")
    now = time.monotonic()
    endpoints = [_endpoint(s, now, caller.is_master) for s in states]
    healthy = [e for e in endpoints if e.error is None]
    unhealthy = [e for e in endpoints if e.error is not None]
    return HealthReport(
        healthy_endpoints=healthy,
        unhealthy_endpoints=unhealthy,
        healthy_count=len(healthy),
        unhealthy_count=len(unhealthy),
    )
