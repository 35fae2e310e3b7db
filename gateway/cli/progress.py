"""Progress of long CLI work, on stderr so stdout stays the report: a rich bar on a terminal,
one plain line per finished item elsewhere (CI logs keep every line, and a bar's redraws
would fill them with noise)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TextIO

from gateway.core.wording import plural

if TYPE_CHECKING:
    from gateway.evals.runner import CaseResult

WORDS = {"PASS": "passed", "FAIL": "failed", "ERROR": "error"}


def on_terminal(stream: TextIO) -> bool:
    return stream.isatty() and os.environ.get("TERM") != "dumb"


def _took(result: CaseResult, seconds: float) -> str:
    return f" ({seconds:.2f} s{', cached' if result.cached else ''})"


@contextlib.contextmanager
def case_progress(
    label: str, total: int, stream: TextIO | None = None
) -> Iterator[Callable[[CaseResult, float], None]]:
    """Yields the callback that reports one finished case."""
    stream = stream or sys.stderr
    if on_terminal(stream):
        with _bar(label, total, stream) as report:
            yield report
        return
    print(f"{label}: {plural(total, 'case')}", file=stream, flush=True)
    done = 0

    def line(result: CaseResult, seconds: float) -> None:
        nonlocal done
        done += 1
        took = _took(result, seconds)
        print(f"[{done}/{total}] {result.id} {WORDS[result.status]}{took}", file=stream, flush=True)

    yield line


@contextlib.contextmanager
def _bar(label: str, total: int, stream: TextIO) -> Iterator[Callable[[CaseResult, float], None]]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(file=stream)) as progress:
        task = progress.add_task(label, total=total, failed="")
        failed = 0

        def advance(result: CaseResult, seconds: float) -> None:
            nonlocal failed
            if result.status != "PASS":
                failed += 1
                # Above the bar, so a failure is seen while the rest still runs.
                took = _took(result, seconds)
                progress.console.print(f"  {result.id} {WORDS[result.status]}{took}")
            progress.update(task, advance=1, failed=f"{failed} not passed" if failed else "")

        yield advance


@contextlib.contextmanager
def item_progress(
    label: str, total: int, noun: str, stream: TextIO | None = None
) -> Iterator[Callable[[str, str], None]]:
    """Yields the callback that reports one finished item (its name and outcome): a bar on a
    terminal, a line per item elsewhere."""
    stream = stream or sys.stderr
    if on_terminal(stream):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=Console(file=stream), transient=True) as progress:
            task = progress.add_task(label, total=total)
            yield lambda name, outcome: progress.update(task, advance=1)
        return
    print(f"{label}: {plural(total, noun)}", file=stream, flush=True)
    done = 0

    def line(name: str, outcome: str) -> None:
        nonlocal done
        done += 1
        print(f"[{done}/{total}] {name} {outcome}", file=stream, flush=True)

    yield line
