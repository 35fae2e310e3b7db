"""`make bench`: the gateway's added latency and throughput against a zero-delay upstream.

Starts the loopback fake upstream and the gateway (with `gateway serve`, as the README does),
drives closed-loop load at several concurrencies for a fixed time, direct and through the
gateway, and prints requests/s, p50/p90/p99 and the overhead. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-master-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, process: subprocess.Popen[bytes], what: str) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < 60:
        if process.poll() is not None:
            sys.exit(f"{what} exited during start (code {process.returncode})")
        try:
            httpx.get(url, timeout=1)
            return time.perf_counter() - started
        except httpx.TransportError:
            time.sleep(0.02)
    sys.exit(f"{what} did not start in 60 s")


def start_upstream(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.upstream", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    wait_ready(f"http://127.0.0.1:{port}/v1/models", process, "fake upstream")
    return process


def start_gateway(
    port: int, upstream: str, data_dir: Path, extra_env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], float]:
    config = data_dir / "bench.yaml"
    entries = [
        {
            "model_name": "bench",
            "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": upstream},
        }
    ]
    config.write_bytes(orjson.dumps({"model_list": entries}))  # JSON is valid YAML
    env = {
        **os.environ,
        "GATEWAY_CONFIG": str(config),
        "GATEWAY_DATA_DIR": str(data_dir),
        "GATEWAY_MASTER_KEY": KEY,
        "GATEWAY_PORT": str(port),
        "GATEWAY_LOG_LEVEL": "warning",
        **extra_env,
    }
    gateway_bin = Path(sys.executable).parent / "gateway"
    started = time.perf_counter()
    process = subprocess.Popen([str(gateway_bin), "serve"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/healthz", process, "gateway")
    # Cold start ends with the first successful proxied call, not the first open port.
    httpx.post(
        f"{base}/v1/chat/completions",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "bench", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    ).raise_for_status()
    return process, time.perf_counter() - started


def make_virtual_key(base: str) -> str:
    """Benchmark traffic uses a virtual key with limits and a budget, so every feature works:
    key lookup, RPM/TPM counters, budget reservation and settlement, cost, request log."""
    response = httpx.post(
        f"{base}/v1/keys",
        headers={"authorization": f"Bearer {KEY}"},
        json={
            "name": "bench",
            "team": "bench",
            "rpm_limit": 100_000_000,
            "tpm_limit": 10_000_000_000,
            "max_budget": 1_000_000.0,
            "budget_duration": "1d",
        },
        timeout=30,
    )
    response.raise_for_status()
    key: str = response.json()["key"]
    return key


def load(
    url: str, concurrency: int, duration: float, stream: bool, model: str, key: str = KEY
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bench.load",
        "--url",
        url,
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--key",
        key,
        "--model",
        model,
    ]
    if stream:
        command.append("--stream")
    output = subprocess.run(command, cwd=ROOT, capture_output=True, check=True).stdout
    result: dict[str, Any] = orjson.loads(output)
    return result


def rss_mib(process: subprocess.Popen[bytes]) -> float:
    proc = psutil.Process(process.pid)
    total = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(True))
    return total / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    parser.add_argument("--database-url", help="log to this database instead of SQLite")
    parser.add_argument("--redis-url", help="keep limits and budgets in this Redis")
    args = parser.parse_args()
    extra_env = {}
    if args.database_url:
        extra_env["GATEWAY_DATABASE_URL"] = args.database_url
    if args.redis_url:
        extra_env["GATEWAY_REDIS_URL"] = args.redis_url
        extra_env["GATEWAY_REDIS_PREFIX"] = f"bench:{os.getpid()}:"
    levels = [int(c) for c in args.concurrency.split(",")]

    upstream_port, gateway_port = free_port(), free_port()
    upstream_proc = start_upstream(upstream_port)
    upstream = f"http://127.0.0.1:{upstream_port}/v1"
    with tempfile.TemporaryDirectory() as tmp:
        gateway_proc, cold_start = start_gateway(gateway_port, upstream, Path(tmp), extra_env)
        key = make_virtual_key(f"http://127.0.0.1:{gateway_port}")
        try:
            idle_rss = rss_mib(gateway_proc)
            rows = []
            for stream in (False, True):
                for concurrency in levels:
                    direct = load(
                        f"{upstream}/chat/completions",
                        concurrency,
                        args.duration,
                        stream,
                        "gpt-4o-mini",
                    )
                    through = load(
                        f"http://127.0.0.1:{gateway_port}/v1/chat/completions",
                        concurrency,
                        args.duration,
                        stream,
                        "bench",
                        key,
                    )
                    rows.append(
                        {
                            "mode": "stream" if stream else "json",
                            "concurrency": concurrency,
                            "direct": direct,
                            "gateway": through,
                        }
                    )
            loaded_rss = rss_mib(gateway_proc)
        finally:
            gateway_proc.terminate()
            upstream_proc.terminate()
            gateway_proc.wait(10)
            upstream_proc.wait(10)

    report = {
        "features": {
            "auth": "virtual key (cached)",
            "limits": "redis" if args.redis_url else "in process",
            "budget": "redis" if args.redis_url else "in process",
            "request_log": "postgresql" if args.database_url else "sqlite",
        },
        "cold_start_s": cold_start,
        "idle_rss_mib": idle_rss,
        "rss_after_load_mib": loaded_rss,
        "duration_s": args.duration,
        "rows": rows,
    }
    print_table(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(f"\nwritten to {args.json}")


def print_table(report: dict[str, Any]) -> None:
    header = (
        f"{'mode':6} {'conc':>4} | {'direct rps':>10} {'p50':>7} {'p99':>7} | "
        f"{'gateway rps':>11} {'p50':>7} {'p90':>7} {'p99':>7} {'err':>4} | "
        f"{'added p50':>9} {'added p99':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in report["rows"]:
        d, g = row["direct"], row["gateway"]
        key = "ttfb_p" if row["mode"] == "stream" else "p"
        print(
            f"{row['mode']:6} {row['concurrency']:>4} | {d['rps']:>10.0f} {d[key + '50_ms']:>7.2f} "
            f"{d[key + '99_ms']:>7.2f} | {g['rps']:>11.0f} {g[key + '50_ms']:>7.2f} "
            f"{g[key + '90_ms']:>7.2f} {g[key + '99_ms']:>7.2f} {g['errors']:>4} | "
            f"{g[key + '50_ms'] - d[key + '50_ms']:>9.2f} "
            f"{g[key + '99_ms'] - d[key + '99_ms']:>9.2f}"
        )
    features = ", ".join(f"{k}: {v}" for k, v in report["features"].items())
    print(
        f"features on: {features}\n"
        "(latencies in ms; for streams, time to first byte)\n"
        f"gateway cold start to first proxied answer: {report['cold_start_s']:.2f} s; "
        f"RSS idle {report['idle_rss_mib']:.0f} MiB, "
        f"after load {report['rss_after_load_mib']:.0f} MiB"
    )


if __name__ == "__main__":
    main()
