"""Providers: the only package that talks to upstreams (and the only one importing litellm)."""

from __future__ import annotations

import logging
from typing import Any

from gateway.classic.serving import VersionSource
from gateway.core.config import GatewayConfig, LiteLLMParams, ModelEntry
from gateway.core.deployment_params import provider_and_model, split_params
from gateway.core.price_keys import declared_prices
from gateway.providers.base import Deployment, Provider, Reply, Stream, Usage, split_model
from gateway.providers.classic import ClassicProvider, is_classic
from gateway.providers.litellm_provider import LiteLLMProvider, warm_in_background
from gateway.providers.local import EMBEDDING_MODELS, LocalProvider
from gateway.providers.openai_compat import OpenAICompatibleProvider, takes_fast_path
from gateway.providers.unapplied import unapplied_settings
from gateway.transport.proxies import Proxies
from gateway.transport.tls import DEFAULT_TLS, TLSOptions

log = logging.getLogger("gateway.providers")

__all__ = [
    "Deployment",
    "Provider",
    "Providers",
    "Reply",
    "Stream",
    "Usage",
    "build_deployments",
    "split_model",
]


def _first(*values: int | None) -> int | None:
    return next((value for value in values if value is not None), None)


def _tls(params: LiteLLMParams, litellm_settings: dict[str, Any]) -> TLSOptions | None:
    """The deployment's TLS settings, litellm_settings' ssl_verify / ssl_certificate being the
    default of every deployment (as LiteLLM's globals are)."""
    verify = params.ssl_verify
    if verify is None:
        verify = litellm_settings.get("ssl_verify")
    certificate = params.ssl_certificate or litellm_settings.get("ssl_certificate")
    options = TLSOptions(
        verify=True if verify is None else verify,
        certificate=certificate,
        certificate_key=params.ssl_certificate_key if params.ssl_certificate else None,
    )
    return None if options == DEFAULT_TLS else options


def _deployment(entry: ModelEntry, index: int, config: GatewayConfig) -> Deployment:
    params = entry.litellm_params
    split = split_params(dict(params.model_extra or {}))
    tls = _tls(params, config.litellm_settings)
    if tls is not None and tls.verify is not True:
        split.litellm["ssl_verify"] = tls.verify  # litellm's providers take it too
    provider, upstream_model = provider_and_model(params.model, params.model_extra)
    router = config.router_settings
    timeout = params.timeout or router.timeout
    info = entry.model_info
    base_url = split.litellm.get("base_url")  # litellm's other name for api_base
    return Deployment(
        id=info.id or f"{entry.model_name}#{index}",
        alias=entry.model_name,
        model=params.model,
        provider=provider,
        upstream_model=upstream_model,
        api_base=params.api_base or (base_url if isinstance(base_url, str) else None),
        api_key=params.api_key,
        api_version=params.api_version,
        organization=params.organization,
        weight=params.weight,
        # LiteLLM's order: on the entry, in litellm_params, in model_info.
        rpm=_first(entry.rpm, params.rpm, info.rpm),
        tpm=_first(entry.tpm, params.tpm, info.tpm),
        timeout=timeout,
        stream_timeout=params.stream_timeout or router.stream_timeout or timeout,
        max_retries=params.max_retries or 0,
        params=split.body,
        litellm_kwargs=split.litellm,
        extra_headers=params.extra_headers or {},
        info_prices=declared_prices(dict(info), info.model_extra),
        param_prices=declared_prices(dict(params), params.model_extra),
        base_model=info.base_model or params.base_model,
        mode=info.mode or "chat",
        tags=tuple(params.tags or ()),
        cost_per_1k_predictions=info.cost_per_1k_predictions,
        max_batch_size=info.max_batch_size,
        max_batch_time=info.max_batch_time,
        tls=tls,
    )


def build_deployments(config: GatewayConfig) -> list[Deployment]:
    return [_deployment(entry, i, config) for i, entry in enumerate(config.model_list)]


class Providers:
    """Picks the implementation for each deployment and owns their connection pools."""

    def __init__(self, config: GatewayConfig, classic: VersionSource | None = None) -> None:
        self.local = LocalProvider()
        section = config.gateway
        self.fast = OpenAICompatibleProvider(
            section.max_response_bytes,
            max_per_host=section.upstream_connections_per_host,
            keepalive=section.upstream_keepalive_seconds,
        )
        self.litellm = LiteLLMProvider()
        # Classic models: registry versions in process (from `classic`), remote v2 and MLflow.
        self.classic = ClassicProvider(classic, config.gateway.max_response_bytes)
        self._forced_litellm = {
            entry.model_info.id or f"{entry.model_name}#{i}"
            for i, entry in enumerate(config.model_list)
            if entry.model_info.transport == "litellm"
        }
        for line in unapplied_settings(config):
            log.warning("%s", line)
        for problem in Proxies.from_environment().problems():
            log.warning("%s; calls to the upstreams it serves will fail", problem)

    def for_deployment(self, deployment: Deployment) -> Provider:
        if deployment.provider == "local":
            return self.local
        if is_classic(deployment):
            return self.classic
        transport = "litellm" if deployment.id in self._forced_litellm else "auto"
        if takes_fast_path(deployment.provider, transport):
            return self.fast
        return self.litellm

    def warm(self, deployments: list[Deployment], preload_embeddings: bool = False) -> None:
        """Starts, in the background, what the first calls would otherwise wait for."""
        if any(self.for_deployment(d) is self.litellm for d in deployments):
            warm_in_background()
        if preload_embeddings and self.serves_local_embeddings(deployments):
            self.local.preload()

    def serves_local_embeddings(self, deployments: list[Deployment]) -> bool:
        return any(
            d.provider == "local" and d.upstream_model in EMBEDDING_MODELS for d in deployments
        )

    async def aclose(self) -> None:
        for provider in (self.fast, self.local, self.litellm, self.classic):
            await provider.aclose()
