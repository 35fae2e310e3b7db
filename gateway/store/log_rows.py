"""Request-log rows made storable: every field bounded to what its column can hold.

A row carries what callers sent (a model name, a prompt name, bodies), and one value a column
cannot hold makes the database refuse the whole batch it travels in. So before a row is
written or spooled: NUL characters go (PostgreSQL text cannot hold them), strings are cut to
their column's length, lone surrogates become U+FFFD (they cannot be encoded), non-finite
floats become NULL (or 0 where the column is NOT NULL), integers are clamped to the column's
range. Fields of the wrong type or missing required fields are left as they are: the writer
isolates such rows and quarantines them (see request_log.py).

Runs in the writer's thread, off the request path; a clean row costs a few C-level checks per
field and is returned as is (copied only when something had to change).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, Integer, String

from gateway.store.tables import request_log

SURROGATES = re.compile("[\ud800-\udfff]")
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: type
    nullable: bool
    length: int | None = None  # strings: the column's length (None: unbounded text)
    bounds: tuple[int, int] = INT64  # integers


@functools.cache
def fields() -> tuple[Field, ...]:
    found = []
    for column in request_log.columns:
        kind = column.type
        nullable = bool(column.nullable)
        if isinstance(kind, String):
            found.append(Field(column.name, str, nullable, length=kind.length))
        elif isinstance(kind, Boolean):
            found.append(Field(column.name, bool, nullable))
        elif isinstance(kind, BigInteger):
            found.append(Field(column.name, int, nullable, bounds=INT64))
        elif isinstance(kind, Integer):
            found.append(Field(column.name, int, nullable, bounds=INT32))
        elif isinstance(kind, Float):
            found.append(Field(column.name, float, nullable))
        # timestamps: written by the gateway itself; a wrong one is quarantined, not guessed
    return tuple(found)


def storable(row: dict[str, Any]) -> dict[str, Any]:
    """The row with every field its column can hold (the same dict when nothing changes)."""
    changes: dict[str, Any] = {}
    for field in fields():
        value = row.get(field.name)
        if value is None:
            continue
        fixed = _bounded(field, value)
        if fixed is not value:
            changes[field.name] = fixed
    return {**row, **changes} if changes else row


def _bounded(field: Field, value: Any) -> Any:
    if field.kind is str:
        return _text(value, field.length) if isinstance(value, str) else value
    if field.kind is float:
        if isinstance(value, float) and not math.isfinite(value):
            return None if field.nullable else 0.0
        return value
    if field.kind is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            low, high = field.bounds
            return value if low <= value <= high else max(low, min(high, value))
        return value
    if field.kind is bool and isinstance(value, int) and not isinstance(value, bool):
        return bool(value)
    return value


def _text(value: str, length: int | None) -> str:
    fixed = value
    if "\x00" in fixed:
        fixed = fixed.replace("\x00", "")
    if not fixed.isascii():
        try:
            fixed.encode()
        except UnicodeEncodeError:  # lone surrogates: not UTF-8, so not storable anywhere
            fixed = SURROGATES.sub("\ufffd", fixed)
    if length is not None and len(fixed) > length:
        fixed = fixed[:length]
    return fixed
