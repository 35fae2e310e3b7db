"""The confined run: the gateway pinned to one CPU, everything else on the others.

A 1-vCPU container gives the gateway one core for its event loop, its background threads
(the request-log writer) and the interpreter's collections. Unconfined on this 2-core
machine, the second core absorbs some of that work, so a stall of the event loop can hide
from the unconfined figures; pinned, it lands on the call in flight. Measured at one client,
where the p99 shows each stall. On a machine other work keeps busy, a process woken on a CPU
running something else waits for that task's scheduler slice (milliseconds), so the run
first measures that floor, and `--realtime` (bench.run, bench.ab) takes it away by running
the pinned processes at SCHED_FIFO priority (docs/performance.md, "Tail latency on one CPU").
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CONFINED_MODES = ("json", "stream")
CONFINED_LEVELS = [1]


@dataclass(frozen=True, slots=True)
class Confinement:
    gateway: str  # taskset CPU lists
    others: str  # upstream, load generators, the trace receiver


def split_cpus() -> Confinement | None:
    """The last CPU this process may use for the gateway, the rest for everything else;
    None with fewer than two."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None
    return Confinement(str(allowed[-1]), ",".join(map(str, allowed[:-1])))
