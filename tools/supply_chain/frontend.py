"""The front-end files the gateway serves at /docs/assets (gateway/api/docs.py): Swagger UI
and Redoc bundles and a favicon, shipped inside the `fastapi-offline` wheel.

docs/frontend-assets.md records, for each file, the upstream package and version it is a
byte-for-byte copy of, its licence and its sha256. This check recomputes the hashes of the
installed files: a new fastapi-offline (or a changed file) fails until the record is
updated, so the versions and licences written there are always the ones served.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import re
from pathlib import Path

RECORD = Path("docs") / "frontend-assets.md"
PACKAGE = "fastapi_offline"
DISTRIBUTION = "fastapi-offline"
ROW = re.compile(r"^\| `(?P<file>[^`]+)` \|.*\| (?P<sha256>[0-9a-f]{64}) \|\s*$", re.M)
PINNED = re.compile(r"fastapi-offline==(?P<version>\S+?)`")


def recorded(text: str) -> tuple[str | None, dict[str, str]]:
    """The fastapi-offline version the record was made for, and sha256 by file name."""
    version = PINNED.search(text)
    rows = {m.group("file"): m.group("sha256") for m in ROW.finditer(text)}
    return (version.group("version") if version else None), rows


def static_folder() -> Path:
    return Path(str(importlib.resources.files(PACKAGE) / "static"))


def frontend_problems(
    root: Path, static: Path | None = None, version: str | None = None
) -> list[str]:
    record = root / RECORD
    if not record.exists():
        return [f"{RECORD} is missing"]
    static = static or static_folder()
    version = version or importlib.metadata.version(DISTRIBUTION)
    for_version, rows = recorded(record.read_text(encoding="utf-8"))
    fix = f"update {RECORD} (versions, licences, sha256 of the files now served)"
    problems = []
    if for_version != version:
        problems.append(
            f"{RECORD} describes fastapi-offline=={for_version}, {version} is installed: {fix}"
        )
    present = {path.name: path for path in static.iterdir() if path.is_file()}
    for name in sorted(present.keys() - rows.keys()):
        problems.append(f"{PACKAGE}/static/{name} is served but not in {RECORD}: {fix}")
    for name in sorted(rows.keys() - present.keys()):
        problems.append(f"{RECORD} lists {name}, which {PACKAGE}/static/ no longer has: {fix}")
    for name in sorted(rows.keys() & present.keys()):
        digest = hashlib.sha256(present[name].read_bytes()).hexdigest()
        if digest != rows[name]:
            problems.append(f"{PACKAGE}/static/{name} changed (sha256 {digest}): {fix}")
    return problems
