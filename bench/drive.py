"""Runs bench/load.py processes against one URL and turns their samples into figures."""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from bench.services import ROOT, BenchError, machine_busy_s, named_cpu_s, pinned, tree_cpu_s

SPAWN_ALLOWANCE_S = 0.8  # interpreter start and connecting, before the window opens
GRACE_S = 10.0
CPUS = os.cpu_count() or 1  # what load.py gives in-flight requests after the window


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def split(concurrency: int, processes: int) -> list[int]:
    processes = max(1, min(processes, concurrency))
    return [concurrency // processes + (i < concurrency % processes) for i in range(processes)]


def drive(
    url: str,
    body: str,
    key: str,
    concurrency: int,
    duration: float,
    processes: int = 1,
    requests: int = 0,
    watch: dict[str, int] | None = None,
    cpus: str | None = None,
) -> dict[str, Any]:
    """Closed-loop load for `duration` seconds (or `requests` requests, then `duration` is
    only a cap), from `processes` generator processes sharing the connections and one window.
    `watch` names process trees whose CPU use in the window is reported (`NAME_cpu_pct`);
    `cpus` pins the generators to those CPUs (taskset)."""
    start_at = time.time() + SPAWN_ALLOWANCE_S
    shares = split(concurrency, processes) if not requests else [concurrency]
    command = pinned([
        sys.executable, "-m", "bench.load", "--url", url, "--body", body, "--key", key,
        "--duration", str(duration), "--start-at", str(start_at), "--timeout", str(GRACE_S),
        "--requests", str(requests),
    ], cpus)  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        stack.callback(_reap, procs)
        # Output goes to files: pipes would block one generator while another is being read.
        files = [stack.enter_context(tempfile.TemporaryFile()) for _ in shares]
        for share, out in zip(shares, files, strict=True):
            args = [*command, "--concurrency", str(share)]
            procs.append(subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=out))
        cpu = _cpu_during(watch, start_at, duration) if watch and not requests else {}
        deadline = time.monotonic() + SPAWN_ALLOWANCE_S + duration + GRACE_S + 30
        outputs = []
        for proc, out in zip(procs, files, strict=True):
            try:
                code = proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise BenchError("a load generator overran its time limit") from None
            out.seek(0)
            text = out.read()
            if code != 0:
                raise BenchError(f"load generator failed ({code}):\n{text.decode()[-3000:]}")
            outputs.append(orjson.loads(text))
    result = summarize(outputs) | cpu
    if cpu:
        # What the machine did beyond the benchmark's own processes: other people's work.
        ours = sum(v for k, v in cpu.items() if k.endswith("_cpu_pct"))
        ours += sum(result["generator_cpu_pct"])
        result["other_cpu_pct"] = max(0.0, cpu["machine_busy_pct"] * CPUS - ours)
    return result


def _cpu_during(watch: dict[str, int], start_at: float, duration: float) -> dict[str, float]:
    """CPU used in the window (the parent idles meanwhile), in percent of one core, by each
    watched process tree, Redis and PostgreSQL; and how busy the machine was (all cores)."""
    probes: dict[str, Callable[[], float]] = {
        f"{name}_cpu_pct": functools.partial(tree_cpu_s, pid) for name, pid in watch.items()
    }
    probes["redis_cpu_pct"] = functools.partial(named_cpu_s, "redis-server")
    probes["postgres_cpu_pct"] = functools.partial(named_cpu_s, "postgres")
    time.sleep(max(0.0, start_at - time.time()))
    before = {name: probe() for name, probe in probes.items()}
    busy_before, total_before = machine_busy_s()
    time.sleep(duration)
    busy_after, total_after = machine_busy_s()
    out = {
        name: max(0.0, 100 * (probe() - before[name]) / duration) for name, probe in probes.items()
    }
    out["machine_busy_pct"] = (
        100 * (busy_after - busy_before) / max(total_after - total_before, 1e-9)
    )
    return out


def _reap(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


def summarize(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = sorted(x for out in outputs for x in out["latencies_ms"])
    first_bytes = sorted(x for out in outputs for x in out["ttfb_ms"])
    errors: Counter[str] = Counter()
    for out in outputs:
        errors.update(out["errors"])
    window = max(out["window_s"] for out in outputs)
    result: dict[str, Any] = {
        "requests": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "rps": len(latencies) / window if window else 0.0,
        "generator_processes": len(outputs),
        "generator_cpu_pct": [round(out["cpu_pct"], 1) for out in outputs],
    }
    for q in (50, 90, 99):
        result[f"p{q}_ms"] = percentile(latencies, q)
    for q in (50, 90, 99):
        result[f"ttfb_p{q}_ms"] = percentile(first_bytes, q)
    return result
