"""The classic loader's worker: calls in order on one daemon thread, results and errors
through futures, calls not started cancelled at shutdown."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError

import pytest

from gateway.core.daemon_worker import DaemonWorker


def test_runs_calls_in_order_on_one_daemon_thread() -> None:
    worker: DaemonWorker[int, tuple[int, str, bool]] = DaemonWorker("test-worker")

    def where(n: int) -> tuple[int, str, bool]:
        thread = threading.current_thread()
        return n, thread.name, thread.daemon

    futures = [worker.submit(where, n) for n in range(5)]
    results = [f.result(timeout=10) for f in futures]
    assert results == [(n, "test-worker", True) for n in range(5)]
    worker.shutdown()


def test_an_error_reaches_the_future_and_the_worker_goes_on() -> None:
    worker: DaemonWorker[int, float] = DaemonWorker("test-worker")
    failed = worker.submit(lambda n: 1 / n, 0)
    with pytest.raises(ZeroDivisionError):
        failed.result(timeout=10)
    assert worker.submit(lambda n: 1 / n, 4).result(timeout=10) == 0.25
    worker.shutdown()


def test_shutdown_cancels_what_has_not_started_and_refuses_more() -> None:
    worker: DaemonWorker[int, int] = DaemonWorker("test-worker")
    started, release = threading.Event(), threading.Event()

    def first(n: int) -> int:
        started.set()
        release.wait(30)
        return n

    running = worker.submit(first, 1)
    assert started.wait(10)
    queued = worker.submit(lambda n: n, 2)
    assert worker.shutdown() is running  # at once, with the call still under way
    assert queued.cancelled()
    with pytest.raises(CancelledError):
        queued.result(timeout=1)
    release.set()
    assert running.result(timeout=10) == 1
    with pytest.raises(RuntimeError, match="test-worker is shut down"):
        worker.submit(lambda n: n, 3)
