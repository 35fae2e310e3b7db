"""The request log's spool: batches the database could not take, as JSON-lines files on disk.

A file appears whole or not at all (written as `.tmp`, fsynced, renamed); a write that fails
(disk full, file too large, read-only) leaves no partial file behind and raises OSError for
the writer to handle. Rows the database refuses for what they hold go to `quarantine/`, in
the same format: once the cause is fixed, moving a file back into the spool replays it.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

DATETIME_COLUMNS = ("created_at", "finished_at")


def encode(row: dict[str, Any]) -> bytes:
    """One row as a JSON line (datetimes as ISO 8601 with offset; NaN and inf as null).
    Raises TypeError for a value JSON cannot hold."""
    return orjson.dumps(row) + b"\n"


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.quarantine_dir = directory / "quarantine"

    def prepare(self) -> None:
        """Creates the directory and removes `.tmp` files a crash left (never renamed, so
        never complete: their rows are still in the file being written or were lost with
        the process before it could finish)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for leftover in self.directory.glob("*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def write(self, lines: Iterable[bytes]) -> Path:
        return _write_file(self.directory, lines)

    def quarantine(self, lines: Iterable[bytes]) -> Path:
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        return _write_file(self.quarantine_dir, lines)

    def files(self) -> list[Path]:
        """Spool files, oldest first."""
        return sorted(self.directory.glob("*.jsonl"))

    def read(self, path: Path) -> tuple[list[dict[str, Any]], list[bytes]]:
        """The rows of one file, and the lines that are not a JSON object (to quarantine)."""
        return self.parse(path.read_bytes().splitlines())

    def parse(self, lines: Iterable[bytes]) -> tuple[list[dict[str, Any]], list[bytes]]:
        rows, bad = [], []
        for line in lines:
            if not line.strip():
                continue
            line = line.rstrip(b"\n")
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                bad.append(line + b"\n")
                continue
            if not isinstance(row, dict):
                bad.append(line + b"\n")
                continue
            rows.append(_revive(row))
        return rows, bad


def _write_file(directory: Path, lines: Iterable[bytes]) -> Path:
    name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.jsonl"
    tmp = directory / (name + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(b"".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
        final = directory / name
        tmp.rename(final)  # atomic: replay never sees half a file
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return final


def _revive(row: dict[str, Any]) -> dict[str, Any]:
    for column in DATETIME_COLUMNS:
        value = row.get(column)
        if isinstance(value, str):
            # A timestamp that does not parse stays a string: the database refuses the row
            # and it is quarantined, rather than the file blocking the replay.
            with contextlib.suppress(ValueError):
                row[column] = datetime.fromisoformat(value)
    return row
