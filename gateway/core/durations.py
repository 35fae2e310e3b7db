"""Budget periods as LiteLLM writes them (`30s`, `5m`, `1h`, `1d`, `1mo`): checked where keys
and teams are created, and used where budgets are counted."""

from __future__ import annotations

import re

_DURATION = re.compile(r"([0-9]+)(s|m|h|d|mo)")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_MAX_MONTHS = 100 * 12


def parse_duration(duration: str | None) -> tuple[int, str] | None:
    """(count, unit), or None for no period; a ValueError says what is wrong."""
    if duration is None:
        return None
    match = _DURATION.fullmatch(duration) if isinstance(duration, str) else None
    if match is None or int(match[1]) == 0:
        raise ValueError(f"budget_duration must look like 30s, 5m, 1h, 1d or 1mo, not {duration!r}")
    count, unit = int(match[1]), match[2]
    months = count if unit == "mo" else count * UNIT_S[unit] / (30 * 86_400)
    if months > _MAX_MONTHS:
        raise ValueError(f"budget_duration {duration!r} is longer than 100 years; omit it instead")
    return count, unit
