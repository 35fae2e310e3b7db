"""Classic models: one-row infer on the example model through the gateway, against its
predict in process (issue 18's figures; figures, not pass/fail).

    python -m bench.classic [--duration 5] [--clients 1,32] [--batch 32] [--batch-time 0.002]

In a throwaway project: `gateway registry train-example` (iris, skops), then the runtime the
gateway uses, called in this process on one row (predict and predict_proba, as an infer
that names no outputs asks), then `gateway serve` (one worker; the request log, metrics and
the drift sample on, as in production) driven by bench/load.py's closed loop with the same
row as a v2 JSON infer, without adaptive batching and then with it (`--batch 0`: without
only). Prints a table; JSON in bench/results/classic.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from bench.drive import drive, percentile
from bench.services import ROOT, BenchError, free_port, stop

KEY = "bench-classic"
ROW = [[6.8, 2.8, 4.8, 1.4]]
BODY = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": ROW}]}


def config(batch: int, batch_time: float) -> dict[str, Any]:
    model: dict[str, Any] = {"model_name": "iris", "litellm_params": {"model": "registry/iris"}}
    if batch:
        model["model_info"] = {"max_batch_size": batch, "max_batch_time": batch_time}
    return {"model_list": [model]}


def environment(project: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return env | {
        "GATEWAY_CONFIG": str(project / "gateway.yaml"),
        "GATEWAY_DATA_DIR": str(project / "data"),
        "GATEWAY_PROMPTS_DIR": str(project / "prompts"),
        "GATEWAY_MASTER_KEY": KEY,
        "GATEWAY_LOG_LEVEL": "warning",
        "PYTHONPATH": str(ROOT),
    }


def in_process(artifact: dict[str, Any], calls: int) -> dict[str, float]:
    """The gateway's own runtime on one row, timed per call (ms)."""
    from gateway.classic.artifacts import Artifact, load
    from gateway.classic.signature import Signature
    from gateway.classic.tensors import decode_request

    signature = Signature.model_validate(artifact["signature"])
    runtime = load(Artifact(artifact["artifact"], artifact["artifact_sha256"], "skops"), signature)
    request = decode_request(BODY)
    outputs = signature.output_names()
    for _ in range(200):  # warm-up
        runtime.predict(request.inputs, outputs)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        runtime.predict(request.inputs, outputs)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"p50_ms": statistics.median(times), "p99_ms": percentile(times, 99) or 0.0}


def serve(project: Path, port: int) -> subprocess.Popen[bytes]:
    log = (project / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port)],
        cwd=project,
        env=environment(project),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(
                f"{base}/v2/models/iris/ready", headers={"authorization": f"Bearer {KEY}"}
            )
            if answer.status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.2)
    stop(process)
    raise BenchError(
        f"the gateway did not serve iris: {(project / 'serve.log').read_text()[-2000:]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load level")
    parser.add_argument("--clients", default="1,32", help="closed-loop clients per level")
    parser.add_argument("--calls", type=int, default=5000, help="in-process predict calls")
    parser.add_argument("--batch", type=int, default=32, help="max_batch_size; 0: no batching")
    parser.add_argument("--batch-time", type=float, default=0.002, help="max_batch_time, s")
    args = parser.parse_args()
    levels = [int(n) for n in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-classic-") as folder:
        project = Path(folder)
        (project / "gateway.yaml").write_text(yaml.safe_dump(config(0, 0)))
        (project / "prompts").mkdir()
        env = environment(project)
        command = [sys.executable, "-m", "gateway", "registry"]
        subprocess.run([*command, "train-example"], env=env, cwd=project, check=True)
        shown = subprocess.run(
            [*command, "show", "iris@production"], env=env, cwd=project, check=True,
            capture_output=True, text=True,
        )  # fmt: skip
        direct = in_process(json.loads(shown.stdout), args.calls)
        rows = []
        for batch in sorted({0, args.batch}):
            (project / "gateway.yaml").write_text(yaml.safe_dump(config(batch, args.batch_time)))
            process = serve(project, port := free_port())
            try:
                url = f"http://127.0.0.1:{port}/v2/models/iris/infer"
                body = orjson.dumps(BODY).decode()
                for clients in levels:
                    watch = {"gateway": process.pid}
                    found = drive(url, body, KEY, clients, args.duration, watch=watch)
                    rows.append({"batch": batch, "clients": clients, **found})
            finally:
                stop(process)
    report(direct, rows, args.batch_time)


def report(direct: dict[str, float], rows: list[dict[str, Any]], batch_time: float) -> None:
    print(
        f"in process (the gateway's runtime, predict + predict_proba, one row): "
        f"p50 {direct['p50_ms']:.3f} ms, p99 {direct['p99_ms']:.3f} ms"
    )
    heads = ("batching", "clients", "p50 ms", "p99 ms", "added p50", "calls/s", "gw CPU%")
    widths = (16, 8, 8, 8, 10, 9, 8)
    print(" ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True)))
    for row in rows:
        batching = f"{row['batch']} / {batch_time * 1000:g} ms" if row["batch"] else "off"
        if not row["requests"]:
            print(f"{batching:>16} {row['clients']:>8} no answers: {row['error_kinds']}")
            continue
        added = row["p50_ms"] - direct["p50_ms"]
        print(
            f"{batching:>16} {row['clients']:>8} {row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f} "
            f"{added:>10.3f} {row['rps']:>9.0f} {row.get('gateway_cpu_pct', 0.0):>8.0f}"
        )
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    out = {"in_process": direct, "gateway": rows}
    (results / "classic.json").write_text(json.dumps(out, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
