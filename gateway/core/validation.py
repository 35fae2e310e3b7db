"""pydantic's verdict on a value, as the one problem our messages name: where and what.

Every boundary (HTTP bodies, CLI options, files) reports the first problem only, by its
field, in pydantic's words without its "Value error, " prefix (our validators' own messages
are written to be read as they are).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


def first_problem(exc: ValidationError) -> tuple[tuple[Any, ...], str]:
    """The first problem's location (its path of keys and indexes) and its message."""
    errors = exc.errors(include_url=False)
    if not errors:
        return (), str(exc)
    first = errors[0]
    return tuple(first["loc"]), str(first["msg"]).removeprefix("Value error, ")


def dotted(loc: tuple[Any, ...]) -> str:
    """A location as a field path: `inputs.0.shape`; "" for the whole value."""
    return ".".join(str(part) for part in loc)
