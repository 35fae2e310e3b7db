"""Closed-loop load generator: N workers, each sending its next request when the last ends.

Runs in its own process (see bench/run.py) so its CPU use is not charged to the gateway.
Prints one JSON object: requests/s, errors and latency percentiles in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import aiohttp
import orjson


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


async def worker(
    session: aiohttp.ClientSession,
    url: str,
    payload: bytes,
    headers: dict[str, str],
    stream: bool,
    until: float,
    latencies: list[float],
    first_bytes: list[float],
    errors: list[str],
) -> None:
    while time.perf_counter() < until:
        started = time.perf_counter()
        try:
            async with session.post(url, data=payload, headers=headers) as response:
                if stream:
                    first = True
                    async for _ in response.content.iter_any():
                        if first:
                            first_bytes.append(time.perf_counter() - started)
                            first = False
                else:
                    await response.read()
                if response.status != 200:
                    errors.append(str(response.status))
                    continue
        except aiohttp.ClientError as exc:
            errors.append(type(exc).__name__)
            continue
        latencies.append(time.perf_counter() - started)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": args.model,
        "messages": [{"role": "user", "content": "Say hello to the benchmark, please."}],
    }
    if args.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    payload = orjson.dumps(body)
    headers = {"content-type": "application/json", "authorization": f"Bearer {args.key}"}
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm the connections so the measured window starts in steady state.
        warm_until = time.perf_counter() + args.warmup
        await asyncio.gather(
            *(
                worker(session, args.url, payload, headers, args.stream, warm_until, [], [], [])
                for _ in range(args.concurrency)
            )
        )
        latencies: list[float] = []
        first_bytes: list[float] = []
        errors: list[str] = []
        started = time.perf_counter()
        until = started + args.duration
        await asyncio.gather(
            *(
                worker(
                    session,
                    args.url,
                    payload,
                    headers,
                    args.stream,
                    until,
                    latencies,
                    first_bytes,
                    errors,
                )
                for _ in range(args.concurrency)
            )
        )
        elapsed = time.perf_counter() - started
    latencies.sort()
    first_bytes.sort()
    result: dict[str, Any] = {
        "requests": len(latencies),
        "errors": len(errors),
        "rps": len(latencies) / elapsed,
    }
    for q in (50, 90, 99):
        result[f"p{q}_ms"] = percentile(latencies, q) * 1000
        if args.stream:
            result[f"ttfb_p{q}_ms"] = percentile(first_bytes, q) * 1000
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", default="bench")
    parser.add_argument("--key", default="bench")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()
    import uvloop

    print(orjson.dumps(uvloop.run(run(args))).decode())


if __name__ == "__main__":
    main()
