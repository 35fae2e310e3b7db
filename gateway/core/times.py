"""Times callers give (filters, report bounds): ISO 8601, compared in UTC.

In UTC because SQLite stores times as UTC text without an offset and compares them as text:
a bound given as 09:00+02:00 must become 07:00 before it is compared, or it is two hours off.
"""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.core.errors import BadRequest


def utc(moment: datetime) -> datetime:
    """In UTC. A naive time (from SQLite, or typed without an offset) is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_time(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 date or time in UTC; a 400 naming `name` when it is not one."""
    if not value:
        return None
    try:
        return utc(datetime.fromisoformat(value))
    except (ValueError, OverflowError):  # overflow: 0001-01-01T00:00+01:00 is before year 1 UTC
        raise BadRequest(
            f"'{name}' must be an ISO 8601 date or time, e.g. 2026-11-01 or "
            f"2026-11-01T09:30:00Z, not {value!r}.",
            param=name,
        ) from None
