"""Checks of JSON Schemas that users write (prompt input/output schemas, eval assertions).

jsonschema itself raises TypeError on a non-string `$schema` and fetches any remote `$ref`
over the network when it validates; a user's schema must fail here instead, with a message.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator, SchemaError, validators
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012, specification_with

from gateway.core.yamlfile import format_loc

_REFERENCES = ("$ref", "$dynamicRef", "$recursiveRef")


def schema_problem(schema: Any) -> str | None:
    """Why schema is not a usable JSON Schema (a mapping or a boolean), else None."""
    if isinstance(schema, bool):
        return None
    if not isinstance(schema, dict):
        return "must be a JSON Schema (a mapping)"
    dialect = schema.get("$schema", "")
    if not isinstance(dialect, str):
        return "has a $schema that is not a string (it names a JSON Schema dialect)"
    try:
        validators.validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        at = f" at {format_loc(list(exc.path))}" if exc.path else ""
        return f"is not a valid JSON Schema{at}: {exc.message}"
    return _broken_reference(schema, dialect)


def _broken_reference(schema: dict[str, Any], dialect: str) -> str | None:
    """A reference that does not resolve inside the schema itself."""
    resource = specification_with(dialect, default=DRAFT202012).create_resource(schema)
    resolver = Registry().resolver_with_root(resource)
    stack: list[Any] = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        stack.extend(item.values())
        for key in _REFERENCES:
            ref = item.get(key)
            if not isinstance(ref, str):
                continue
            if not ref.startswith("#"):
                return f"has {key} {ref!r} pointing outside the schema (use '#/$defs/...')"
            try:
                resolver.lookup(ref)
            except Unresolvable:
                return f"has {key} {ref!r} pointing to nothing in the schema"
    return None
