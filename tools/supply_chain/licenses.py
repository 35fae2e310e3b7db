"""The SPDX licence of every locked package, as docs/licenses.md lists it.

pip-licenses reads what each installed package declares: the `License-Expression` of
core metadata 2.4 (already SPDX), the older free-text `License` field, and the trove
classifiers. Only the first is SPDX by definition; a `License` field that parses as an SPDX
expression is taken as one; a single unambiguous classifier maps to its identifier. The
rest ("BSD License", "Apache Software License", several classifiers, a whole licence text
in the field) was read by a person in the package's licence file and recorded, with what
was read, in supply-chain/licenses.toml.

`make licenses` writes docs/licenses.md; `make lint` regenerates it in memory and fails
when the file differs or when an installed version is not the locked one.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression
from packaging.utils import canonicalize_name

from tools.supply_chain.lockfile import Pin, read_lock

OUTPUT = Path("docs") / "licenses.md"
REVIEWED = Path("supply-chain") / "licenses.toml"
UNKNOWN = "UNKNOWN"

# Classifiers that name one licence and its version unambiguously.
CLASSIFIERS = {
    "MIT License": "MIT",
    "ISC License (ISCL)": "ISC",
    "The Unlicense (Unlicense)": "Unlicense",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "Python Software Foundation License": "PSF-2.0",
    "Apache License 2.0": "Apache-2.0",
    "BSD 3-Clause License": "BSD-3-Clause",
    "BSD 2-Clause License": "BSD-2-Clause",
}


@dataclass(frozen=True)
class Licence:
    name: str  # as the package spells it
    version: str
    spdx: str | None
    source: str  # where the SPDX expression comes from
    declared: str  # what the package declares, in one short line


def installed(pins: list[Pin], pip_licenses: Path) -> list[dict[str, Any]]:
    """pip-licenses' JSON for the locked packages (pip and setuptools included)."""
    command = [
        str(pip_licenses),
        "--from=all",
        "--format=json",
        "--with-system",
        "--packages",
        *[pin.name for pin in pins],
    ]
    answer = subprocess.run(command, capture_output=True, text=True, check=True)
    listed: list[dict[str, Any]] = json.loads(answer.stdout)
    return listed


def load_reviewed(path: Path) -> dict[str, dict[str, str]]:
    if not path.exists():
        return {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {canonicalize_name(name): entry for name, entry in data.get("package", {}).items()}


def _spdx(text: str) -> str | None:
    if not text or text == UNKNOWN or "\n" in text or len(text) > 200:
        return None
    try:
        return canonicalize_license_expression(text)
    except InvalidLicenseExpression:
        return None


def _declared(expression: str, metadata: str, classifiers: str) -> str:
    """What the package declares, in one short line: its License-Expression, else its
    License field (a whole licence text shortened to its first line) and classifiers."""
    if expression != UNKNOWN:
        return expression
    parts = []
    text = metadata.strip()
    if text and text != UNKNOWN:
        first = text.splitlines()[0].strip()
        first = first if len(first) <= 50 else first[:47] + "..."
        parts.append(first if first == text else f"{first} (licence text)")
    if classifiers != UNKNOWN:
        parts.append(f"classifiers: {classifiers}")
    return "; ".join(parts).replace("|", "/") or UNKNOWN


def classify(entry: dict[str, Any], reviewed: dict[str, dict[str, str]]) -> Licence:
    name, version = str(entry["Name"]), str(entry["Version"])
    expression = str(entry.get("License-Expression", UNKNOWN))
    metadata = str(entry.get("License-Metadata", UNKNOWN))
    classifiers = str(entry.get("License-Classifier", UNKNOWN))
    short = _declared(expression, metadata, classifiers)

    def found(spdx: str | None, source: str) -> Licence:
        return Licence(name, version, spdx, source, short)

    if spdx := _spdx(expression):
        return found(spdx, "License-Expression")
    if spdx := _spdx(metadata):
        return found(spdx, "License")
    if classifiers in CLASSIFIERS:
        return found(CLASSIFIERS[classifiers], "classifier")
    review = reviewed.get(canonicalize_name(name))
    if review and (spdx := _spdx(review.get("spdx", ""))):
        return found(spdx, "reviewed")
    return found(None, "")


def collect(root: Path, pip_licenses: Path) -> tuple[list[Licence], list[str]]:
    """The licence of every locked package, and the problems (not installed, no SPDX)."""
    pins = read_lock(root / "requirements.lock")
    reviewed = load_reviewed(root / REVIEWED)
    listed = {
        str(canonicalize_name(e["Name"])): e for e in installed(list(pins.values()), pip_licenses)
    }
    licences: list[Licence] = []
    problems: list[str] = []
    for name, pin in sorted(pins.items()):
        entry = listed.get(name)
        if entry is None:
            problems.append(f"{name} {pin.version} is locked but not installed: run `make install`")
            continue
        if entry["Version"] != pin.version:
            problems.append(
                f"{name} is installed at {entry['Version']}, the lock pins {pin.version}: "
                "run `make install`"
            )
        licence = classify(entry, reviewed)
        if licence.spdx is None:
            problems.append(
                f"{name} {pin.version} declares no SPDX licence ({licence.declared!r}): read its "
                f"licence file and add [package.{name}] spdx = ... and read = ... to {REVIEWED}"
            )
        licences.append(licence)
    return licences, problems


def render(licences: list[Licence], lock_name: str = "requirements.lock") -> str:
    counts: dict[str, int] = {}
    for licence in licences:
        counts[licence.spdx or UNKNOWN] = counts.get(licence.spdx or UNKNOWN, 0) + 1
    lines = [
        "# Third-party licences: Python packages",
        "",
        f"Every package in `{lock_name}` (the gateway's dependencies, its dev tools and the",
        "build backend), the licence as an SPDX expression, and where that expression comes",
        "from: the package's `License-Expression` metadata, its `License` field when that is",
        "SPDX, an unambiguous trove classifier, or a person's reading of its licence file",
        f"(`reviewed`: recorded in `{REVIEWED.as_posix()}`). Generated by `make licenses`",
        "(pip-licenses); `make lint` fails when it no longer matches the installed set.",
        "The front-end files the gateway serves are in docs/frontend-assets.md.",
        "",
        "| SPDX expression | Packages |",
        "| --- | --- |",
        *[f"| {spdx} | {count} |" for spdx, count in sorted(counts.items())],
        "",
        "| Package | Version | SPDX licence | From | Declared |",
        "| --- | --- | --- | --- | --- |",
        *[
            f"| {x.name} | {x.version} | {x.spdx or UNKNOWN} | {x.source or '-'} | {x.declared} |"
            for x in licences
        ],
    ]
    return "\n".join(lines) + "\n"


def license_problems(root: Path, pip_licenses: Path) -> list[str]:
    licences, problems = collect(root, pip_licenses)
    current = (root / OUTPUT).read_text(encoding="utf-8") if (root / OUTPUT).exists() else ""
    if render(licences) != current:
        problems.append(f"{OUTPUT} does not match the installed packages: run `make licenses`")
    return problems


def write(root: Path, pip_licenses: Path) -> list[str]:
    licences, problems = collect(root, pip_licenses)
    (root / OUTPUT).write_text(render(licences), encoding="utf-8")
    return problems
