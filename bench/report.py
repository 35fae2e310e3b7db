"""Tables for the terminal, the notes that qualify them, and the issue's summary figures."""

from __future__ import annotations

from typing import Any

# Issue 6's targets: one worker, every feature on, the zero-delay fake upstream.
TARGETS = {
    "added_p50_ms": 0.5,
    "added_p99_ms": 1.5,
    "rps_json_32": 3000,
    "rps_stream_32": 1500,
    "cold_start_s": 1.5,
    "idle_rss_mib": 150e6 / 2**20,  # 150 MB
    "soak_rss_drift_pct": 10.0,
}
QS = (50, 90, 99)


def added(direct: dict[str, Any], gateway: dict[str, Any], prefix: str) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for q in QS:
        d, g = direct.get(f"{prefix}p{q}_ms"), gateway.get(f"{prefix}p{q}_ms")
        out[f"p{q}"] = None if d is None or g is None else g - d
    return out


def _n(value: float | None, width: int, digits: int = 2) -> str:
    if value is None:
        return f"{'-':>{width}}"
    return f"{value:>{width},.{digits}f}"


HEADER = (
    f"{'mode':<11}{'conc':>4} | {'direct rps':>10}{'p50':>6}{'p99':>6}{'cpu%':>5} | "
    f"{'gateway rps':>11}{'p50':>8}{'p90':>8}{'p99':>8}{'err':>5}{'cpu%':>5} | "
    f"{'+p50':>7}{'+p90':>7}{'+p99':>7}"
)


def _line(label: str, conc: int, d: dict[str, Any], g: dict[str, Any], prefix: str) -> str:
    extra = added(d, g, prefix)
    main = prefix == ""  # the ttfb line repeats neither throughput nor errors nor CPU

    def only(value: Any) -> Any:
        return value if main else None

    return (
        f"{label:<11}{conc:>4} | "
        f"{_n(only(d['rps']), 10, 0)}{_n(d[prefix + 'p50_ms'], 6)}{_n(d[prefix + 'p99_ms'], 6)}"
        f"{_n(only(d.get('upstream_cpu_pct')), 5, 0)} | "
        f"{_n(only(g['rps']), 11, 0)}{_n(g[prefix + 'p50_ms'], 8)}"
        f"{_n(g[prefix + 'p90_ms'], 8)}{_n(g[prefix + 'p99_ms'], 8)}"
        f"{g['errors'] if main else '':>5}{_n(only(g.get('gateway_cpu_pct')), 5, 0)} | "
        f"{_n(extra['p50'], 7)}{_n(extra['p90'], 7)}{_n(extra['p99'], 7)}"
    )


def print_configuration(result: dict[str, Any]) -> None:
    title = f"== {result['name']} ({result['workers']} worker{'s' * (result['workers'] > 1)})"
    if result.get("gateway_cpus"):
        title += (
            f", confined: the gateway on CPU {result['gateway_cpus']}, the upstream and the "
            f"load on CPU {result['other_cpus']}"
        )
    print(f"\n{title}")
    if result.get("error"):
        print(f"FAILED: {result['error'].splitlines()[0]} (details above and in the JSON)")
        return
    print("   " + "; ".join(f"{k}: {v}" for k, v in result["features"].items()))
    print(HEADER)
    print("-" * len(HEADER))
    for row in result["rows"]:
        mode, conc, d, g = row["mode"], row["concurrency"], row["direct"], row["gateway"]
        print(_line(mode, conc, d, g, ""))
        if mode == "stream":
            print(_line("  ttfb", conc, d, g, "ttfb_"))
    print(_cpu_line(result["rows"]))
    print(
        f"cold start to first proxied answer {result['cold_start_s']:.2f} s; RSS (process tree) "
        f"idle {result['idle_rss_mib']:.0f} MiB, after load {result['rss_after_load_mib']:.0f} MiB"
    )


