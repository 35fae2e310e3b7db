"""What `gateway config check` prints beside "ok": what the gateway will not do as written."""

from __future__ import annotations

from gateway.core.config import GatewayConfig
from gateway.core.litellm_support import Note
from gateway.metering.prices import config_price_warnings
from gateway.providers.unapplied import unapplied_settings


def _section(title: str, lines: list[str]) -> list[str]:
    return [f"{title}:", *(f"  {line}" for line in lines)] if lines else []


def _lines(notes: list[Note]) -> list[str]:
    return [note.line() for note in notes]


def report_lines(config: GatewayConfig) -> list[str]:
    report = config.report
    return [
        *_section("not applied (warned at start)", _lines(report.ignored())),
        *_section("litellm_params not applied", unapplied_settings(config)),
        *_section("applied differently", _lines(report.differently())),
        *_section("deployments left out", [deployment.line() for deployment in report.left_out]),
        # Deployments no budget can stop (no price at all) and price keys not applied.
        *_section("prices", config_price_warnings(config)),
    ]
