"""`python -m bench.sizing`: the figures a replica is sized by (README "Operations").

One `gateway serve` worker, all-on as a replica runs (virtual key with RPM/TPM and a budget in
Redis, request log in PostgreSQL, OTLP traces to a loopback receiver), against the loopback
fake upstream, measures:

- CPU per proxied call: the worker's CPU time over a fixed number of calls at a few
  concurrencies (the upstream answers at once, so this is the gateway's own work);
- RSS idle, and while many calls wait on a slow upstream (LLM calls last seconds: memory
  follows the calls in flight, not the rate);
- the bundled embedding model: RSS once loaded, and CPU per local embeddings call.

Figures, not assertions: run it on the machine you size for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.configs import CONFIGS, KEY_REQUESTS, MESSAGE, write_gateway_files
from bench.services import (
    MASTER_KEY,
    Gateway,
    feature_settings,
    free_port,
    make_key,
    settled_rss_mib,
    start_gateway,
    start_upstream,
    stop,
    tree_cpu_s,
    tree_rss_mib,
)

SLOW_MS = 3000  # the slow model's latency: long enough to sample RSS with every call open


def _config(directory: Path, upstream: str) -> tuple[Path, Path]:
    config, prompts = write_gateway_files(directory, upstream)
    models = orjson.loads(config.read_bytes())["model_list"]
    models += [
        {
            "model_name": "slow",
            "litellm_params": {
                "model": "openai/gpt-4o-mini",
                "api_base": f"{upstream}/_with/latency={SLOW_MS}",
            },
        },
        {
            "model_name": "local/all-MiniLM-L6-v2",
            "litellm_params": {"model": "local/all-MiniLM-L6-v2"},
            "model_info": {"mode": "embedding"},
        },
    ]
    config.write_bytes(orjson.dumps({"model_list": models}))
    return config, prompts


async def _calls(
    base: str, key: str, path: str, body: dict[str, Any], count: int, concurrency: int
) -> int:
    """Sends `count` calls, `concurrency` at a time; returns how many answered 200."""
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    data = orjson.dumps(body)
    remaining = iter(range(count))
    ok = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal ok
            for _ in remaining:
                async with session.post(base + path, data=data, headers=headers) as answer:
                    await answer.read()
                    ok += answer.status == 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


def _chat(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": MESSAGE}]}


def cpu_per_call(gateway: Gateway, key: str, concurrency: int, count: int) -> float:
    """Milliseconds of the gateway's CPU per proxied call."""
    pid = gateway.process.pid
    before = tree_cpu_s(pid)
    ok = asyncio.run(
        _calls(gateway.base, key, "/v1/chat/completions", _chat("bench"), count, concurrency)
    )
    spent = tree_cpu_s(pid) - before
    if ok != count:
        raise SystemExit(f"{count - ok} of {count} calls failed at concurrency {concurrency}")
    return spent * 1000 / count


def rss_in_flight(gateway: Gateway, key: str, in_flight: int) -> float:
    """The gateway's RSS while `in_flight` calls wait on the slow model."""

    async def sample() -> float:
        calls = asyncio.create_task(
            _calls(gateway.base, key, "/v1/chat/completions", _chat("slow"), in_flight, in_flight)
        )
        await asyncio.sleep(SLOW_MS / 1000 * 0.7)
        rss = tree_rss_mib(gateway.process.pid)
        await calls
        return rss

    return asyncio.run(sample())


def embedding_figures(gateway: Gateway, count: int) -> tuple[float, float, float]:
    """(RSS once the bundled model is loaded, CPU ms per local embeddings call, load s)."""
    body = {"model": "local/all-MiniLM-L6-v2", "input": MESSAGE}
    started = time.perf_counter()
    asyncio.run(_calls(gateway.base, MASTER_KEY, "/v1/embeddings", body, 1, 1))
    load_s = time.perf_counter() - started
    pid = gateway.process.pid
    before = tree_cpu_s(pid)
    asyncio.run(_calls(gateway.base, MASTER_KEY, "/v1/embeddings", body, count, 4))
    cpu_ms = (tree_cpu_s(pid) - before) * 1000 / count
    return settled_rss_mib(pid), cpu_ms, load_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=4000, help="calls per CPU measurement")
    parser.add_argument("--concurrency", default="1,32", help="e.g. 1,32")
    parser.add_argument("--in-flight", default="250,1000", help="slow calls open at once")
    parser.add_argument("--embeddings", type=int, default=200, help="local embeddings calls")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        port = free_port()
        upstream = start_upstream(port, work / "upstream.log")
        stack.callback(stop, upstream)
        config, prompts = _config(work, f"http://127.0.0.1:{port}")
        settings = feature_settings(CONFIGS["all-on"], stack) | {
            "GATEWAY_CONFIG": str(config),
            "GATEWAY_PROMPTS_DIR": str(prompts),
            "GATEWAY_DATA_DIR": str(work / "data"),
        }
        gateway = start_gateway(settings, 1, work / "gateway.log")
        stack.callback(stop, gateway.process)
        key = make_key(gateway, KEY_REQUESTS["limited"])
        print("all-on replica, one worker (Redis, PostgreSQL, OTLP traces, virtual key)")
        idle = settled_rss_mib(gateway.process.pid)
        print(f"  RSS idle                          {idle:7.0f} MiB")
        for level in (int(x) for x in args.concurrency.split(",")):
            cpu_per_call(gateway, key, level, min(500, args.calls))  # warm up
            ms = cpu_per_call(gateway, key, level, args.calls)
            print(f"  CPU per call, {level:4d} clients        {ms:7.3f} ms")
        for count in (int(x) for x in args.in_flight.split(",")):
            rss = rss_in_flight(gateway, key, count)
            print(f"  RSS, {count:5d} calls in flight      {rss:7.0f} MiB")
        rss, cpu_ms, load_s = embedding_figures(gateway, args.embeddings)
        print(f"  RSS, embedding model loaded       {rss:7.0f} MiB (loaded in {load_s:.1f} s)")
        print(f"  CPU per local embeddings call     {cpu_ms:7.1f} ms (one short input)")


if __name__ == "__main__":
    main()