def _cpu_line(rows: list[dict[str, Any]]) -> str:
    def peak(field: str) -> float:
        return max((row["gateway"].get(field) or 0.0) for row in rows)

    return (
        f"peak CPU in the gateway runs, % of one core: gateway {peak('gateway_cpu_pct'):.0f}, "
        f"upstream {peak('upstream_cpu_pct'):.0f}, redis-server {peak('redis_cpu_pct'):.0f}, "
        f"postgres {peak('postgres_cpu_pct'):.0f}, other processes {peak('other_cpu_pct'):.0f}"
    )


def print_scaling(scaling: list[dict[str, Any]]) -> None:
    if not scaling:
        return
    print(f"\n== workers scaling ({scaling[0]['configuration']}): req/s through the gateway")
    for entry in scaling:
        if "error" in entry:
            print(f"workers {entry['workers']}: FAILED: {entry['error'].splitlines()[0]}")
            continue
        cells = ", ".join(
            f"{mode}@{conc}: {rps:,.0f}"
            + (f" ({entry['ratio'][mode][conc]:.2f}x)" if entry.get("ratio") else "")
            for mode, by_conc in entry["rps"].items()
            for conc, rps in by_conc.items()
        )
        quota = entry.get("cpu_quota_cores")
        limit = f" (CPU quota {quota:g} cores)" if quota else ""
        print(f"workers {entry['workers']}{limit}: {cells}")


def print_soak(soak: dict[str, Any] | None) -> None:
    if not soak:
        return
    print(f"\n== soak: {soak['requests']:,} requests at concurrency {soak['concurrency']}")
    print(
        "RSS MiB by requests sent: "
        + ", ".join(f"{n:,}: {rss:.0f}" for n, rss in soak["rss_samples"])
    )
    print(
        f"drift from the 10% sample: {soak['rss_drift_pct']:.1f}% "
        f"({'flat' if soak['rss_drift_pct'] <= 10 else 'NOT flat'} by the ±10% rule); "
        f"errors {soak['errors']} {soak.get('error_kinds') or ''}"
    )


def print_confined(confined: dict[str, Any] | None) -> None:
    if not confined:
        return
    if confined.get("error"):
        print(f"\n== confined: FAILED: {confined['error']}")
        return
    floor = confined["floor"]
    realtime = " (real-time priority)" if confined.get("realtime") else ""
    print(
        f"\n== confined to one CPU{realtime}; the floor, a direct call across the CPUs "
        f"(json, 1 client): "
        f"p50 {floor['p50_ms']:.2f} ms, p99 {floor['p99_ms']:.2f} ms, other processes "
        f"{floor.get('other_cpu_pct', 0):.0f}% of a core"
    )
    for result in confined["configurations"]:
        print_configuration(result)


