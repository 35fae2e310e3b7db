"""aiohttp vs the fast path's own HTTP client: sequential POSTs to the fake upstream.

Each client is called the way the OpenAI-compatible provider calls it (aiohttp: a per-call
ClientTimeout, `async with session.post(...)`, read() or iter_any(); ours: post() then read()
or chunk()). The fake upstream runs in its own process, so the CPU figure is the client's
alone. Rounds alternate between the clients and the median round is reported, so drift in
the machine's load does not favour either.

    .venv/bin/python -m bench.http_client_compare [--calls 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import orjson
import uvloop

from gateway.transport.http_client import HTTPClient

Call = Callable[[], Awaitable[int]]
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
MESSAGES = [{"role": "user", "content": "hello there, how are you today?"}]


def start_upstream() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.upstream", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # "listening on http://127.0.0.1:PORT"
    if not line.startswith("listening on "):
        process.kill()
        raise RuntimeError(f"fake upstream did not start: {line!r}")
    return process, line.removeprefix("listening on ").strip() + "/v1/chat/completions"


def aiohttp_calls(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[Call, Call]:
    async def whole() -> int:
        timeout = aiohttp.ClientTimeout(total=60)
        async with session.post(url, data=body, headers=HEADERS, timeout=timeout) as response:
            return len(await response.read())

    async def stream() -> int:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=60, sock_read=60)
        size = 0
        async with asyncio.timeout(60):
            response = await session.post(url, data=body, headers=HEADERS, timeout=timeout)
        async for data in response.content.iter_any():
            size += len(data)
        response.release()
        return size

    return whole, stream


def lean_calls(client: HTTPClient, url: str, body: bytes) -> tuple[Call, Call]:
    async def whole() -> int:
        response = await client.post(url, HEADERS, body, total=60)
        return len(await response.read())

    async def stream() -> int:
        response = await client.post(url, HEADERS, body, total=60, idle=60)
        response.deadline = None
        size = 0
        while data := await response.chunk():
            size += len(data)
        return size

    return whole, stream


async def measure(call: Call, calls: int) -> dict[str, float]:
    for _ in range(min(200, calls)):  # warm the pool and the code paths
        await call()
    samples = []
    cpu = time.process_time()
    wall = time.perf_counter()
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    samples.sort()
    return {
        "p50_ms": samples[len(samples) // 2] * 1000,
        "p99_ms": samples[int(len(samples) * 0.99)] * 1000,
        "cpu_ms_per_call": cpu / calls * 1000,
        "calls_per_s": calls / wall,
    }


async def compare(url: str, calls: int, rounds: int) -> dict[str, dict[str, float]]:
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": MESSAGES})
    stream_body = orjson.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True})
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
    session = aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",))
    client = HTTPClient()
    cases = {
        "aiohttp": aiohttp_calls(session, url, body)[0],
        "lean": lean_calls(client, url, body)[0],
        "aiohttp, stream": aiohttp_calls(session, url, stream_body)[1],
        "lean, stream": lean_calls(client, url, stream_body)[1],
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    try:
        for _ in range(rounds):
            for name, call in cases.items():
                runs[name].append(await measure(call, calls))
    finally:
        await session.close()
        await client.aclose()
    return {
        name: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for name, results in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per client per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    process, url = start_upstream()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            results = runner.run(compare(url, args.calls, args.rounds))
    finally:
        process.terminate()
        process.wait(timeout=10)
    if args.json:
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
        return
    print(f"{args.calls} sequential calls x {args.rounds} rounds (median round), uvloop")
    print(f"{'client':<18}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/call':>13}{'calls/s':>10}")
    for name, row in results.items():
        print(
            f"{name:<18}{row['p50_ms']:>9.3f}{row['p99_ms']:>9.3f}"
            f"{row['cpu_ms_per_call']:>13.3f}{row['calls_per_s']:>10.0f}"
        )
    for kind in ("", ", stream"):
        old, new = results[f"aiohttp{kind}"], results[f"lean{kind}"]
        saved = old["cpu_ms_per_call"] - new["cpu_ms_per_call"]
        print(
            f"lean vs aiohttp{kind}: {saved * 1000:.0f} us less CPU per call "
            f"({saved / old['cpu_ms_per_call']:.0%}), p50 {new['p50_ms'] - old['p50_ms']:+.3f} ms"
        )


if __name__ == "__main__":
    main()
