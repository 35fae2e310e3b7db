"""A prompt's input and output schemas: Picoschema expanded by dotpromptz, checked by jsonschema.

Problems come back as (line, message) pairs pointing at the schema (or default) in the file.
"""

from __future__ import annotations

import copy
from collections.abc import Coroutine
from typing import Any

from dotpromptz import picoschema_to_json_schema
from jsonschema import validators

from gateway.core.schemacheck import schema_problem
from gateway.core.yamlfile import YamlDocument, format_loc
from gateway.prompts.frontmatter import InputSpec, OutputSpec

Problems = list[tuple[int, str]]


def input_schema(spec: InputSpec, doc: YamlDocument, problems: Problems) -> dict[str, Any] | None:
    """The variables' JSON Schema; a key with an input.default is not required of callers."""
    if spec.schema_ is None:
        return None
    schema = _expand(spec.schema_, ("input", "schema"), doc, problems)
    if schema is None:
        return None
    line = doc.line_of(("input", "schema")) or 1
    if schema.get("type") != "object":
        problems.append(
            (
                line,
                f"input.schema must describe an object of variables, got type "
                f"{schema.get('type')!r} (a Picoschema field named 'type' reads as JSON Schema: "
                f"rename it)",
            )
        )
        return None
    defaults = spec.default or {}
    if isinstance(schema.get("required"), list):
        schema["required"] = [key for key in schema["required"] if key not in defaults]
    properties = schema.get("properties") or {}
    for key in defaults:
        if key not in properties:
            problems.append(
                (
                    doc.line_of(("input", "default", key)) or line,
                    f"input.default.{key} is not declared in input.schema (declare it there)",
                )
            )
    # Whole-object errors (a required key, an undeclared one) are not the defaults' fault.
    for error in validators.validator_for(schema)(schema).iter_errors(defaults):
        at = list(error.absolute_path)
        if at and at[0] in properties:
            problems.append(
                (
                    doc.line_of(("input", "default", *at)) or line,
                    f"input.default.{format_loc(at)}: {error.message}",
                )
            )
    return schema


def output_schema(spec: OutputSpec, doc: YamlDocument, problems: Problems) -> dict[str, Any] | None:
    if spec.schema_ is None:
        return None
    if spec.format == "text":
        problems.append(
            (
                doc.line_of(("output", "schema")) or 1,
                "output.schema needs output.format: json (set it, or remove the schema)",
            )
        )
        return None
    return _expand(spec.schema_, ("output", "schema"), doc, problems)


def _expand(
    schema: Any, loc: tuple[str, ...], doc: YamlDocument, problems: Problems
) -> dict[str, Any] | None:
    """Picoschema (or JSON Schema) to a checked JSON Schema, else a problem at loc."""
    line = doc.line_of(loc) or 1
    where = ".".join(loc)
    try:
        # deepcopy: dotpromptz appends None to an optional enum's list in place.
        expanded = _finish(picoschema_to_json_schema(copy.deepcopy(schema)))
    except Exception as exc:  # dotpromptz raises ValueError, and worse on odd shapes
        problems.append((line, f"{where} is not valid Picoschema: {exc}"))
        return None
    if not isinstance(expanded, dict):
        problems.append((line, f"{where} is empty"))
        return None
    problem = schema_problem(expanded)
    if problem is not None:
        problems.append((line, f"{where} {problem}"))
        return None
    return expanded


def _finish(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (Picoschema with no schema resolver).

    dotpromptz makes Picoschema async only for its resolvers; stepping it once keeps parsing
    synchronous and usable both inside and outside an event loop.
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("Picoschema expansion suspended; a schema resolver is not supported")