def notes(report: dict[str, Any]) -> list[str]:
    out = [
        "request log: always on (it cannot be disabled); SQLite unless the row says postgresql",
        "latencies in ms; 'ttfb' rows: time to the first body byte of the stream; "
        "+pN: gateway minus direct at the same percentile; cpu%: share of one core used in "
        "the window by the fake upstream (direct) or the gateway's process tree (all workers)",
        "prompt rows compare with the direct json figures (the upstream gets an ordinary call)",
    ]
    load = report["machine"]["load_average_before"]
    if load > 0.5:
        out.append(
            f"the machine was busy before the run (1-minute load average {load:.1f} on "
            f"{report['machine']['cpus']} cores): other work competes for the cores, so "
            "figures are lower and noisier than on an idle machine"
        )
    confined = report.get("confined") or {}
    other = max(
        (
            row[side].get("other_cpu_pct", 0.0)
            for result in report["configurations"]
            + report["scaling_runs"]
            + confined.get("configurations", [])
            for row in result.get("rows", [])
            for side in ("direct", "gateway")
        ),
        default=0.0,
    )
    if other > 20:
        out.append(
            f"processes outside the benchmark used up to {other:.0f}% of a core during the "
            "runs (see other_cpu_pct in the JSON): the figures are depressed by that much work"
        )
    floor = confined.get("floor")
    if floor and floor["p99_ms"] > 0.5:
        out.append(
            f"confined runs: a direct call across the CPUs had a p99 of {floor['p99_ms']:.1f} "
            "ms (the machine's own wake-up latency, with "
            f"{floor.get('other_cpu_pct', 0):.0f}% of a core used by other processes): the "
            "confined p99 cannot be lower than that, whatever the gateway does"
        )
    for result in report["configurations"]:
        for row in result.get("rows", []):
            d, g = row["direct"]["rps"], row["gateway"]["rps"]
            where = f"{result['name']} {row['mode']}@{row['concurrency']}"
            if g and d < 3 * g:
                out.append(
                    f"{where}: direct is only {d / g:.1f}x the gateway's req/s, so this figure "
                    "is bound by the generator/upstream too, not by the gateway alone"
                )
            busy = max(row["gateway"]["generator_cpu_pct"] + row["direct"]["generator_cpu_pct"])
            if busy > 85:
                out.append(f"{where}: a load generator process used {busy:.0f}% of a core")
    return out


def _row(result: dict[str, Any], mode: str, conc: int) -> dict[str, Any] | None:
    rows: list[dict[str, Any]] = result.get("rows", [])
    for row in rows:
        if row["mode"] == mode and row["concurrency"] == conc:
            return row
    return None


def summary(report: dict[str, Any], name: str) -> dict[str, Any]:
    """The issue's target figures, from one configuration (all-on when it ran)."""
    result = next(r for r in report["configurations"] if r["name"] == name)
    out: dict[str, Any] = {"configuration": name, "workers": result["workers"]}
    if result.get("error"):
        return out
    json1, stream1 = _row(result, "json", 1), _row(result, "stream", 1)
    json32, stream32 = _row(result, "json", 32), _row(result, "stream", 32)
    out["added_p50_ms_json_1"] = json1 and json1["added_ms"]["p50"]
    out["added_p99_ms_json_1"] = json1 and json1["added_ms"]["p99"]
    out["added_p50_ms_stream_ttfb_1"] = stream1 and stream1["added_ttfb_ms"]["p50"]
    out["added_p99_ms_stream_ttfb_1"] = stream1 and stream1["added_ttfb_ms"]["p99"]
    out["rps_json_32"] = json32 and json32["gateway"]["rps"]
    out["rps_stream_32"] = stream32 and stream32["gateway"]["rps"]
    out["errors_32"] = (
        sum(r["gateway"]["errors"] for r in (json32, stream32) if r)
        if (json32 or stream32)
        else None
    )
    out["cold_start_s"] = result["cold_start_s"]
    out["idle_rss_mib"] = result["idle_rss_mib"]
    scaling = report.get("scaling") or []
    if len(scaling) > 1 and "ratio" in scaling[-1]:
        last = scaling[-1]
        out["workers_scaling"] = {
            "workers": f"{scaling[0]['workers']}->{last['workers']}",
            "cores_per_worker": (last.get("cpu_quota_cores") or 0) / last["workers"] or None,
            "ratio_json_32": last["ratio"].get("json", {}).get(32),
            "ratio_stream_32": last["ratio"].get("stream", {}).get(32),
        }
    if report.get("soak"):
        out["soak_rss_drift_pct"] = report["soak"]["rss_drift_pct"]
    runs = (report.get("confined") or {}).get("configurations", [])
    confined = next((r for r in runs if r["name"] == name), runs[0] if runs else {})
    json1, stream1 = _row(confined, "json", 1), _row(confined, "stream", 1)
    if json1 or stream1:
        out["confined"] = {
            "configuration": confined["name"],
            "floor_p99_ms": report["confined"]["floor"]["p99_ms"],
            "added_p50_ms_json_1": json1 and json1["added_ms"]["p50"],
            "added_p99_ms_json_1": json1 and json1["added_ms"]["p99"],
            "added_p50_ms_stream_ttfb_1": stream1 and stream1["added_ttfb_ms"]["p50"],
            "added_p99_ms_stream_ttfb_1": stream1 and stream1["added_ttfb_ms"]["p99"],
        }
    return out


