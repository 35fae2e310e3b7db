"""What `gateway config check` prints beside "ok": what the gateway will not do as written."""

from __future__ import annotations

from gateway.core.config import GatewayConfig
from gateway.core.litellm_keys import Note


def unpriced(config: GatewayConfig) -> list[str]:
    """Deployments with no price in the config or in litellm's price map: their calls cost
    $0, so no budget ever stops them.

    Hook for the pricing work (issue 15, "lprice"): when metering offers its own list of
    unpriced deployments, call it here instead."""
    from gateway.metering.prices import PriceTable
    from gateway.providers import build_deployments

    deployments = build_deployments(config)
    prices = PriceTable.for_deployments(deployments)
    return [
        f"model {d.alias!r}, deployment {d.id} ({d.model}): no price in model_info or in "
        f"litellm's price map, so its calls cost $0 and no budget stops them (set "
        f"input_cost_per_token and output_cost_per_token, or model_info.base_model)"
        for d in deployments
        if prices.price(d) is None
    ]


def _section(title: str, lines: list[str]) -> list[str]:
    return [f"{title}:", *(f"  {line}" for line in lines)] if lines else []


def _lines(notes: list[Note]) -> list[str]:
    return [note.line() for note in notes]


def report_lines(config: GatewayConfig) -> list[str]:
    report = config.report
    return [
        *_section("not applied (warned at start)", _lines(report.ignored())),
        *_section("applied differently", _lines(report.differently())),
        *_section("deployments left out", [deployment.line() for deployment in report.left_out]),
        *_section("unpriced", unpriced(config)),
    ]
