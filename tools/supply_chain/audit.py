"""The locked versions against known vulnerabilities, online when PyPI answers, offline
from the last known state otherwise.

Source: PyPI's JSON API, `/pypi/NAME/VERSION/json`, whose `vulnerabilities` list is OSV's
data for that exact version (the source of `pip-audit -s pypi`). We ask it ourselves rather
than through pip-audit because pip-audit reports "No known vulnerabilities found" and exits 0
when that endpoint answers 404 for every package (some registry proxies serve only the
project-level JSON): a lookup that did not happen must not read as a clean audit.

Every answer is remembered with the time it was given: `.gateway/supply-chain/` after each
online run, `supply-chain/audit-state.json` (committed) when `make lock` refreshes it. A run
that cannot reach PyPI audits against that last known state and says how old it is; it
fails only on a known vulnerability, never because the network is down. A vulnerability is
accepted only through supply-chain/audit-ignore.toml, with a reason.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from tools.supply_chain.lockfile import Pin, read_lock
from tools.supply_chain.osv import Record, Vulnerability, load_database

PYPI = "https://pypi.org"
STATE_FILE = Path("supply-chain") / "audit-state.json"
CACHE_FILE = Path(".gateway") / "supply-chain" / "audit-state.json"
IGNORE_FILE = Path("supply-chain") / "audit-ignore.toml"


@dataclass(frozen=True)
class Known:
    """What PyPI said about one pinned version, and when."""

    checked_at: datetime
    vulnerabilities: tuple[Vulnerability, ...]


State = dict[str, Known]  # by "name==version"


def key(pin: Pin) -> str:
    return f"{pin.name}=={pin.version}"


def load_state(path: Path) -> State:
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {
        name: Known(
            datetime.fromisoformat(entry["checked_at"]),
            tuple(Vulnerability.from_json(v) for v in entry["vulnerabilities"]),
        )
        for name, entry in data.get("packages", {}).items()
    }


def save_state(path: Path, state: State) -> None:
    packages = {
        name: {
            "checked_at": known.checked_at.isoformat(timespec="seconds"),
            "vulnerabilities": [v.to_json() for v in known.vulnerabilities],
        }
        for name, known in sorted(state.items())
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"source": "PyPI JSON API", "packages": packages}, indent=1)
    path.write_text(text + "\n", encoding="utf-8")


def merge(*states: State) -> State:
    """Per package version, the newest answer wins."""
    merged: State = {}
    for state in states:
        for name, known in state.items():
            if name not in merged or known.checked_at > merged[name].checked_at:
                merged[name] = known
    return merged


@dataclass
class Lookup:
    answered: State = field(default_factory=dict)
    no_data: list[Pin] = field(default_factory=list)  # 404: no per-version JSON for it
    failed: list[tuple[Pin, str]] = field(default_factory=list)
    unreachable: str | None = None  # why the index could not be asked at all


class _NoData(Exception):
    pass


class _Refused(Exception):
    """An HTTP answer other than 200 or 404."""


def _json(client: httpx.Client, path: str) -> dict[str, Any]:
    answer = client.get(path)
    if answer.status_code == 404:
        raise _NoData
    if answer.status_code != 200:
        raise _Refused(f"HTTP {answer.status_code}")
    data: dict[str, Any] = answer.json()
    return data


def _fetch(client: httpx.Client, pin: Pin) -> tuple[Vulnerability, ...]:
    """The version's own JSON; where an index serves only the project's JSON (some registry
    proxies do), that one, whose `vulnerabilities` are its latest release's: an answer for a
    pin that is the latest release, and no data for an older one."""
    try:
        data = _json(client, f"/pypi/{pin.name}/{pin.public_version}/json")
    except _NoData:
        data = _json(client, f"/pypi/{pin.name}/json")
        latest = str((data.get("info") or {}).get("version") or "")
        try:
            if Version(latest) != Version(pin.public_version):
                raise _NoData from None
        except InvalidVersion:
            raise _NoData from None
    return tuple(
        Vulnerability.from_json(entry)
        for entry in data.get("vulnerabilities") or ()
        if not entry.get("withdrawn")
    )


def look_up(
    pins: list[Pin], index: str, now: datetime, *, timeout: float = 10.0, workers: int = 8
) -> Lookup:
    """Asks the index about every pin, concurrently over kept-alive connections (one TLS
    handshake per worker, not per package); one probe first so that a machine without
    network gives up after one timeout, not one per package. Proxies and CA bundles come
    from the environment (HTTPS_PROXY, SSL_CERT_FILE), as for pip."""
    lookup = Lookup()
    headers = {"Accept": "application/json", "User-Agent": "llmops-gateway-audit"}
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    with httpx.Client(base_url=index, headers=headers, timeout=timeout, limits=limits) as client:

        def ask(pin: Pin) -> None:
            try:
                lookup.answered[key(pin)] = Known(now, _fetch(client, pin))
            except _NoData:
                lookup.no_data.append(pin)
            except _Refused as error:
                lookup.failed.append((pin, str(error)))
            except (httpx.HTTPError, ValueError) as error:  # no connection, timeout, bad JSON
                lookup.failed.append((pin, f"{type(error).__name__}: {error}".rstrip(": ")))

        if not pins:
            return lookup
        ask(pins[0])
        if lookup.failed and not lookup.failed[0][1].startswith("HTTP "):
            lookup.unreachable = lookup.failed[0][1]
            lookup.failed.clear()
            return lookup
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(ask, pins[1:]))
    lookup.no_data.sort(key=lambda pin: pin.name)
    lookup.failed.sort(key=lambda item: item[0].name)
    return lookup


@dataclass(frozen=True)
class Ignore:
    id: str
    package: str
    reason: str


def load_ignores(path: Path) -> list[Ignore]:
    """supply-chain/audit-ignore.toml: `[[ignore]]` tables with id, package and reason."""
    if not path.exists():
        return []
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    ignores = []
    for number, entry in enumerate(data.get("ignore", []), start=1):
        missing = [k for k in ("id", "package", "reason") if not str(entry.get(k, "")).strip()]
        if missing:
            raise ValueError(f"{path}: [[ignore]] entry {number} has no {', '.join(missing)}")
        unknown = set(entry) - {"id", "package", "reason"}
        if unknown:
            raise ValueError(f"{path}: [[ignore]] entry {number}: unknown key {sorted(unknown)}")
        package = canonicalize_name(entry["package"])
        ignores.append(Ignore(entry["id"].strip(), package, entry["reason"].strip()))
    return ignores


@dataclass(frozen=True)
class Finding:
    pin: Pin
    vulnerability: Vulnerability
    source: str


@dataclass
class Outcome:
    findings: list[Finding] = field(default_factory=list)
    ignored: list[tuple[Finding, Ignore]] = field(default_factory=list)
    unused_ignores: list[Ignore] = field(default_factory=list)
    never_checked: list[Pin] = field(default_factory=list)
    checked: list[datetime] = field(default_factory=list)


def evaluate(
    pins: list[Pin], state: State, records: Iterable[Record], ignores: list[Ignore]
) -> Outcome:
    outcome = Outcome()
    found: list[Finding] = []
    records = list(records)
    for pin in pins:
        known = state.get(key(pin))
        if known is None:
            outcome.never_checked.append(pin)
        else:
            outcome.checked.append(known.checked_at)
            source = f"PyPI, {known.checked_at:%Y-%m-%d}"
            found += [Finding(pin, v, source) for v in known.vulnerabilities]
        seen = {
            name
            for finding in found
            if finding.pin == pin
            for name in finding.vulnerability.names()
        }
        for record in records:
            if record.vulnerability.names().isdisjoint(seen) and record.affects(
                pin.name, pin.version
            ):
                found.append(Finding(pin, record.vulnerability, "OSV database"))
    used: set[Ignore] = set()
    for finding in found:
        match = next(
            (
                ignore
                for ignore in ignores
                if ignore.package == finding.pin.name and ignore.id in finding.vulnerability.names()
            ),
            None,
        )
        if match is None:
            outcome.findings.append(finding)
        else:
            outcome.ignored.append((finding, match))
            used.add(match)
    outcome.unused_ignores = [ignore for ignore in ignores if ignore not in used]
    return outcome


def _age(then: datetime, now: datetime) -> str:
    days = (now - then).days
    return "today" if days < 1 else "1 day ago" if days == 1 else f"{days} days ago"


def _names(pins: Iterable[Pin], limit: int = 8) -> str:
    listed = [f"{pin.name} {pin.version}" for pin in pins]
    more = f", ... ({len(listed) - limit} more)" if len(listed) > limit else ""
    return ", ".join(listed[:limit]) + more


def run_audit(
    root: Path,
    *,
    index: str = PYPI,
    online: bool = True,
    osv_db: Path | None = None,
    save_snapshot: bool = False,
    now: datetime | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """The audit `make lint` runs: 0 when no known vulnerability is left unaccepted."""
    now = now or datetime.now(UTC)
    pins = sorted(read_lock(root / "requirements.lock").values(), key=lambda pin: pin.name)
    try:
        ignores = load_ignores(root / IGNORE_FILE)
    except (ValueError, tomllib.TOMLDecodeError) as error:
        say(f"audit: {error}")
        return 1
    state = merge(load_state(root / STATE_FILE), load_state(root / CACHE_FILE))
    if online:
        lookup = look_up(pins, index, now)
        _say_lookup(lookup, len(pins), index, say)
        if lookup.answered:
            save_state(root / CACHE_FILE, merge(load_state(root / CACHE_FILE), lookup.answered))
        state = merge(state, lookup.answered)
    else:
        say("audit: offline (--offline): using the last known state")
    if save_snapshot:
        current = {key(pin) for pin in pins}
        snapshot = {name: known for name, known in state.items() if name in current}
        if snapshot:
            save_state(root / STATE_FILE, snapshot)
            say(f"audit: wrote {STATE_FILE} ({len(snapshot)} package versions)")
    records = load_database(osv_db) if osv_db else []
    if osv_db:
        newest = max((r.modified for r in records if r.modified), default=None)
        as_of = f", newest record {newest:%Y-%m-%d} ({_age(newest, now)})" if newest else ""
        plural = "" if len(records) == 1 else "s"
        say(f"audit: OSV database {osv_db}: {len(records)} record{plural}{as_of}")
    outcome = evaluate(pins, state, records, ignores)
    _say_outcome(outcome, len(pins), now, say)
    return 1 if outcome.findings else 0


def _say_lookup(lookup: Lookup, total: int, index: str, say: Callable[[str], None]) -> None:
    if lookup.unreachable:
        say(f"audit: {index} not reachable ({lookup.unreachable}): using the last known state")
        return
    say(f"audit: {index}: {len(lookup.answered)} of {total} pinned versions checked now")
    if lookup.no_data and not lookup.answered:
        say(
            f"audit: {index} answered 404 for every version's JSON "
            f"(/pypi/NAME/VERSION/json is not served here): using the last known state"
        )
    elif lookup.no_data:
        say(
            f"audit: no per-version data (HTTP 404), and not the latest release (which the "
            f"project's JSON answers for), for {_names(lookup.no_data)}"
        )
    for pin, reason in lookup.failed:
        say(f"audit: {pin.name} {pin.version}: lookup failed ({reason})")


def _say_outcome(outcome: Outcome, total: int, now: datetime, say: Callable[[str], None]) -> None:
    if outcome.checked:
        oldest, newest = min(outcome.checked), max(outcome.checked)
        span = (
            f"{newest:%Y-%m-%d %H:%M} UTC"
            if oldest == newest
            else (f"{oldest:%Y-%m-%d} to {newest:%Y-%m-%d}")
        )
        say(
            f"audit: known state for {len(outcome.checked)} of {total} pinned versions, "
            f"checked {span} (the oldest {_age(oldest, now)})"
        )
    if outcome.never_checked:
        say(
            f"audit: WARNING: {len(outcome.never_checked)} of {total} pinned versions never "
            f"checked: {_names(outcome.never_checked)}"
        )
    for finding, ignore in outcome.ignored:
        say(
            f"audit: accepted {finding.vulnerability.id} in {finding.pin.name} "
            f"{finding.pin.version}: {ignore.reason}"
        )
    for ignore in outcome.unused_ignores:
        say(f"audit: note: {IGNORE_FILE} entry {ignore.id} ({ignore.package}) matches nothing now")
    for finding in outcome.findings:
        vulnerability = finding.vulnerability
        fixed = f"; fixed in {', '.join(vulnerability.fixed_in)}" if vulnerability.fixed_in else ""
        aliases = f" ({', '.join(vulnerability.aliases)})" if vulnerability.aliases else ""
        say(
            f"audit: VULNERABLE: {finding.pin.name} {finding.pin.version}: {vulnerability.id}"
            f"{aliases}{fixed} [{finding.source}] {vulnerability.summary} {vulnerability.link}"
        )
    if outcome.findings:
        say(
            f"audit: {len(outcome.findings)} known vulnerabilit"
            f"{'y' if len(outcome.findings) == 1 else 'ies'}: move the pins in "
            f"pyproject.toml and run `make lock`, or accept one in {IGNORE_FILE} with a reason"
        )
    else:
        say("audit: no known vulnerability left unaccepted")
