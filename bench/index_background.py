"""What background index checks cost the request path (README figure).

    python -m bench.index_background [--seconds 120] [--folder DIR]

Serves a gateway (`gateway serve`, one worker) whose config watches the 100,000-point
collection `bench.index_check` builds, checking it back to back (interval 1 s), and sends it
`local/echo` chat calls from one client for `--seconds`. Each call is timed and sorted by
whether a check's worker process was running when it was sent, so both halves share the same
minutes of this machine's neighbours; the report compares them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import yaml

from bench.services import free_port

KEY = "bench-index-background"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def checking(server: psutil.Process) -> bool:
    for child in server.children(recursive=True):
        try:
            if "gateway.indexes.worker" in " ".join(child.cmdline()):
                return True
        except psutil.Error:
            continue
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--folder", type=Path, default=Path(".gateway/bench-index"))
    args = parser.parse_args()
    name = "bench-100000x384"
    if not (args.folder / name).is_dir():
        sys.exit(f"{args.folder / name}: build it first with python -m bench.index_check")
    work = Path(tempfile.mkdtemp(prefix="index-background-"))
    config = {
        "model_list": [
            {"model_name": "local/echo", "litellm_params": {"model": "local/echo"}},
            {
                "model_name": "local/all-MiniLM-L6-v2",
                "litellm_params": {"model": "local/all-MiniLM-L6-v2"},
            },
        ],
        "indexes": {
            "interval": 1,
            "collections": [
                {
                    "name": name,
                    "location": str(args.folder.resolve()),
                    "model": "local/all-MiniLM-L6-v2",
                    "timestamp_field": "updated_at",
                    "source_field": "source",
                }
            ],
        },
    }
    (work / "gateway.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {
        "GATEWAY_CONFIG": str(work / "gateway.yaml"),
        "GATEWAY_DATA_DIR": str(work / "data"),
        "GATEWAY_MASTER_KEY": KEY,
        "GATEWAY_LOG_LEVEL": "warning",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port)], env=env
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"model": "local/echo", "messages": [{"role": "user", "content": "hello index"}]}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    sys.exit("the gateway did not start")
                time.sleep(0.1)
            process = psutil.Process(server.pid)
            print("waiting for the first background check (30 s after start) ...", flush=True)
            while "gateway_index_status{" not in client.get("/metrics").text:
                time.sleep(0.5)
            during: list[float] = []
            idle: list[float] = []
            checks = 0
            was = False
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                now = checking(process)
                checks += now and not was
                was = now
                started = time.perf_counter()
                client.post("/v1/chat/completions", json=body).raise_for_status()
                (during if now else idle).append((time.perf_counter() - started) * 1000)
    finally:
        server.terminate()
        server.wait(timeout=30)
    for label, values in (("during a check", during), ("between checks", idle)):
        if values:
            print(
                f"{label:15} {len(values):6} calls  p50 {statistics.median(values):.3f} ms  "
                f"p99 {percentile(values, 0.99):.3f} ms"
            )
    print(f"{checks} background checks of 100,000 points ran meanwhile")


if __name__ == "__main__":
    main()