def _verdict(value: float | None, target: float, higher_is_better: bool = False) -> str:
    if value is None:
        return "not measured"
    met = value >= target if higher_is_better else value <= target
    return "met" if met else "missed"


def print_summary(s: dict[str, Any]) -> None:
    print(f"\n== summary: issue 6 targets, from {s['configuration']} ({s['workers']} worker(s))")
    if "cold_start_s" not in s:
        print("not available: that configuration failed")
        return
    t = TARGETS
    # label, value, target, unit, is higher better, digits
    lines: list[tuple[str, float | None, float, str, bool, int]] = [
        ("added p50, json, 1 client", s["added_p50_ms_json_1"], t["added_p50_ms"], "ms", False, 2),
        ("added p99, json, 1 client", s["added_p99_ms_json_1"], t["added_p99_ms"], "ms", False, 2),
        ("added p50, stream TTFB, 1", s["added_p50_ms_stream_ttfb_1"], 0.5, "ms", False, 2),
        ("added p99, stream TTFB, 1", s["added_p99_ms_stream_ttfb_1"], 1.5, "ms", False, 2),
        ("req/s json, 32 clients", s["rps_json_32"], t["rps_json_32"], "", True, 0),
        ("req/s stream, 32 clients", s["rps_stream_32"], t["rps_stream_32"], "", True, 0),
        ("errors at 32 clients", s["errors_32"], 0, "", False, 0),
        ("cold start", s["cold_start_s"], t["cold_start_s"], "s", False, 2),
        ("idle RSS", s["idle_rss_mib"], t["idle_rss_mib"], "MiB", False, 0),
    ]
    confined = s.get("confined") or {}
    if confined:  # "1 CPU": the confined run of the same configuration (bench/confined.py)
        lines += [
            ("1 CPU: added p50, json, 1", confined["added_p50_ms_json_1"], 0.5, "ms", False, 2),
            ("1 CPU: added p99, json, 1", confined["added_p99_ms_json_1"], 1.5, "ms", False, 2),
            ("1 CPU: p50, stream TTFB, 1", confined["added_p50_ms_stream_ttfb_1"], 0.5, "ms",
             False, 2),
            ("1 CPU: p99, stream TTFB, 1", confined["added_p99_ms_stream_ttfb_1"], 1.5, "ms",
             False, 2),
        ]  # fmt: skip
    if "soak_rss_drift_pct" in s:
        drift = s["soak_rss_drift_pct"]
        lines.append(("soak RSS drift", drift, t["soak_rss_drift_pct"], "%", False, 1))
    for label, value, target, unit, higher, digits in lines:
        sign = ">=" if higher else "<="
        print(
            f"  {label:<27}{_n(value, 9, digits)} {unit:<4}target {sign} {target:,.4g} {unit:<4}"
            f"{_verdict(value, target, higher)}"
        )
    if confined:
        print(
            f"  1 CPU: {confined['configuration']}, gateway on one CPU; a direct call across "
            f"the CPUs had p99 {confined['floor_p99_ms']:.2f} ms meanwhile (the machine's floor)"
        )
    scaling = s.get("workers_scaling")
    if scaling:
        print(
            f"  workers {scaling['workers']}: json@32 {_n(scaling['ratio_json_32'], 0)}x, "
            f"stream@32 {_n(scaling['ratio_stream_32'], 0)}x (target: close to N-fold)"
            + (
                f", under a CPU quota of {scaling['cores_per_worker']:g} core per worker"
                if scaling.get("cores_per_worker")
                else ""
            )
        )
