"""The processes and services a benchmark run owns: the fake upstream, the gateway, a Redis
key prefix and a PostgreSQL database, each cleaned up by whoever started it."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil  # type: ignore[import-untyped]

from bench.configs import Features
from bench.cpu_quota import joining

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
MASTER_KEY = "bench-master-key"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
START_TIMEOUT_S = 60.0


class BenchError(RuntimeError):
    """A benchmark step failed; the message says which and why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def reachable(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
        return True
    return False


# Set by `--realtime` (bench.run, bench.ab): the pinned processes also run at this SCHED_FIFO
# priority, so that other work on the machine cannot delay their wake-ups (needs root).
REALTIME_PRIORITY: int | None = None


def pinned(command: list[str], cpus: str | None) -> list[str]:
    """`command` confined to `cpus` (taskset's list syntax, e.g. "1" or "0-2"); its threads
    and the processes it starts inherit the mask (and the real-time priority, if set).
    None: unconfined."""
    if cpus is None:
        return command
    command = ["taskset", "-c", cpus, *command]
    if REALTIME_PRIORITY is not None:
        command = ["chrt", "-f", str(REALTIME_PRIORITY), *command]
    return command


def log_tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(no log)"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:]) or "(empty log)"


def stop(process: subprocess.Popen[bytes] | None) -> None:
    """Terminate a process and everything it started (uvicorn workers), by pid."""
    if process is None or process.poll() is not None:
        return
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    _gone, alive = psutil.wait_procs(children, timeout=5)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants."""
    root = psutil.Process(pid)
    total = 0
    for proc in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total / 2**20


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live descendants."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def named_cpu_s(name: str) -> float:
    """CPU seconds used so far by every process with this name (e.g. redis-server, postgres):
    read-only, to see whether a shared service is the bottleneck."""
    total = 0.0
    for proc in psutil.process_iter(["name", "cpu_times"]):
        if proc.info["name"] == name and proc.info["cpu_times"] is not None:
            total += proc.info["cpu_times"].user + proc.info["cpu_times"].system
    return total


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores."""
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    # Linux counts guest time inside user time already.
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    return total - idle, total


def settled_rss_mib(pid: int, limit_s: float = 3.0) -> float:
    """RSS once background start-up work stops growing it (two samples within 1%)."""
    last = tree_rss_mib(pid)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = tree_rss_mib(pid)
        if abs(now - last) <= 0.01 * last:
            return now
        last = now
    return last


def _poll(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, log: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(
                f"{what} exited during start (code {process.returncode}); log tail:\n"
                + log_tail(log)
            )
        if ready():
            return
        time.sleep(0.005)
    raise BenchError(
        f"{what} did not answer within {START_TIMEOUT_S:.0f} s; log tail:\n" + log_tail(log)
    )


def _answers(method: str, url: str, **kwargs: object) -> Callable[[], bool]:
    def check() -> bool:
        try:
            response = httpx.request(method, url, timeout=5, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError:
            return False
        return response.status_code == 200

    return check


def start_upstream(
    port: int, log: Path = Path(os.devnull), cpus: str | None = None
) -> subprocess.Popen[bytes]:
    command = pinned([sys.executable, "-m", "tests.fakes.upstream", "--port", str(port)], cpus)
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        _poll(_answers("GET", f"http://{HOST}:{port}/v1/models"), process, "fake upstream", log)
    except BaseException:
        stop(process)
        raise
    return process


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    base: str
    log: Path
    cold_start_s: float


def gateway_env(port: int, settings: dict[str, str]) -> dict[str, str]:
    # A developer's own GATEWAY_* settings must not leak into the benchmark.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env |= {
        "GATEWAY_HOST": HOST,
        "GATEWAY_PORT": str(port),
        "GATEWAY_MASTER_KEY": MASTER_KEY,
        "GATEWAY_LOG_LEVEL": "warning",
        **settings,
    }
    return env


def start_gateway(
    settings: dict[str, str],
    workers: int,
    log: Path,
    root: Path = ROOT,
    cgroup: Path | None = None,
    cpus: str | None = None,
) -> Gateway:
    """`gateway serve` as the README runs it; cold start ends at the first proxied answer.
    `root` other than this checkout (a worktree of another revision) runs that tree's code;
    `cgroup` (a `cgroup.procs` file) puts the gateway and its workers under a CPU quota;
    `cpus` pins them to those CPUs (taskset)."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    command = [str(Path(sys.executable).parent / "gateway"), "serve", "--workers", str(workers)]
    if root != ROOT:  # `python -m` from the tree's root imports its package, not ours
        command = [sys.executable, "-m", "gateway", *command[1:]]
    command = pinned(command, cpus)
    if cgroup is not None:
        command = joining(cgroup, command)
    first_call = _answers(
        "POST",
        f"{base}/v1/chat/completions",
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        json={"model": "bench", "messages": [{"role": "user", "content": "hi"}]},
    )
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=root, env=gateway_env(port, settings), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _poll(lambda: reachable(port) and first_call(), process, "gateway", log)
    except BaseException:
        stop(process)
        raise
    return Gateway(process, base, log, time.perf_counter() - started)


def make_key(gateway: Gateway, request: dict[str, object]) -> str:
    response = httpx.post(
        f"{gateway.base}/v1/keys",
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        json=request,
        timeout=30,
    )
    if response.status_code != 200:
        raise BenchError(
            f"POST /v1/keys answered {response.status_code}: {response.text}\n"
            f"gateway log tail:\n{log_tail(gateway.log)}"
        )
    key: str = response.json()["key"]
    return key


@contextlib.contextmanager
def otlp_receiver(log: Path = Path(os.devnull), cpus: str | None = None) -> Iterator[str]:
    """A loopback OTLP/HTTP trace receiver process for the gateway to export spans to."""
    port = free_port()
    command = pinned([sys.executable, "-m", "tests.fakes.otlp", "--port", str(port)], cpus)
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        _poll(lambda: reachable(port), process, "OTLP receiver", log)
        yield f"http://{HOST}:{port}"
    finally:
        stop(process)


def feature_settings(
    features: Features, stack: contextlib.ExitStack, cpus: str | None = None
) -> dict[str, str]:
    """The gateway settings a configuration needs, starting what stands behind them (the
    processes it starts pinned to `cpus`, if given)."""
    settings: dict[str, str] = {}
    if features.redis:
        settings["GATEWAY_REDIS_URL"] = REDIS_URL
        settings["GATEWAY_REDIS_PREFIX"] = stack.enter_context(redis_prefix())
    if features.postgres:
        settings["GATEWAY_DATABASE_URL"] = stack.enter_context(postgres_database())
    if features.tracing:
        settings["GATEWAY_OTLP_ENDPOINT"] = stack.enter_context(otlp_receiver(cpus=cpus))
    return settings


@contextlib.contextmanager
def redis_prefix() -> Iterator[str]:
    """A fresh key prefix in the local Redis; its keys are deleted afterwards."""
    import redis

    prefix = f"bench:{secrets.token_hex(4)}:"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
        yield prefix
    finally:
        with contextlib.suppress(redis.RedisError):
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
        client.close()


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL, dropped afterwards; yields its gateway URL."""
    import psycopg

    name = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
