"""One daemon thread that runs submitted calls in order, each with a Future.

concurrent.futures' ThreadPoolExecutor joins its threads when the interpreter exits, so a
call that never returns (a model load on a stuck file system) would keep the process from
exiting after the app has closed. This worker's thread is a daemon: such a call is left
behind and the process still exits.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

A = TypeVar("A")
R = TypeVar("R")

_Job = tuple[Future[R], Callable[[A], R], A]


class DaemonWorker(Generic[A, R]):
    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[_Job[R, A] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._running: Future[R] | None = None

    def submit(self, function: Callable[[A], R], argument: A) -> Future[R]:
        future: Future[R] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name} is shut down")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._jobs.put((future, function, argument))
        return future

    def shutdown(self) -> Future[R] | None:
        """Cancels the calls not started and returns at once, with the future of the one
        under way (if any): the caller waits for it, or leaves it behind."""
        with self._lock:
            self._closed = True
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job[0].cancel()
            self._jobs.put(None)
            return self._running

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, function, argument = job
            with self._lock:  # a job taken just before shutdown is cancelled, not run unseen
                if self._closed:
                    future.cancel()
                if not future.set_running_or_notify_cancel():
                    continue
                self._running = future
            try:
                result = function(argument)
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)
            else:
                future.set_result(result)
            finally:
                with self._lock:
                    self._running = None
