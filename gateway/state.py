"""Everything one gateway process holds, built from settings and config by create_app."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from gateway.calls.internal import CHECKS_CALLER, embed
from gateway.calls.pipeline import Pipeline
from gateway.calls.recovery import StreamRecovery
from gateway.core.config import GatewayConfig
from gateway.core.probes import Probe
from gateway.core.settings import Settings
from gateway.drift.queries import QuerySampler, QueryStore
from gateway.drift.service import Drift
from gateway.evals.store import EvalStore
from gateway.identity.auth import Authenticator
from gateway.identity.keys import KeyCache, KeyStore
from gateway.indexes.models import CollectionHealth
from gateway.indexes.monitor import IndexMonitor, WebhookAlerts
from gateway.metering.budgets import MemoryBudgetLedger, RedisBudgetLedger
from gateway.metering.limits import MemoryRateLimiter, RedisRateLimiter
from gateway.metering.meter import Meter
from gateway.metering.prices import PriceTable, assistant_prefill, context_windows, cost_ranks
from gateway.metering.redis_meter import RedisMeterStore
from gateway.metering.stores import LocalMeterStore, MeterStore
from gateway.observability.call_log import CallLog
from gateway.observability.metrics import Metrics
from gateway.observability.request_log import RequestLogWriter, record_price_version
from gateway.observability.spend import seed_budgets
from gateway.observability.traces import Tracing
from gateway.prompts.catalog import PromptCatalog
from gateway.prompts.render import PromptRenderer
from gateway.prompts.served import ServedModels
from gateway.prompts.store import REVERTED, PromptStore
from gateway.providers import Deployment, Providers, build_deployments
from gateway.providers.classic import is_classic
from gateway.registry.llm_versions import LlmVersions
from gateway.registry.served import ServedVersions
from gateway.registry.store import RegistryStore
from gateway.routing.router import Router
from gateway.store.db import database_url, make_engine, migrate
from gateway.store.probe import DatabaseProbe
from gateway.transport.probes import qdrant_probe, redis_probe
from gateway.transport.redis_urls import redis_clients

log = logging.getLogger("gateway")


def _context_windows(config: GatewayConfig, deployments: list[Deployment]) -> dict[str, int]:
    """For router_settings.enable_pre_call_checks: what each deployment's prompt may hold."""
    if not config.router_settings.enable_pre_call_checks:
        return {}
    configured = {
        d.id: entry.model_info.max_input_tokens
        for entry, d in zip(config.model_list, deployments, strict=True)
    }
    windows = context_windows(deployments, configured)
    # A classic model takes tensors, not a prompt: the check never concerns it.
    unknown = [d.id for d in deployments if d.id not in windows and not is_classic(d)]
    if unknown:
        log.warning(
            "enable_pre_call_checks: no context window known for %s (set "
            "model_info.max_input_tokens); the check never skips them",
            ", ".join(unknown),
        )
    return windows


def _stream_recovery(config: GatewayConfig, deployments: list[Deployment]) -> StreamRecovery | None:
    """For gateway.stream_recovery: None when no model name has it on (streams then keep no
    text), else which deployments continue a stream by prefill."""
    names = config.gateway.stream_recovery
    if config.router_settings.enable_mid_stream_fallback_continuation:
        names = {"*": True, **names}  # LiteLLM's switch, unless "*" says otherwise
    if not any(names.values()):
        return None
    configured = {
        d.id: entry.model_info.supports_assistant_prefill
        for entry, d in zip(config.model_list, deployments, strict=True)
    }
    return StreamRecovery(names, assistant_prefill(deployments, configured))


