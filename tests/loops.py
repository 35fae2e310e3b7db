"""Running a test scenario on each event loop the gateway may use, strictly: a leaked task, an
unclosed transport or an exception the loop had to swallow fails the test."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

Run = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]
LOOPS = [asyncio.new_event_loop, uvloop.new_event_loop]
LOOP_NAMES = ["asyncio", "uvloop"]


def loop_runner(loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> Run:
    def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
        problems: list[dict[str, Any]] = []

        async def checked() -> None:
            asyncio.get_running_loop().set_exception_handler(lambda _, ctx: problems.append(ctx))
            await scenario()
            await asyncio.sleep(0.01)  # let the last connection_lost callbacks run
            leftovers = asyncio.all_tasks() - {asyncio.current_task()}
            assert not leftovers, f"tasks left running: {leftovers}"

        gc.collect()  # what earlier tests left behind is not this test's business
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(checked())
            gc.collect()
        assert not problems, problems
        assert not [w for w in caught if issubclass(w.category, ResourceWarning)], caught

    return run
