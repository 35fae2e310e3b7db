"""`make bench`: what the gateway adds to a zero-delay upstream, feature by feature.

Starts the loopback fake upstream and the gateway (`gateway serve`, as the README does), then
drives closed-loop load for a fixed time at each concurrency: direct against the upstream and
through the gateway, for JSON chat, streaming chat, embeddings and (all-on) a prompt called by
name. Prints a table per configuration and writes everything as JSON. Figures, not assertions.
`--confined` adds one client with the gateway pinned to one CPU (bench/confined.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import redis

from bench import report, services
from bench.configs import CONFIGS, KEY_REQUESTS, MODES, Features, write_gateway_files
from bench.confined import CONFINED_LEVELS, CONFINED_MODES, Confinement, split_cpus
from bench.cpu_quota import QuotaError, cpu_quota
from bench.drive import drive
from bench.phases import run_soak, scaling_table
from bench.services import (
    MASTER_KEY,
    ROOT,
    BenchError,
    Gateway,
    feature_settings,
    free_port,
    log_tail,
    make_key,
    settled_rss_mib,
    start_gateway,
    start_upstream,
    stop,
    tree_rss_mib,
)

SCALING_LEVELS = (32, 64)
# Why one generator process by default: bench/load.py spends ~20 us of CPU per request (about
# a quarter of a core at the upstream's ~12k req/s, where the single-process upstream is the
# limit), so a second process only takes CPU from the gateway on a 2-core machine.
DEFAULT_GENERATORS = 1


def ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--concurrency", type=ints, default=[1, 8, 32, 64])
    parser.add_argument(
        "--features",
        default="all-on",
        help=f"comma-separated of {', '.join(CONFIGS)}, or 'all' (default: all-on)",
    )
    parser.add_argument("--workers", type=ints, default=[1], help="e.g. 1,2: scaling runs")
    parser.add_argument(
        "--cores-per-worker",
        type=float,
        help="run the scaling runs (every --workers count) under a CPU quota of this many "
        "cores per worker (a cgroup; needs root), for machines with too few cores to show "
        "scaling unconstrained",
    )
    parser.add_argument(
        "--confined",
        action="store_true",
        help="then, one client with the gateway pinned to one CPU and the upstream and load "
        "on the others (taskset, as in a 1-vCPU container), for --confined-features",
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="run the confined processes at real-time priority (chrt -f 1; needs root), so "
        "that other work on the machine cannot delay their wake-ups: the gateway's own tail "
        "on a busy machine (its threads then do not preempt one another)",
    )
    parser.add_argument(
        "--confined-features",
        default="all-on,limits",
        help="the configurations of the confined run (default: all-on, and limits: the "
        "embedded database and in-process counters, as a single container runs)",
    )
    parser.add_argument(
        "--confined-duration",
        type=float,
        default=10.0,
        help="seconds per confined run (a p99 at one client needs the samples)",
    )
    parser.add_argument("--soak", type=int, default=0, help="send N requests, sampling RSS")
    parser.add_argument("--soak-concurrency", type=int, default=32)
    parser.add_argument("--soak-max-s", type=float, default=4 * 3600, help="soak time cap")
    parser.add_argument(
        "--generators",
        type=int,
        default=DEFAULT_GENERATORS,
        help="load-generator processes at concurrency >= 32 (connections split between them)",
    )
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args()
    names = list(CONFIGS) if args.features == "all" else args.features.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown feature configuration(s) {unknown}; choose from {list(CONFIGS)}")
    args.features = names
    args.confined_features = args.confined_features.split(",")
    unknown = [n for n in args.confined_features if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown --confined-features {unknown}; choose from {list(CONFIGS)}")
    return args


class Bench:
    def __init__(
        self,
        args: argparse.Namespace,
        upstream: subprocess.Popen[bytes],
        upstream_url: str,
        workdir: Path,
        summary_name: str,
        cpus: Confinement | None = None,
    ) -> None:
        self.args = args
        self.upstream, self.upstream_url = upstream, upstream_url
        self.workdir = workdir
        self.summary_name = summary_name
        self.cpus = cpus  # None: nothing pinned
        self.duration: float = args.confined_duration if cpus else args.duration
        self.config, self.prompts = write_gateway_files(workdir, upstream_url)
        self.direct: dict[tuple[str, int], dict[str, Any]] = {}
        self.soak: dict[str, Any] | None = None

    def check_upstream(self) -> None:
        if self.upstream.poll() is not None:
            log = log_tail(self.workdir / "upstream.log")
            raise BenchError(f"the fake upstream exited ({self.upstream.returncode}):\n{log}")

    def generators(self, concurrency: int) -> int:
        return self.args.generators if concurrency >= 32 else 1

    def run_direct(self, modes: list[str], levels: list[int]) -> None:
        for name in modes:
            mode = MODES[name]
            for conc in levels:
                url = self.upstream_url.removesuffix("/v1") + mode.path
                stats = drive(
                    url, mode.body(mode.upstream_model), "bench", conc, self.duration,
                    self.generators(conc), watch={"upstream": self.upstream.pid},
                    cpus=self.cpus and self.cpus.others,
                )  # fmt: skip
                self.check_upstream()
                self.direct[name, conc] = stats
                print(f"  direct {name}@{conc}: {stats['rps']:,.0f} req/s", flush=True)

    def run_configuration(
        self,
        features: Features,
        workers: int,
        modes: tuple[str, ...],
        levels: list[int],
        quota_cores: float | None = None,
    ) -> dict[str, Any]:
        result: dict[str, Any] = {
            "name": features.name,
            "workers": workers,
            "features": features.describe(),
            "cpu_quota_cores": quota_cores,
        }
        if self.cpus:
            result["gateway_cpus"], result["other_cpus"] = self.cpus.gateway, self.cpus.others
        data_dir = Path(tempfile.mkdtemp(prefix=f"{features.name}-", dir=self.workdir))
        settings = {
            "GATEWAY_CONFIG": str(self.config),
            "GATEWAY_DATA_DIR": str(data_dir),
            "GATEWAY_PROMPTS_DIR": str(self.prompts),
        }
        with contextlib.ExitStack() as stack:
            settings |= feature_settings(features, stack, self.cpus and self.cpus.others)
            cgroup = stack.enter_context(cpu_quota(quota_cores)) if quota_cores else None
            gateway = start_gateway(
                settings, workers, data_dir / "gateway.log", cgroup=cgroup,
                cpus=self.cpus and self.cpus.gateway,
            )  # fmt: skip
            stack.callback(stop, gateway.process)
            key = MASTER_KEY
            if features.key != "master":
                key = make_key(gateway, KEY_REQUESTS[features.key])
            result["cold_start_s"] = gateway.cold_start_s
            result["idle_rss_mib"] = settled_rss_mib(gateway.process.pid)
            result["rows"] = [
                self.measure(gateway, key, name, conc) for name in modes for conc in levels
            ]
            result["rss_after_load_mib"] = tree_rss_mib(gateway.process.pid)
            if (
                self.args.soak
                and features.name == self.summary_name
                and workers == self.args.workers[0]
                and quota_cores is None  # the soak is the unconstrained worker's
                and self.cpus is None
            ):
                self.soak = run_soak(gateway, key, self.args)
            if any(row["gateway"]["errors"] for row in result["rows"]):
                result["log_tail"] = log_tail(gateway.log, 15)
        return result

    def measure(self, gateway: Gateway, key: str, name: str, conc: int) -> dict[str, Any]:
        mode = MODES[name]
        stats = drive(
            gateway.base + mode.path, mode.body(mode.alias), key, conc,
            self.duration, self.generators(conc),
            watch={"gateway": gateway.process.pid, "upstream": self.upstream.pid},
            cpus=self.cpus and self.cpus.others,
        )  # fmt: skip
        self.check_upstream()
        if gateway.process.poll() is not None:
            raise BenchError(f"gateway exited during {name}@{conc}:\n" + log_tail(gateway.log))
        direct = self.direct[mode.direct_as or name, conc]
        row = {
            "mode": name,
            "concurrency": conc,
            "direct": direct,
            "gateway": stats,
            "added_ms": report.added(direct, stats, ""),
        }
        if mode.stream:
            row["added_ttfb_ms"] = report.added(direct, stats, "ttfb_")
        print(
            f"  gateway {name}@{conc}: {stats['rps']:,.0f} req/s, {stats['errors']} errors",
            flush=True,
        )
        return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    selected = [CONFIGS[name] for name in args.features]
    summary_name = "all-on" if "all-on" in args.features else args.features[0]
    scaling_levels = [c for c in args.concurrency if c in SCALING_LEVELS] or [max(args.concurrency)]
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        port = free_port()
        upstream = start_upstream(port, workdir / "upstream.log")
        stack.callback(stop, upstream)
        bench = Bench(args, upstream, f"http://127.0.0.1:{port}/v1", workdir, summary_name)
        direct_modes = sorted(
            {MODES[m].direct_as or m for f in selected for m in f.modes()},
            key=list(MODES).index,
        )
        print(f"direct against the fake upstream ({', '.join(direct_modes)})", flush=True)
        bench.run_direct(direct_modes, args.concurrency)
        results = []
        for features in selected:
            print(f"{features.name}, {args.workers[0]} worker(s)", flush=True)
            results.append(
                guarded(bench, features, args.workers[0], features.modes(), args.concurrency)
            )
        scaled = [r for r in results if r["name"] == summary_name]
        cores = args.cores_per_worker
        if cores:  # every worker count under its quota, the first one included
            scaled = []
        for workers in args.workers if cores else args.workers[1:]:
            quota = f", CPU quota {workers * cores:g} cores" if cores else ""
            print(f"{summary_name}, {workers} workers (scaling{quota})", flush=True)
            scaled.append(
                guarded(
                    bench, CONFIGS[summary_name], workers, ("json", "stream"), scaling_levels,
                    workers * cores if cores else None,
                )
            )  # fmt: skip
        confined = run_confined(args, workdir) if args.confined else None
    out: dict[str, Any] = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": load_before,
        },
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "load_generator": {
            "client": "bench/load.py: raw asyncio + httptools, closed loop, keep-alive",
            "processes_at_32_plus": args.generators,
            "why": "one process spends ~20 us CPU per request; the upstream is the direct limit",
        },
        "configurations": results,
        "scaling": scaling_table(scaled, scaling_levels) if len(args.workers) > 1 else [],
        "scaling_runs": scaled if args.cores_per_worker else scaled[1:],
        "confined": confined,
        "soak": bench.soak,
    }
    out["notes"] = report.notes(out)
    out["summary"] = report.summary(out, summary_name)
    return out


def run_confined(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Configurations with the gateway pinned to one CPU, against an upstream and a load
    generator pinned to the others: direct and through the gateway, one client. Unconfined,
    the gateway's background work (the request-log writer, the pollers) runs beside the event
    loop on the second core; on one CPU (a 1-vCPU container) every wake-up of the loop waits
    for whatever else holds that CPU. First, the floor: a direct call across the two CPUs (the
    upstream where the gateway will be), the wake-up latency of the machine itself."""
    cpus = split_cpus()
    if cpus is None:
        return {"error": "needs at least two CPUs", "configurations": []}
    services.REALTIME_PRIORITY = 1 if args.realtime else None
    print(f"confined: the gateway on CPU {cpus.gateway}, upstream and load on {cpus.others}")
    confined_dir = workdir / "confined"
    confined_dir.mkdir()
    out: dict[str, Any] = {
        "gateway_cpus": cpus.gateway,
        "other_cpus": cpus.others,
        "realtime": args.realtime,
    }
    with contextlib.ExitStack() as stack:
        try:
            out["floor"] = cross_cpu_floor(args, confined_dir, cpus)
        except (BenchError, OSError) as exc:  # e.g. --realtime without the right to use it
            print(f"  FAILED: {exc}", file=sys.stderr, flush=True)
            return {**out, "error": str(exc).splitlines()[0], "configurations": []}
        port = free_port()
        upstream = start_upstream(port, confined_dir / "upstream.log", cpus=cpus.others)
        stack.callback(stop, upstream)
        url = f"http://127.0.0.1:{port}/v1"
        bench = Bench(args, upstream, url, confined_dir, "", cpus)
        bench.run_direct(list(CONFINED_MODES), CONFINED_LEVELS)
        out["configurations"] = []
        for name in args.confined_features:
            print(f"{name}, 1 worker confined to CPU {cpus.gateway}", flush=True)
            result = guarded(bench, CONFIGS[name], 1, CONFINED_MODES, CONFINED_LEVELS)
            out["configurations"].append(result)
    return out


