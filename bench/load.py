"""Closed-loop load generator: N keep-alive connections, each sending its next request as soon
as the last answer is complete.

It speaks HTTP/1.1 over raw asyncio transports with httptools' C parser and a pre-encoded
request, all in callbacks (no task per request): ~20 us of CPU per request, about a fifth of
an aiohttp client's, so on a 2-core machine it leaves the cores to the gateway and upstream.
Several processes can share one measuring window (`--start-at`, see bench/run.py).

Prints one JSON object: the latency and time-to-first-body-byte of every request that started
in the window (ms), errors by kind, and the CPU this process used during the window.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from typing import Any, cast
from urllib.parse import urlsplit

import httptools
import orjson
import uvloop


class Run:
    """Shared state of one process's connections: the window, the samples, the stop rule."""

    def __init__(self, args: argparse.Namespace, request: bytes) -> None:
        self.request = request
        self.window_start: float = time.perf_counter() + (args.start_at - time.time())
        self.until: float = self.window_start + args.duration  # also the cap with --requests
        self.budget: int = args.requests  # 0: no request limit, only the window
        self.sent = 0
        self.latencies: list[float] = []
        self.first_bytes: list[float] = []
        self.errors: Counter[str] = Counter()
        self.connections: list[Connection] = []
        self.open = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def active(self) -> bool:
        return time.perf_counter() < self.until

    def take(self) -> bool:
        """May a connection send one more request?"""
        if self.budget:
            if self.sent >= self.budget:
                return False
            self.sent += 1
        return self.active()

    def record(self, started: float, first: float, ended: float, error: str | None) -> None:
        if started < self.window_start:
            return  # warm-up
        if error is not None:
            self.errors[error] += 1
            return
        self.latencies.append(round((ended - started) * 1000, 4))
        self.first_bytes.append(round((first - started) * 1000, 4))

    def closed(self) -> None:
        self.open -= 1
        if self.open == 0 and not self.done.done():
            self.done.set_result(None)


class Connection(asyncio.Protocol):
    """One keep-alive connection; reconnects when the server closes it mid-run."""

    def __init__(self, run: Run, host: str, port: int) -> None:
        self.run, self.host, self.port = run, host, port
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.started = self.first = 0.0
        self.in_flight = self.finished = False
        run.open += 1
        run.connections.append(self)

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.parser = httptools.HttpResponseParser(self)
        self.next()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.run.record(self.started, 0.0, 0.0, "bad response")
            self.in_flight = False
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.in_flight:
            self.in_flight = False
            self.run.record(self.started, 0.0, 0.0, "connection lost")
        self.after_close()

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        if not self.first:
            self.first = time.perf_counter()

    def on_message_complete(self) -> None:
        ended = time.perf_counter()
        self.in_flight = False
        status = self.parser.get_status_code()
        error = None if status == 200 else f"HTTP {status}"
        self.run.record(self.started, self.first or ended, ended, error)
        if self.parser.should_keep_alive():
            self.next()
        elif self.transport is not None:
            self.transport.close()  # connection_lost reconnects

    # our own
    def next(self) -> None:
        if not self.run.take():
            self.finish()
            return
        assert self.transport is not None
        self.started, self.first, self.in_flight = time.perf_counter(), 0.0, True
        self.transport.write(self.run.request)

    def after_close(self) -> None:
        if self.finished:
            return
        if self.run.active():
            asyncio.get_running_loop().create_task(self.reconnect())
        else:
            self.finish()

    def finish(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.finished:
            self.finished = True
            self.run.closed()

    async def reconnect(self) -> None:
        await asyncio.sleep(0.01)  # do not spin while the server is away
        await connect(self, self.host, self.port)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def connect(conn: Connection, host: str, port: int) -> None:
    try:
        await asyncio.get_running_loop().create_connection(lambda: conn, host, port)
    except OSError as exc:
        conn.run.record(time.perf_counter(), 0.0, 0.0, f"connect: {type(exc).__name__}")
        conn.after_close()


def encode_request(url: str, body: bytes, key: str) -> tuple[bytes, str, int]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (
        f"POST {parts.path} HTTP/1.1\r\nhost: {host}:{port}\r\n"
        f"content-type: application/json\r\nauthorization: Bearer {key}\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body, host, port


async def run_load(args: argparse.Namespace) -> dict[str, Any]:
    request, host, port = encode_request(args.url, args.body.encode(), args.key)
    run = Run(args, request)
    for _ in range(args.concurrency):
        await connect(Connection(run, host, port), host, port)
    await asyncio.sleep(max(0.0, run.window_start - time.perf_counter()))
    cpu_start = time.process_time()
    # Bounded: in-flight requests get `timeout` seconds after the window to finish.
    try:
        await asyncio.wait_for(asyncio.shield(run.done), args.duration + args.timeout)
    except TimeoutError:
        for conn in run.connections:
            run.errors["timeout"] += conn.in_flight
            conn.in_flight, conn.finished = False, True
            conn.abort()
    elapsed = time.perf_counter() - run.window_start
    cpu = time.process_time() - cpu_start
    return {
        "latencies_ms": run.latencies,
        "ttfb_ms": run.first_bytes,
        "errors": dict(run.errors),
        "window_s": elapsed if args.requests else args.duration,
        "cpu_s": cpu,
        "cpu_pct": 100 * cpu / max(elapsed, 1e-9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="the JSON request body")
    parser.add_argument("--key", default="bench")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0, help="measuring window, s")
    parser.add_argument("--requests", type=int, default=0, help="send N requests, no window")
    parser.add_argument("--start-at", type=float, default=0.0, help="window start (time.time())")
    parser.add_argument("--timeout", type=float, default=10.0, help="grace after the window")
    args = parser.parse_args()
    if not args.start_at:
        args.start_at = time.time() + 0.5
    if args.requests:
        args.start_at = time.time()  # every request counts; no warm-up
    result = orjson.dumps(uvloop.run(run_load(args))) + b"\n"
    os.set_blocking(sys.stdout.fileno(), True)  # libuv may have left it non-blocking
    sys.stdout.buffer.write(result)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
