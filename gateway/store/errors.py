"""Database failures as the gateway's own errors: an unreachable or silent database is a
503 in the OpenAI error shape, never a 500 and never a hang (every call has a timeout)."""

from __future__ import annotations

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gateway.core.errors import DatabaseUnavailable

# Failures of the database rather than of the request: connection refused or lost, a
# statement or answer timeout, no pooled connection free in time.
UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout)


def unavailable(exc: Exception) -> DatabaseUnavailable:
    original = getattr(exc, "orig", None) or exc
    if isinstance(exc, PoolTimeout):
        why = "every database connection is busy"
    elif "did not answer" in str(original) or "timeout" in type(original).__name__.lower():
        why = "the database did not answer in time"
    else:
        why = "the database is unreachable"
    return DatabaseUnavailable(f"{why}; try again shortly (the gateway logs the cause).")


def cause(exc: BaseException) -> str:
    """The driver's own error, first line only (SQLAlchemy's text adds the statement and its
    parameters, which do not belong in a log)."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return f"{type(original).__name__}: {lines[0] if lines else ''}"
