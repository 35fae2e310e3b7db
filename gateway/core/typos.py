"""Unknown keys in user-authored files, with the key the author probably meant.

The schema is the pydantic model the file is validated against: the keys allowed at a path are
the fields (by alias) of the model found there, through lists, mappings and optionals.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Sequence
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

# As prompt front matter suggests: close enough to be a typo, not a different word.
CUTOFF = 0.7


def unknown_key(model: type[BaseModel] | None, loc: Sequence[str | int]) -> str:
    """`unknown key 'asert': did you mean 'assert'?`, else the keys allowed there."""
    key = str(loc[-1])
    known = allowed_keys(model, loc[:-1]) if model is not None else []
    close = difflib.get_close_matches(key, known, n=1, cutoff=CUTOFF)
    if close:
        return f"unknown key {key!r}: did you mean {close[0]!r}?"
    if known:
        return f"unknown key {key!r} (allowed: {', '.join(known)})"
    return f"unknown key {key!r}"


def allowed_keys(model: type[BaseModel], path: Sequence[str | int]) -> list[str]:
    annotation: Any = model
    for part in path:
        annotation = _step(annotation, part)
        if annotation is None:
            return []
    found = _model(annotation)
    if found is None:
        return []
    return sorted(field.alias or name for name, field in found.model_fields.items())


def _step(annotation: Any, part: str | int) -> Any:
    """The annotation of what `part` names inside a value of `annotation`, if known."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        steps = (_step(arg, part) for arg in args if arg is not type(None))
        return next((step for step in steps if step is not None), None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if isinstance(part, int):
            return None
        fields = annotation.model_fields.items()
        return next((f.annotation for name, f in fields if part in (name, f.alias)), None)
    if origin in (list, tuple, set, frozenset) and isinstance(part, int) and args:
        return args[0]
    if origin is dict and isinstance(part, str) and len(args) == 2:
        return args[1]
    return None


def _model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        for arg in get_args(annotation):
            found = _model(arg)
            if found is not None:
                return found
    return None
