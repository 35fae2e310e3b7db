"""A CPU quota for the gateway under test (a Linux cgroup), so worker scaling can be shown on
a machine with as few cores as this one.

With two cores, one unconstrained worker plus the fake upstream, PostgreSQL and the load
generator already keep both cores busy, so a second worker has nothing to scale into. Giving
each worker a fixed share of a core (1 worker: 0.5 core, 2 workers: 1 core in all) leaves the
rest of the machine to everything else and asks the question scaling is about: does a second
worker turn its share of the CPU into as many requests as the first one did?
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

V2_ROOT = Path("/sys/fs/cgroup")
V1_ROOT = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000


class QuotaError(RuntimeError):
    pass


def _root() -> tuple[Path, bool]:
    """The cgroup hierarchy to create the group in, and whether it is cgroup v2."""
    if (V2_ROOT / "cgroup.controllers").exists():
        if "cpu" not in (V2_ROOT / "cgroup.subtree_control").read_text().split():
            raise QuotaError("cgroup v2 without the cpu controller enabled at the root")
        return V2_ROOT, True
    if (V1_ROOT / "cpu.cfs_quota_us").exists():
        return V1_ROOT, False
    raise QuotaError("no cgroup cpu controller found under /sys/fs/cgroup")


@contextlib.contextmanager
def cpu_quota(cores: float) -> Iterator[Path]:
    """A cgroup limited to `cores` CPUs; yields its `cgroup.procs` file for the process to
    join. Every process left in it is moved back to the root group when done."""
    root, v2 = _root()
    group = root / f"gateway-bench-{secrets.token_hex(3)}"
    quota_us = max(1000, round(cores * PERIOD_US))
    try:
        group.mkdir()
        if v2:
            (group / "cpu.max").write_text(f"{quota_us} {PERIOD_US}")
        else:
            (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota_us))
    except OSError as exc:
        raise QuotaError(f"cannot create a CPU quota at {group} ({exc}); run as root") from exc
    try:
        yield group / "cgroup.procs"
    finally:
        for _ in range(50):
            pids = (group / "cgroup.procs").read_text().split()
            for pid in pids:
                with contextlib.suppress(OSError):
                    (root / "cgroup.procs").write_text(pid)
            with contextlib.suppress(OSError):
                group.rmdir()
                break
            time.sleep(0.1)


def joining(procs: Path, command: list[str]) -> list[str]:
    """`command`, run so that it joins the cgroup before it starts (its workers follow it)."""
    return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(procs), *command]
