"""Vulnerability records in the OSV format (what PyPI, pip-audit and the PyPA advisory
database speak), and whether one affects a given version.

A local OSV database is optional: `--osv-db DIR` reads every *.json / *.yaml record under
DIR (a checkout of github.com/pypa/advisory-database, or the PyPI export of osv.dev), for
machines that have one and want an audit that needs no network at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version


@dataclass(frozen=True)
class Vulnerability:
    """A known vulnerability of one package version, as the audit reports it."""

    id: str
    aliases: tuple[str, ...]
    summary: str
    fixed_in: tuple[str, ...]
    link: str

    def names(self) -> set[str]:
        return {self.id, *self.aliases}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "aliases": list(self.aliases),
            "summary": self.summary,
            "fixed_in": list(self.fixed_in),
            "link": self.link,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Vulnerability:
        """Reads PyPI's JSON API entries and our own saved ones (the same keys)."""
        summary = str(data.get("summary") or data.get("details") or "").strip()
        return cls(
            id=str(data["id"]),
            aliases=tuple(str(a) for a in data.get("aliases") or ()),
            summary=summary.splitlines()[0][:200] if summary else "",
            fixed_in=tuple(str(v) for v in data.get("fixed_in") or ()),
            link=str(data.get("link") or ""),
        )


@dataclass(frozen=True)
class Record:
    """One OSV record: which versions of which PyPI packages it affects."""

    vulnerability: Vulnerability
    affected: tuple[dict[str, Any], ...]
    modified: datetime | None

    def affects(self, name: str, version: str) -> bool:
        try:
            wanted = Version(Version(version).public)
        except InvalidVersion:
            return False
        for entry in self.affected:
            package = entry.get("package") or {}
            if package.get("ecosystem", "PyPI") != "PyPI":
                continue
            if canonicalize_name(str(package.get("name", ""))) != name:
                continue
            if _listed(wanted, entry.get("versions") or ()):
                return True
            for span in entry.get("ranges") or ():
                if span.get("type") == "ECOSYSTEM" and _in_range(wanted, span.get("events") or ()):
                    return True
        return False


def _listed(version: Version, listed: Any) -> bool:
    for text in listed:
        try:
            if Version(str(text)) == version:
                return True
        except InvalidVersion:
            continue
    return False


def _in_range(version: Version, events: Any) -> bool:
    """OSV's evaluation: events in version order; `introduced` opens the range, `fixed`
    closes it at that version, `last_affected` just after it."""
    ordered: list[tuple[Version, str]] = []
    for event in events:
        for kind in ("introduced", "fixed", "last_affected"):
            if kind in event:
                text = str(event[kind])
                try:
                    ordered.append((Version("0") if text == "0" else Version(text), kind))
                except InvalidVersion:
                    continue
    ordered.sort(key=lambda item: item[0])
    affected = False
    for at, kind in ordered:
        if kind == "introduced" and version >= at:
            affected = True
        elif (kind == "fixed" and version >= at) or (kind == "last_affected" and version > at):
            affected = False
    return affected


def record_from(data: dict[str, Any]) -> Record | None:
    """A record from OSV JSON/YAML, or None for a withdrawn one or one without an id."""
    if data.get("withdrawn") or not data.get("id"):
        return None
    fixed = sorted(
        {
            str(event["fixed"])
            for entry in data.get("affected") or ()
            for span in entry.get("ranges") or ()
            for event in span.get("events") or ()
            if "fixed" in event
        }
    )
    link = f"https://osv.dev/vulnerability/{data['id']}"
    vulnerability = Vulnerability.from_json({**data, "fixed_in": fixed, "link": link})
    return Record(vulnerability, tuple(data.get("affected") or ()), _time(data.get("modified")))


def _time(text: Any) -> datetime | None:
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def load_database(folder: Path) -> list[Record]:
    """Every OSV record under `folder` (recursively)."""
    records: list[Record] = []
    for path in sorted(folder.rglob("*")):
        if path.suffix not in (".json", ".yaml", ".yml") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        # BaseLoader: versions such as 1.10 stay strings, dates stay text.
        data = json.loads(text) if path.suffix == ".json" else yaml.load(text, yaml.BaseLoader)
        if isinstance(data, dict):
            record = record_from(data)
            if record is not None:
                records.append(record)
    return records
