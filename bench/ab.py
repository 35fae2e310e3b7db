"""Before/after of one change: two revisions of the gateway, measured in alternating windows.

    python -m bench.ab HEAD~1 HEAD --features all-on --mode json --concurrency 32

This machine's neighbours come and go, so two runs minutes apart differ by more than most
optimizations gain. Both gateways run side by side against one fake upstream and take turns,
window by window; each window reports requests/s and the gateway's CPU per request, and the
medians over the rounds are what a before/after claim should quote. `WORKTREE` (the current
checkout, uncommitted changes included) may stand for either revision. `--confined` pins both
gateways to one CPU and the upstream and load to the others (bench/confined.py), for the
tail latency of a 1-vCPU container: `--confined --concurrency 1 --duration 10`. Each window
also says how much CPU processes outside the benchmark used in it ("other", % of one core);
with `--quiet-below PCT` the medians are also given over the windows below it, since a
neighbour's burst on the gateway's CPU moves a one-client p99 by more than most changes do.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import services
from bench.configs import CONFIGS, KEY_REQUESTS, MODES, write_gateway_files
from bench.confined import split_cpus
from bench.drive import drive
from bench.services import (
    MASTER_KEY,
    ROOT,
    feature_settings,
    free_port,
    gateway_env,
    make_key,
    start_gateway,
    start_upstream,
    stop,
)

CURRENT = "WORKTREE"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help=f"a git revision, or {CURRENT}")
    parser.add_argument("after", help=f"a git revision, or {CURRENT}")
    parser.add_argument("--features", default="all-on", choices=sorted(CONFIGS))
    parser.add_argument(
        "--features-after",
        choices=sorted(CONFIGS),
        help="the after gateway's configuration, to price one feature (default: --features)",
    )
    parser.add_argument("--mode", default="json", choices=sorted(MODES))
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per window")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--generators", type=int, default=1)
    parser.add_argument(
        "--quiet-below",
        type=float,
        help="also give medians over the windows where other processes used less than this "
        "share of one core (%%)",
    )
    parser.add_argument(
        "--confined",
        action="store_true",
        help="both gateways on one CPU, the upstream and the load on the others (taskset)",
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="with --confined: those processes at real-time priority (chrt -f 1; needs root)",
    )
    return parser.parse_args()


def checkout(revision: str, stack: contextlib.ExitStack) -> Path:
    if revision == CURRENT:
        return ROOT
    where = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ab-"))) / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--quiet", str(where), revision],
        cwd=ROOT,
        check=True,
    )
    stack.callback(
        subprocess.run, ["git", "worktree", "remove", "--force", str(where)], cwd=ROOT, check=False
    )
    return where


def main() -> None:
    args = parse_args()
    mode = MODES[args.mode]
    configs = {"before": args.features, "after": args.features_after or args.features}
    cpus = split_cpus() if args.confined else None
    if args.confined and cpus is None:
        raise SystemExit("--confined needs at least two CPUs")
    gateway_cpus, other_cpus = (cpus.gateway, cpus.others) if cpus else (None, None)
    services.REALTIME_PRIORITY = 1 if cpus and args.realtime else None
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        port = free_port()
        upstream = start_upstream(port, workdir / "upstream.log", cpus=other_cpus)
        stack.callback(stop, upstream)
        config, prompts = write_gateway_files(
            workdir, f"http://127.0.0.1:{port}/v1", classic=args.mode == "infer"
        )
        gateways: dict[str, tuple[Any, str]] = {}
        for label, revision in (("before", args.before), ("after", args.after)):
            data_dir = workdir / label
            settings = {
                "GATEWAY_CONFIG": str(config),
                "GATEWAY_DATA_DIR": str(data_dir),
                "GATEWAY_PROMPTS_DIR": str(prompts),
            }
            features = CONFIGS[configs[label]]
            settings |= feature_settings(features, stack, other_cpus)
            data_dir.mkdir()
            root = checkout(revision, stack)
            if args.mode == "infer":
                train_example(root, settings)
            gateway = start_gateway(
                settings, 1, data_dir / "gateway.log", root=root, cpus=gateway_cpus
            )
            stack.callback(stop, gateway.process)
            if args.mode == "infer":
                wait_ready(gateway.base + "/v2/models/bench-iris/ready")
            key = MASTER_KEY
            if features.key != "master":
                key = make_key(gateway, KEY_REQUESTS[features.key])
            gateways[label] = (gateway, key)
            print(
                f"{label}: {revision}, {configs[label]} (cold start {gateway.cold_start_s:.2f} s)",
                flush=True,
            )
        samples: dict[str, list[tuple[float, ...]]] = {"before": [], "after": []}
        where = f", gateways on CPU {gateway_cpus}, the rest on {other_cpus}" if cpus else ""
        print(f"{args.mode}@{args.concurrency}, {args.duration:g} s windows{where}")
        for round_no in range(args.rounds):
            # Alternate who goes first, so a trend in the machine's load favours neither.
            order = ("before", "after") if round_no % 2 == 0 else ("after", "before")
            for label in order:
                gateway, key = gateways[label]
                stats = drive(
                    gateway.base + mode.path, mode.body(mode.alias), key, args.concurrency,
                    args.duration, args.generators, cpus=other_cpus,
                    watch={"gateway": gateway.process.pid, "upstream": upstream.pid},
                )  # fmt: skip
                cpu_ms = stats["gateway_cpu_pct"] * 10 / stats["rps"] if stats["rps"] else 0.0
                other = stats["other_cpu_pct"]
                row = (stats["rps"], cpu_ms, stats["p50_ms"], stats["p99_ms"], other)
                samples[label].append(row)
                print(
                    f"  round {round_no + 1} {label:6} {stats['rps']:8,.0f} req/s  "
                    f"{cpu_ms:.3f} ms CPU/request  p50 {stats['p50_ms']:.2f} ms  "
                    f"p99 {stats['p99_ms']:.2f} ms  errors {stats['errors']}  other {other:.0f}%",
                    flush=True,
                )
        print_medians("medians:", samples)
        if args.quiet_below is not None:
            quiet = {
                label: [row for row in rows if row[4] < args.quiet_below]
                for label, rows in samples.items()
            }
            print_medians(f"medians over the windows with other < {args.quiet_below:g}%:", quiet)


def train_example(root: Path, settings: dict[str, str]) -> None:
    """The example model, registered by that revision's own code (its migrations)."""
    env = gateway_env(free_port(), settings)
    subprocess.run(
        [sys.executable, "-m", "gateway", "registry", "train-example"],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
    )


def wait_ready(url: str, seconds: float = 120) -> None:
    """Until the model is loaded (a worker thread loads it after the start)."""
    deadline = time.monotonic() + seconds
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    while httpx.get(url, headers=headers, timeout=10).status_code != 200:
        if time.monotonic() > deadline:
            raise SystemExit(f"{url}: the example model never became ready")
        time.sleep(0.2)


def print_medians(title: str, samples: dict[str, list[tuple[float, ...]]]) -> None:
    print(title)
    for label, rows in samples.items():
        if not rows:
            print(f"  {label:6} no such window")
            continue
        columns = zip(*rows, strict=True)
        rps, cpu, p50, p99, other = (statistics.median(column) for column in columns)
        print(
            f"  {label:6} {rps:8,.0f} req/s  {cpu:.3f} ms CPU/request  p50 {p50:.2f} ms  "
            f"p99 {p99:.2f} ms  ({len(rows)} windows, other {other:.0f}%)"
        )


if __name__ == "__main__":
    main()
