"""Where the gateway's event loop stalls: every callback over 0.3 ms and every garbage
collection, timed inside the gateway process.

    PYTHONPATH=bench/stalls BENCH_STALLS=/tmp/stalls python -m bench.run --features all-on \
        --concurrency 1 --duration 10 [--confined]

Python imports `sitecustomize` at start-up in every process; this one acts only in a process
running `gateway serve` with BENCH_STALLS set. It swaps uvloop for asyncio's own loop (whose
callbacks can be wrapped; the callbacks are the same ones) and every 5 s writes a table to
`$BENCH_STALLS.<pid>`: count, mean and longest duration, and what ran (the task's coroutine
for a task step). A callback that used less than half its wall time on CPU is marked
"waited": it was held off the CPU or the GIL, not slow by its own work; "waited for own
threads" when the process's other threads used at least a third of that wall time meanwhile
(the request-log writer, the pollers' worker threads), else another process had the core.
Jobs of worker threads (asyncio.to_thread, executors) that used over 0.3 ms of CPU are
listed too, by their CPU time: on one CPU the event loop waits behind them without any of
its callbacks being slow (for the CPU, or for the GIL while they run Python). Collections
are counted whatever they took ("every one"), those before the server froze its heap apart.
A measurement tool, never on in the benchmark's figures.
"""

from __future__ import annotations

import os
import sys

OUT = os.environ.get("BENCH_STALLS")

# `python -m gateway serve` (bench.ab's way) shows "-m" here: runpy sets argv[0] later.
if OUT and "serve" in sys.argv[1:2] and ("gateway" in sys.argv[0] or sys.argv[0] == "-m"):
    import asyncio
    import asyncio.events
    import collections
    import functools
    import gc
    import threading
    import time
    from typing import Any

    import uvloop

    uvloop.new_event_loop = asyncio.new_event_loop  # type: ignore[assignment]
    uvloop.EventLoopPolicy = asyncio.DefaultEventLoopPolicy
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    seconds: collections.defaultdict[tuple[str, str], float] = collections.defaultdict(float)
    longest: collections.defaultdict[tuple[str, str], float] = collections.defaultdict(float)
    started = time.perf_counter()

    def note(what: str, took: float, cpu: float | None = None, others: float = 0.0) -> None:
        key = (what, "over 1 ms" if took > 0.001 else "over 0.3 ms")
        if cpu is not None and cpu < took / 2:
            whom = " for own threads" if others >= took / 3 else ""
            key = (what, f"{key[1]}, waited{whom}")
        counts[key] += 1
        seconds[key] += took
        longest[key] = max(longest[key], took)

    original = asyncio.events.Handle._run

    def timed(handle: Any) -> None:
        begun, begun_cpu, begun_all = time.perf_counter(), time.thread_time(), time.process_time()
        original(handle)
        took = time.perf_counter() - begun
        if took > 0.0003:
            callback = handle._callback
            what = getattr(callback, "__qualname__", None) or repr(callback)[:80]
            task: Any = getattr(callback, "__self__", None)
            if hasattr(task, "get_coro"):
                what = getattr(task.get_coro(), "__qualname__", what)
            cpu = time.thread_time() - begun_cpu
            note(what, took, cpu, time.process_time() - begun_all - cpu)

    asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]
    import concurrent.futures.thread as pool_threads

    original_job = pool_threads._WorkItem.run

    def timed_job(item: Any) -> None:
        begun_cpu = time.thread_time()
        original_job(item)
        cpu = time.thread_time() - begun_cpu
        if cpu > 0.0003:
            fn = item.fn
            if isinstance(fn, functools.partial) and fn.args:  # to_thread: (context.run, f)
                fn = fn.args[0]
            what = getattr(fn, "__qualname__", None) or repr(fn)[:80]
            note(f"thread job {what} (its CPU time)", cpu)

    pool_threads._WorkItem.run = timed_job  # type: ignore[method-assign]
    collecting = [0.0, 0.0]

    def collection(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collecting[:] = time.perf_counter(), time.thread_time()
            return
        took = time.perf_counter() - collecting[0]
        cpu = time.thread_time() - collecting[1]
        what = f"gc generation {info['generation']}"
        if not gc.get_freeze_count():  # the server freezes its heap once started
            what += " while starting"
        counts[what, "every one"] += 1  # how often, whatever it took
        seconds[what, "every one"] += took
        longest[what, "every one"] = max(longest[what, "every one"], took)
        if took > 0.0003:
            note(what, took, cpu)
        if info["generation"] == 2:
            note(f"gc generation 2 at {time.perf_counter() - started:.1f} s", took)

    gc.callbacks.append(collection)

    def write() -> None:
        while True:
            time.sleep(5)
            with open(f"{OUT}.{os.getpid()}", "w") as out:
                for key, count in counts.most_common(60):
                    mean_ms, max_ms = seconds[key] * 1e3 / count, longest[key] * 1e3
                    what, kind = key
                    out.write(f"{count:7d} {mean_ms:8.2f} ms (max {max_ms:6.2f}) {what} ({kind})\n")

    threading.Thread(target=write, name="bench-stalls", daemon=True).start()
