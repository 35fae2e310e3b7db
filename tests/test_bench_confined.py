"""The benchmark's confined mode, without running it: what it pins and what it reports."""

from __future__ import annotations

from typing import Any

import pytest

from bench import report
from bench.confined import split_cpus
from bench.services import pinned


def test_commands_are_pinned_only_when_asked() -> None:
    assert pinned(["python", "-m", "x"], None) == ["python", "-m", "x"]
    assert pinned(["python"], "1") == ["taskset", "-c", "1", "python"]


def test_the_gateway_gets_the_last_cpu_and_everything_else_the_rest() -> None:
    cpus = split_cpus()
    if cpus is None:
        pytest.skip("one CPU: nothing to confine to")
    assert cpus.gateway not in cpus.others.split(",")


def _row(mode: str, direct_p99: float, gateway_p99: float) -> dict[str, Any]:
    direct = {"p50_ms": 0.1, "p90_ms": 0.1, "p99_ms": direct_p99, "rps": 5000.0}
    gateway = {"p50_ms": 0.5, "p90_ms": 0.6, "p99_ms": gateway_p99, "rps": 1500.0}
    for stats in (direct, gateway):
        stats.update({f"ttfb_{k}": v for k, v in list(stats.items()) if k.endswith("_ms")})
        stats.update(errors=0, generator_cpu_pct=[20.0])
    row = {"mode": mode, "concurrency": 1, "direct": direct, "gateway": gateway}
    row["added_ms"] = report.added(direct, gateway, "")
    row["added_ttfb_ms"] = report.added(direct, gateway, "ttfb_")
    return row


def test_the_summary_quotes_the_confined_run_of_its_configuration_and_the_floor(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def run(name: str, p99: float) -> dict[str, Any]:
        rows = [_row("json", 0.2, p99), _row("stream", 0.2, p99 + 0.1)]
        return {"name": name, "workers": 1, "rows": rows, "cold_start_s": 1.0}

    unconfined = {**run("all-on", 1.2), "features": {}, "idle_rss_mib": 100.0}
    out: dict[str, Any] = {
        "machine": {"cpus": 2, "load_average_before": 0.0},
        "configurations": [unconfined],
        "scaling_runs": [],
        "confined": {
            "floor": {"p50_ms": 0.1, "p99_ms": 2.5, "other_cpu_pct": 90.0},
            "configurations": [run("limits", 3.2), run("all-on", 1.4)],
        },
    }
    summary = report.summary(out, "all-on")
    assert summary["confined"]["configuration"] == "all-on"
    assert summary["confined"]["added_p99_ms_json_1"] == pytest.approx(1.2)
    assert summary["confined"]["floor_p99_ms"] == 2.5
    assert any("across the CPUs had a p99 of 2.5 ms" in note for note in report.notes(out))
    report.print_summary(summary)
    printed = capsys.readouterr().out
    assert "1 CPU: added p99, json, 1" in printed
    assert "floor" in printed
