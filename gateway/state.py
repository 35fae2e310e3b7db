"""Everything one gateway process holds, built from settings and config by create_app."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.auth import Authenticator
from gateway.config import GatewayConfig
from gateway.metering.prices import PriceTable
from gateway.providers import Deployment, Providers, build_deployments
from gateway.routing import Router
from gateway.settings import Settings


@dataclass
class GatewayState:
    settings: Settings
    config: GatewayConfig
    deployments: list[Deployment]
    providers: Providers
    router: Router
    prices: PriceTable
    auth: Authenticator

    @classmethod
    def build(cls, settings: Settings, config: GatewayConfig, master_key: str) -> GatewayState:
        deployments = build_deployments(config)
        providers = Providers(config)
        return cls(
            settings=settings,
            config=config,
            deployments=deployments,
            providers=providers,
            router=Router(deployments, config.router_settings, providers),
            prices=PriceTable.for_deployments(deployments),
            auth=Authenticator(master_key),
        )