def cross_cpu_floor(args: argparse.Namespace, workdir: Path, cpus: Confinement) -> dict[str, Any]:
    """Direct JSON calls, one client, with the upstream on the gateway's CPU and the load on
    the others: what crossing between the CPUs costs on this machine at this moment (under a
    neighbour's load, a wake-up on a busy CPU can wait a scheduler tick, 4 ms at HZ=250)."""
    port = free_port()
    upstream = start_upstream(port, workdir / "floor-upstream.log", cpus=cpus.gateway)
    try:
        mode = MODES["json"]
        url = f"http://127.0.0.1:{port}" + mode.path
        stats = drive(
            url, mode.body(mode.upstream_model), "bench", 1, args.confined_duration,
            watch={"upstream": upstream.pid}, cpus=cpus.others,
        )  # fmt: skip
    finally:
        stop(upstream)
    print(
        f"  direct across CPUs (json@1): p50 {stats['p50_ms']:.2f} ms, "
        f"p99 {stats['p99_ms']:.2f} ms",
        flush=True,
    )
    return stats


def guarded(
    bench: Bench,
    features: Features,
    workers: int,
    modes: tuple[str, ...],
    levels: list[int],
    quota_cores: float | None = None,
) -> dict[str, Any]:
    """One configuration; a failure (gateway start, Redis, PostgreSQL) is recorded, not fatal."""
    try:
        return bench.run_configuration(features, workers, modes, levels, quota_cores)
    except (
        BenchError, OSError, QuotaError, httpx.HTTPError, psycopg.Error, redis.RedisError
    ) as exc:  # fmt: skip
        error = str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
        print(f"  FAILED: {error}", file=sys.stderr, flush=True)
        return {"name": features.name, "workers": workers, "error": error}


def main() -> None:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so every `finally` stops what it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        out = run(args)
    except KeyboardInterrupt:
        sys.exit("interrupted; every process the benchmark started has been stopped")
    except BenchError as exc:
        sys.exit(f"benchmark failed: {exc}")
    for result in out["configurations"]:
        report.print_configuration(result)
    report.print_confined(out["confined"])
    report.print_scaling(out["scaling"])
    report.print_soak(out["soak"])
    print("\nnotes:\n" + "\n".join(f"  - {note}" for note in out["notes"]))
    report.print_summary(out["summary"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    print(f"\nwritten to {args.json}")
    confined = (out["confined"] or {}).get("configurations", [])
    if any(r.get("error") for r in out["configurations"] + out["scaling"] + confined):
        sys.exit(1)


if __name__ == "__main__":
    main()