@dataclass
class GatewayState:
    settings: Settings
    config: GatewayConfig
    deployments: list[Deployment]
    providers: Providers
    router: Router
    prices: PriceTable
    auth: Authenticator
    engine: Engine
    keys: KeyStore
    key_cache: KeyCache
    request_log: RequestLogWriter
    database_probe: DatabaseProbe
    meter: Meter
    prompt_store: PromptStore
    prompts: PromptCatalog
    prompt_renderer: PromptRenderer
    evals: EvalStore
    registry: RegistryStore
    metrics: Metrics
    calls: Pipeline
    drift: Drift
    indexes: IndexMonitor
    query_store: QueryStore  # query embeddings sampled for the indexes' query drift
    query_sampler: QuerySampler
    classic_versions: ServedVersions  # registry versions served in process (/v2 infer)
    classic_aliases: frozenset[str]  # aliases of classic models (not listed in /v1/models)
    llm_versions: LlmVersions  # registry/NAME@REF as a chat or embeddings model, in memory
    redis: Any = None
    tracing: Tracing | None = None
    # Readiness reports these dependencies when they are configured (api/health.py).
    redis_probe: Probe | None = None
    qdrant_probe: Probe | None = None

    @classmethod
    def build(cls, settings: Settings, config: GatewayConfig, master_key: str) -> GatewayState:
        deployments = build_deployments(config)
        engine = make_engine(
            database_url(settings.database_url, settings.data_dir), settings.database_timeout
        )
        registry = RegistryStore(engine)
        served = {d.upstream_model for d in deployments if d.provider == "registry"}
        classic_versions = ServedVersions(registry, served)
        providers = Providers(config, classic_versions)
        prices = PriceTable.for_deployments(deployments)
        unavailable = config.report.unavailable({d.alias for d in deployments})
        router = Router(
            deployments,
            config.router_settings,
            providers,
            prices.catalogue,
            unavailable,
            prices=cost_ranks(prices, deployments),
            context_windows=_context_windows(config, deployments),
        )
        keys = KeyStore(engine)
        key_cache = KeyCache(keys)
        store: MeterStore
        redis = None
        # LiteLLM's router_settings.redis_host/_port/_password name the Redis replicas share.
        redis_url = settings.redis_url or config.router_settings.shared_redis_url()
        if redis_url:
            # The URL says which Redis deployment (one server, TLS, Sentinel, Cluster).
            redis, scripts = redis_clients(
                redis_url, settings.redis_prefix, connect_timeout=1.0, timeout=2.0
            )
            prefix, fail_open = settings.redis_prefix, settings.redis_fail_open
            store = RedisMeterStore(
                scripts,
                RedisBudgetLedger(redis, prefix, fail_open=fail_open),
                RedisRateLimiter(redis, prefix, fail_open=fail_open),
                fail_open=fail_open,
                lease_calls=settings.meter_lease_calls,
            )
        else:
            store = LocalMeterStore(MemoryBudgetLedger(), MemoryRateLimiter())
        meter = Meter(
            store,
            prices,
            router.deployments_by_target(),
            config.gateway.default_max_tokens,
            cap_max_tokens_to_budget=config.gateway.cap_max_tokens_to_budget,
            resolve=router.deployments,
        )
        # Messages name the config file alone: any key may read the problems of a sync.
        prompt_store = PromptStore(engine, ServedModels.from_config(config, settings.config.name))
        prompts = PromptCatalog(prompt_store)
        renderer = PromptRenderer()
        request_log = RequestLogWriter(engine, settings.data_dir / "spool")
        metrics = Metrics(models=router.names.known())
        tracing = Tracing(settings.otlp_endpoint) if settings.otlp_endpoint else None
        llm_versions = LlmVersions(registry)
        drift = Drift.build(config.drift, engine, registry, providers.local.embed_texts)
        metrics.add_collector(drift.gauges)
        query_store = QueryStore(engine)
        query_sampler = QuerySampler(
            {c.model for c in config.indexes.collections},
            config.indexes.query_sample_rate,
            query_store,
            skip={CHECKS_CALLER.key_id},  # the gateway's own embeddings: probes, golden queries
        )
        calls = Pipeline(
            router,
            meter,
            prices,
            prompts,
            renderer,
            CallLog(request_log, metrics, tracing),
            log_bodies=config.gateway.log_bodies,
            sampler=drift.sampler,
            recovery=_stream_recovery(config, deployments),
            queries=query_sampler,
            registry=llm_versions,
        )
        indexes = IndexMonitor(
            config,
            settings.config.parent,
            settings.data_dir,
            settings.qdrant_url,
            embed=lambda alias, texts: embed(calls, CHECKS_CALLER, alias, texts),
            on_health=lambda health: _gauges(metrics, health),
            alerts=WebhookAlerts(drift.webhook),
            queries=query_store,
        )
        return cls(
            indexes=indexes,
            query_store=query_store,
            query_sampler=query_sampler,
            prompt_store=prompt_store,
            prompts=prompts,
            prompt_renderer=renderer,
            evals=EvalStore(engine),
            registry=registry,
            classic_versions=classic_versions,
            llm_versions=llm_versions,
            classic_aliases=frozenset(d.alias for d in deployments if is_classic(d)),
            settings=settings,
            config=config,
            deployments=deployments,
            providers=providers,
            router=router,
            prices=prices,
            auth=Authenticator(master_key, key_cache, settings.auth_failures_per_minute),
            engine=engine,
            keys=keys,
            key_cache=key_cache,
            request_log=request_log,
            database_probe=DatabaseProbe(engine, timeout=min(2.0, settings.database_timeout)),
            meter=meter,
            redis=redis,
            redis_probe=redis_probe(redis, settings.redis_prefix) if redis is not None else None,
            qdrant_probe=qdrant_probe(settings.qdrant_url) if settings.qdrant_url else None,
            tracing=tracing,
            metrics=metrics,
            calls=calls,
            drift=drift,
        )

    async def start(self) -> None:
        await asyncio.to_thread(migrate, self.engine)
        await asyncio.to_thread(
            record_price_version, self.engine, self.prices.version, self.prices.entries()
        )
        await self.key_cache.start()
        await self.sync_prompts()
        await self.prompts.start()
        await self.meter.start()
        await seed_budgets(self.engine, self.key_cache, self.meter.store.ledger)
        self.request_log.start()
        await self.classic_versions.start()
        await self.llm_versions.start()
        if self.tracing is not None:
            self.tracing.start()
        self.metrics.start()
        await self.drift.start()
        self.query_sampler.start()
        self.providers.warm(self.deployments, self.settings.preload_embeddings)
        if self.settings.index_checks:
            self.indexes.start()  # periodic, each in a worker process

    async def sync_prompts(self) -> None:
        """Registers new versions from the working tree; a broken file is reported, and the
        versions already registered keep serving."""
        if not self.settings.prompts_dir.is_dir():
            return
        report = await asyncio.to_thread(self.prompt_store.sync, self.settings.prompts_dir)
        self.prompts.errors = report.problems()
        self.prompts.removed = {name for name, _ in report.removed}
        for problem in self.prompts.errors:
            log.error("prompt file invalid: %s", problem)
        for name, version, old in report.latest_moved:
            log.info("prompt %s: latest %s -> %s (%s)", name, old, version, REVERTED)

    async def stop(self) -> None:
        await self.indexes.aclose()
        await self.prompts.aclose()
        await self.key_cache.aclose()
        await self.classic_versions.aclose()
        await self.llm_versions.aclose()
        await self.request_log.close()  # drain: every call already answered gets its row
        await self.drift.close()  # and its drift sample, when it was drawn
        await self.query_sampler.close()  # and the query embeddings drawn so far
        await self.database_probe.aclose()
        for probe in (self.redis_probe, self.qdrant_probe):
            if probe is not None:
                await probe.aclose()
        if self.tracing is not None:
            await self.tracing.aclose()  # and its span
        await self.metrics.aclose()
        await self.meter.aclose()  # and every settle reaches Redis
        await self.providers.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        self.engine.dispose()


def _gauges(metrics: Metrics, health: CollectionHealth) -> None:
    checks = [(c.name, c.status, c.value) for c in health.checks]
    checked = datetime.fromisoformat(health.checked_at).timestamp()
    metrics.index.record(health.name, health.status, checks, health.seconds, checked)
