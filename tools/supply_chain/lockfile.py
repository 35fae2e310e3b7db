"""requirements.lock: what pip-compile wrote, and whether it still agrees with pyproject.toml.

The lock pins every package (the project's dependencies, its `dev` extra and the build
backend) to one version with the sha256 of each of its files, so `pip install
--require-hashes` installs exactly those bytes. pyproject.toml stays the place where
dependencies are chosen; the lock follows it through `make lock`.

Two checks keep them together: every pin of pyproject.toml must be satisfied by the lock,
and a digest of pyproject.toml's requirement lists (written into the lock by `make lock`)
catches what a pin comparison cannot see: a dependency removed, an extra or a marker changed.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

REGENERATE = "make lock"
DIGEST_PREFIX = "# pyproject.toml requirements sha256: "
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Pin:
    """One locked package: its canonical name, the exact version and its files' hashes."""

    name: str
    version: str
    hashes: tuple[str, ...]

    @property
    def public_version(self) -> str:
        """The version without a local label (torch's `+cpu`): what an index publishes."""
        try:
            return Version(self.version).public
        except InvalidVersion:
            return self.version


def read_lock(path: Path) -> dict[str, Pin]:
    """The pins of a pip-compile output file, by canonical name."""
    pins: dict[str, Pin] = {}
    for entry in _entries(path.read_text(encoding="utf-8")):
        match = PIN.match(entry)
        if match:
            name = canonicalize_name(match.group(1))
            pins[name] = Pin(name, match.group(2), tuple(HASH.findall(entry)))
    return pins


def _entries(text: str) -> list[str]:
    """Requirement lines with their backslash continuations joined; comments dropped."""
    entries: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        current += " " + stripped.removesuffix("\\")
        if not stripped.endswith("\\"):
            entries.append(current.strip())
            current = ""
    if current:
        entries.append(current.strip())
    return entries


@dataclass(frozen=True)
class Inputs:
    """What pyproject.toml asks the lock for."""

    requirements: tuple[Requirement, ...]  # dependencies and the dev extra: exact pins
    build: tuple[Requirement, ...]  # build-system.requires (the editable install's backend)
    digest: str


def read_inputs(pyproject: Path) -> Inputs:
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    project = data.get("project", {})
    runtime = [Requirement(text) for text in project.get("dependencies", [])]
    dev = [Requirement(text) for text in project.get("optional-dependencies", {}).get("dev", [])]
    build = [Requirement(text) for text in data.get("build-system", {}).get("requires", [])]
    # Sorted canonical forms: reordering or reformatting pyproject.toml changes nothing.
    canonical = [
        "python " + str(project.get("requires-python", "")),
        *sorted("run " + _canonical(r) for r in runtime),
        *sorted("dev " + _canonical(r) for r in dev),
        *sorted("build " + _canonical(r) for r in build),
    ]
    digest = hashlib.sha256("\n".join(canonical).encode()).hexdigest()
    return Inputs(tuple(runtime + dev), tuple(build), digest)


def _canonical(requirement: Requirement) -> str:
    copy = Requirement(str(requirement))
    copy.name = canonicalize_name(copy.name)
    return str(copy)


def recorded_digest(lock: Path) -> str | None:
    for line in lock.read_text(encoding="utf-8").splitlines():
        if line.startswith(DIGEST_PREFIX):
            return line.removeprefix(DIGEST_PREFIX).strip()
    return None


def write_digest(pyproject: Path, lock: Path) -> None:
    """Records which pyproject.toml the lock was compiled from (after pip-compile ran)."""
    lines = [
        line
        for line in lock.read_text(encoding="utf-8").splitlines()
        if not line.startswith(DIGEST_PREFIX)
    ]
    while lines and not lines[-1].strip():
        lines.pop()
    lines += ["", DIGEST_PREFIX + read_inputs(pyproject).digest]
    lock.write_text("\n".join(lines) + "\n", encoding="utf-8")


def lock_problems(pyproject: Path, lock: Path) -> list[str]:
    """Why the lock does not match pyproject.toml; empty when it does."""
    if not lock.exists():
        return [f"{lock.name} is missing"]
    inputs = read_inputs(pyproject)
    pins = read_lock(lock)
    problems = [
        f"{pin.name}=={pin.version} has no --hash" for pin in pins.values() if not pin.hashes
    ]
    for requirement in (*inputs.requirements, *inputs.build):
        name = canonicalize_name(requirement.name)
        pin = pins.get(name)
        if pin is None:
            problems.append(f"pyproject.toml requires {requirement}, the lock has no {name}")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"pyproject.toml requires {requirement}, the lock has {pin.version}")
    recorded = recorded_digest(lock)
    if recorded != inputs.digest:
        problems.append(
            "pyproject.toml's requirement lists changed since the lock was made"
            + ("" if recorded else f" (no '{DIGEST_PREFIX.strip()}' line in {lock.name})")
        )
    return problems


def lock_message(problems: list[str], lock_name: str = "requirements.lock") -> str:
    listed = "\n".join(f"  - {problem}" for problem in problems)
    return (
        f"{lock_name} does not match pyproject.toml:\n{listed}\n"
        f"Run `{REGENERATE}` to regenerate it."
    )
