"""The phases after the main matrix: the soak (RSS over many requests) and workers scaling."""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from typing import Any

from bench.configs import MODES
from bench.drive import drive
from bench.services import Gateway, tree_rss_mib


def run_soak(gateway: Gateway, key: str, args: argparse.Namespace) -> dict[str, Any]:
    """Send args.soak JSON requests in ten batches, sampling the RSS after each."""
    mode, pid = MODES["json"], gateway.process.pid
    batch = math.ceil(args.soak / 10)
    sent, errors = 0, 0
    kinds: Counter[str] = Counter()
    samples = [(0, tree_rss_mib(pid))]
    deadline = time.monotonic() + args.soak_max_s
    while sent < args.soak and time.monotonic() < deadline:
        stats = drive(
            gateway.base + mode.path, mode.body(mode.alias), key, args.soak_concurrency,
            deadline - time.monotonic(), requests=min(batch, args.soak - sent),
        )  # fmt: skip
        sent += stats["requests"] + stats["errors"]
        errors += stats["errors"]
        kinds.update(stats.get("error_kinds", {}))
        samples.append((sent, tree_rss_mib(pid)))
        print(
            f"  soak: {sent:,} sent, RSS {samples[-1][1]:.0f} MiB, errors {dict(kinds) or 0}",
            flush=True,
        )
    reference = samples[1][1] if len(samples) > 1 else samples[0][1]
    drift = max(abs(rss - reference) for _, rss in samples[1:]) / reference * 100
    return {
        "requests": sent,
        "concurrency": args.soak_concurrency,
        "errors": errors,
        "error_kinds": dict(kinds),
        "rss_samples": samples,
        "rss_drift_pct": drift,
        "reference": "RSS after the first 10% of the requests (warm caches and pools)",
        "completed": sent >= args.soak,
    }


def scaling_table(results: list[dict[str, Any]], levels: list[int]) -> list[dict[str, Any]]:
    """Gateway req/s per worker count, and the ratio to the first count."""
    table = []
    for result in results:
        if result.get("error"):
            table.append(
                {
                    "configuration": result["name"],
                    "workers": result["workers"],
                    "error": result["error"],
                }
            )
            continue
        rps: dict[str, dict[int, float]] = {}
        for row in result["rows"]:
            if row["mode"] in ("json", "stream") and row["concurrency"] in levels:
                rps.setdefault(row["mode"], {})[row["concurrency"]] = row["gateway"]["rps"]
        table.append(
            {
                "configuration": result["name"],
                "workers": result["workers"],
                "cpu_quota_cores": result.get("cpu_quota_cores"),
                "rps": rps,
                "cold_start_s": result["cold_start_s"],
                "idle_rss_mib": result["idle_rss_mib"],
                "rss_after_load_mib": result["rss_after_load_mib"],
            }
        )
    base = table[0].get("rps", {}) if table else {}
    for entry in table[1:]:
        if "error" in entry:
            continue
        entry["ratio"] = {
            mode: {c: v / base[mode][c] for c, v in by_conc.items() if base.get(mode, {}).get(c)}
            for mode, by_conc in entry["rps"].items()
        }
    return table
