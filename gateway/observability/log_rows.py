"""Request-log rows made storable: every field bounded to what its column can hold.

A row carries what callers sent (a model name, a prompt name, bodies), and one value a column
cannot hold makes the database refuse the whole batch it travels in. So before a row is
written or spooled: NUL characters go (PostgreSQL text cannot hold them), strings are cut to
their column's length, lone surrogates become U+FFFD (they cannot be encoded), non-finite
floats become NULL (or 0 where the column is NOT NULL), integers are clamped to the column's
range. Fields of the wrong type or missing required fields are left as they are: the writer
isolates such rows and quarantines them (see request_log.py).

Runs in the writer's thread, off the request path, on whole batches: a batch of clean rows is
recognised a column at a time with C-level calls (~2x the CPU of serialising it) and returned
as is; only a batch with something to change is repaired row by row.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable
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


def storable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows, each with every field its column can hold (the same list when no row needs
    a change, and within it the same dict for each row that needs none)."""
    if not rows:  # a spool file of nothing but unreadable lines leaves none
        return rows
    try:
        if _clean(rows):
            return rows
    except TypeError:  # a value of an unexpected type: the careful path decides
        pass
    return [_repaired(row) for row in rows]


def _clean(rows: list[dict[str, Any]]) -> bool:
    """Whether no field of any row needs a change, judged a column at a time over the whole
    batch with C-level calls (a fifth of the time looking at each field takes): what the
    gateway builds passes. A row without every column (an old spool file) takes the careful
    path. Falsy values (None, "", 0, False) are always storable, so they are filtered out."""
    plan = _plan()
    try:
        columns = dict(zip(plan.names, zip(*map(plan.values, rows), strict=True), strict=True))
    except KeyError:
        return False
    for name, length in plan.texts:
        present: list[str] = list(filter(None, columns[name]))
        if present:
            joined = "".join(present)  # TypeError for a non-string
            if "\x00" in joined or max(map(len, present)) > length:
                return False
            if not joined.isascii():
                try:
                    joined.encode()
                except UnicodeEncodeError:  # a lone surrogate
                    return False
    for name in plan.floats:
        floats: list[float] = list(filter(None, columns[name]))
        # A sum of finite floats is finite (unless it overflows: then the careful path runs).
        if floats and (set(map(type, floats)) != {float} or not math.isfinite(sum(floats))):
            return False
    for name, (low, high) in plan.integers:
        numbers: list[int] = list(filter(None, columns[name]))
        if numbers and (
            set(map(type, numbers)) != {int} or min(numbers) < low or max(numbers) > high
        ):
            return False
    for name in plan.booleans:
        flags = list(filter(None, columns[name]))
        if flags and set(map(type, flags)) != {bool}:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Plan:
    names: tuple[str, ...]  # the bounded columns, in the order `values` returns them
    values: Callable[[dict[str, Any]], tuple[Any, ...]]  # a row's values of those columns
    texts: tuple[tuple[str, int], ...]
    floats: tuple[str, ...]
    integers: tuple[tuple[str, tuple[int, int]], ...]
    booleans: tuple[str, ...]


@functools.cache
def _plan() -> Plan:
    every = fields()
    names = tuple(f.name for f in every)
    return Plan(
        names=names,
        values=operator.itemgetter(*names),
        texts=tuple((f.name, f.length or 2**62) for f in every if f.kind is str),
        floats=tuple(f.name for f in every if f.kind is float),
        integers=tuple((f.name, f.bounds) for f in every if f.kind is int),
        booleans=tuple(f.name for f in every if f.kind is bool),
    )


def _repaired(row: dict[str, Any]) -> dict[str, Any]:
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
