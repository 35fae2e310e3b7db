"""The spool failing for real during a database outage (writes refused with EFBIG: a child
process with RLIMIT_FSIZE tiny and SIGXFSZ ignored, which works unprivileged) loses no row:
rows wait in memory up to a bound, the failure is logged loudly and rarely, no partial file
is left, and everything reaches the database once the disk and the database are back.
Rows beyond the bound are dropped oldest first, counted and logged."""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from tests.conftest import ROOT

REFUSED_URL = "postgresql+psycopg://postgres@127.0.0.1:1/none"  # nothing listens on port 1
ROWS = 500


def _row(index: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": f"row{index:05d}",
        "created_at": now,
        "finished_at": now,
        "route": "chat",
        "status": 200,
        "latency_ms": 1.0,
        "request_body": "x" * 200,
    }


def _count_files(directory: Path, pattern: str) -> int:
    return len(list(directory.glob(pattern)))


async def _outage_with_a_full_disk(spool: Path, database: Path, max_held: int) -> dict[str, Any]:
    """Runs in the child: the database refuses connections and the spool cannot be written;
    then the disk frees up; then the database returns. Reports what happened at each step."""
    from gateway.observability.request_log import RequestLogWriter
    from gateway.store.db import make_engine, migrate
    from gateway.store.tables import request_log

    down = make_engine(REFUSED_URL, 1.0)
    writer = RequestLogWriter(
        down, spool, batch_size=100, max_held_rows=max_held, retry_interval=0.05
    )
    writer.start()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills us at the limit
    resource.setrlimit(resource.RLIMIT_FSIZE, (512, hard))  # the "disk" takes 512 bytes
    report: dict[str, Any] = {"flush_errors": 0}

    async def flush() -> None:
        try:
            await writer.flush()
        except Exception:
            report["flush_errors"] += 1
        if writer._replayer is not None:
            await writer._replayer  # the replay it started, so the figures are settled

    for index in range(ROWS):
        writer.record(_row(index))
        if index % 100 == 99:
            await flush()
    await flush()
    report["full"] = {
        "held": writer.held,
        "dropped": writer.dropped,
        "spooled": writer.spooled,
        "tmp_files": _count_files(spool, "*.tmp"),
        "spool_files": _count_files(spool, "*.jsonl"),
    }
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space again
    for _ in range(200):  # the writer retries on its own schedule (retry_interval)
        await flush()
        if not writer.held:
            break
        await asyncio.sleep(0.05)
    report["freed"] = {"held": writer.held, "spooled": writer.spooled}
    up = make_engine(f"sqlite:///{database}")  # the database returns (here: SQLite)
    migrate(up)
    writer.engine = up
    for _ in range(200):
        await flush()
        if writer.healthy and not _count_files(spool, "*.jsonl"):
            break
        await asyncio.sleep(0.05)
    await writer.close()
    with up.connect() as connection:
        stored = connection.execute(select(func.count()).select_from(request_log))
        report["stored"] = stored.scalar()
    report["dropped"] = writer.dropped
    return report


def child(spool: str, database: str, max_held: str) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    report = asyncio.run(_outage_with_a_full_disk(Path(spool), Path(database), int(max_held)))
    print(json.dumps(report))


def _run_child(tmp_path: Path, max_held: int) -> tuple[dict[str, Any], str]:
    code = "import sys, tests.test_spool_disk_full as t; t.child(*sys.argv[1:])"
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "spool"), str(tmp_path / "db"), str(max_held)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report, done.stderr


def test_a_full_disk_during_an_outage_loses_no_row(tmp_path: Path) -> None:
    report, log = _run_child(tmp_path, max_held=10_000)
    assert report["flush_errors"] == 0
    assert report["full"] == {
        "held": ROWS,
        "dropped": 0,
        "spooled": 0,
        "tmp_files": 0,
        "spool_files": 0,
    }
    assert report["freed"] == {"held": 0, "spooled": ROWS}
    assert report["stored"] == ROWS
    assert report["dropped"] == 0
    complaints = [line for line in log.splitlines() if "cannot write the spool" in line]
    assert len(complaints) == 1  # loud, but once per interval, not once per batch
    assert f"{ROWS} rows held in memory" in log or "rows held in memory" in complaints[0]
    assert "the spool is writable again" in log
    assert not list((tmp_path / "spool").glob("*.tmp"))


def test_beyond_the_memory_bound_rows_are_dropped_counted_and_logged(tmp_path: Path) -> None:
    report, log = _run_child(tmp_path, max_held=300)
    assert report["full"]["held"] == 300
    assert report["full"]["dropped"] == ROWS - 300
    assert report["stored"] == 300
    assert report["dropped"] == ROWS - 300
    assert "DROPPED" in log
