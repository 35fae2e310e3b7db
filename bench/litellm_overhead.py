"""litellm's per-call cost over a direct pooled HTTP call, against the same loopback upstream.

This is the measurement behind the fast path for OpenAI-compatible upstreams
(gateway/providers/openai_compat.py). Run: `.venv/bin/python -m bench.litellm_overhead`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import orjson

from bench.services import free_port, start_upstream, stop

MESSAGES = [{"role": "user", "content": "Say hello to the benchmark, please."}]


async def timed(n: int, call: Callable[[], Awaitable[None]]) -> list[float]:
    for _ in range(20):
        await call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def measure(base: str, n: int) -> dict[str, dict[str, float]]:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm

    litellm.telemetry = False
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": MESSAGES})
    stream_body = orjson.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True})
    headers = {"content-type": "application/json", "authorization": "Bearer sk-x"}
    async with aiohttp.ClientSession() as session:

        async def direct() -> None:
            async with session.post(f"{base}/chat/completions", data=body, headers=headers) as r:
                orjson.loads(await r.read())

        async def direct_stream() -> None:
            url = f"{base}/chat/completions"
            async with session.post(url, data=stream_body, headers=headers) as r:
                async for _ in r.content.iter_any():
                    pass

        async def via_litellm() -> None:
            await litellm.acompletion(
                model="openai/gpt-4o-mini", messages=MESSAGES, api_base=base, api_key="sk-x"
            )

        async def via_litellm_stream() -> None:
            response = await litellm.acompletion(
                model="openai/gpt-4o-mini",
                messages=MESSAGES,
                api_base=base,
                api_key="sk-x",
                stream=True,
            )
            async for _ in response:
                pass

        results = {}
        for name, call in (
            ("direct aiohttp", direct),
            ("litellm.acompletion", via_litellm),
            ("direct aiohttp, stream", direct_stream),
            ("litellm.acompletion, stream", via_litellm_stream),
        ):
            samples = await timed(n, call)
            results[name] = {
                "mean_ms": statistics.fmean(samples),
                "p50_ms": statistics.median(samples),
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=500)
    args = parser.parse_args()
    port = free_port()
    upstream = start_upstream(port)
    try:
        results = asyncio.run(measure(f"http://127.0.0.1:{port}/v1", args.n))
    finally:
        stop(upstream)
    for name, figures in results.items():
        print(f"{name:30} mean {figures['mean_ms']:6.3f} ms   p50 {figures['p50_ms']:6.3f} ms")
    for kind in ("", ", stream"):
        extra = results[f"litellm.acompletion{kind}"]["p50_ms"]
        extra -= results[f"direct aiohttp{kind}"]["p50_ms"]
        print(f"litellm per-call overhead{kind or ''}: +{extra:.3f} ms (p50)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
