"""A prompt's schemas: Picoschema expanded by dotpromptz, checked by jsonschema.

Input, output and the caller's context (`gateway.context`). Picoschema in full: objects,
scalars with descriptions (`schema: string, the text`), and named schemas from the prompts
folder's schema files. Problems come back as (line, message) pairs pointing at the schema
(or default) in the file; `used` collects the named schemas a prompt's version includes.
"""

from __future__ import annotations

from typing import Any

from jsonschema import validators

from gateway.core.schemacheck import schema_problem
from gateway.core.yamlfile import YamlDocument, format_loc
from gateway.prompts.frontmatter import InputSpec, OutputSpec
from gateway.prompts.library import Library, expand
from gateway.prompts.template import HANDLEBARS_DATA

Problems = list[tuple[int, str]]
# `@` names the gateway fills itself: callers cannot pass them.
GATEWAY_DATA = frozenset({"auth"})
CONTEXT_KEY = "gateway.context"


def is_object(schema: dict[str, Any] | None) -> bool:
    return schema is not None and schema.get("type") == "object"


def input_schema(
    spec: InputSpec, doc: YamlDocument, problems: Problems, library: Library, used: set[str]
) -> dict[str, Any] | None:
    """The variables' JSON Schema; a key with an input.default is not required of callers.
    A schema that is not an object (`schema: string`) describes one value: the template
    reads it as `{{this}}` and a call passes it as `variables`."""
    if spec.schema_ is None:
        return None
    loc = ("input", "schema")
    schema = _expand(spec.schema_, loc, doc, problems, library, used)
    if schema is None:
        return None
    line = doc.line_of(loc) or 1
    defaults = spec.default or {}
    if not is_object(schema):
        if defaults:
            kind = schema.get("type", "any")
            problems.append(
                (
                    doc.line_of(("input", "default")) or line,
                    f"input.default names variables, but input.schema is one value of type "
                    f"{kind!r}, not an object of variables (remove the default)",
                )
            )
        return schema
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


def output_schema(
    spec: OutputSpec, doc: YamlDocument, problems: Problems, library: Library, used: set[str]
) -> dict[str, Any] | None:
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
    return _expand(spec.schema_, ("output", "schema"), doc, problems, library, used)


def context_schema(
    written: Any, doc: YamlDocument, problems: Problems, library: Library, used: set[str]
) -> dict[str, Any] | None:
    """The JSON Schema of what callers pass as `prompt.context`: an object whose names the
    template reads as `{{@name}}`."""
    if written is None:
        return None
    loc = (CONTEXT_KEY,)
    schema = _expand(written, loc, doc, problems, library, used)
    if schema is None:
        return None
    line = doc.line_of(loc) or 1
    if not is_object(schema):
        problems.append(
            (
                line,
                f"{CONTEXT_KEY} must describe an object (the names a caller passes as "
                f"prompt.context), got type {schema.get('type', 'any')!r}",
            )
        )
        return None
    for name in schema.get("properties") or {}:
        if name in GATEWAY_DATA or name in HANDLEBARS_DATA:
            who = "the gateway fills it" if name in GATEWAY_DATA else "Handlebars fills it"
            problems.append(
                (doc.line_of((*loc, name)) or line, f"{CONTEXT_KEY}.{name}: reserved ({who})")
            )
    return schema


def _expand(
    schema: Any,
    loc: tuple[str, ...],
    doc: YamlDocument,
    problems: Problems,
    library: Library,
    used: set[str],
) -> dict[str, Any] | None:
    """Picoschema (or JSON Schema) to a checked JSON Schema, else a problem at loc."""
    line = doc.line_of(loc) or 1
    where = ".".join(loc) if loc != (CONTEXT_KEY,) else CONTEXT_KEY
    expanded, problem = expand(schema, library, used)
    if problem is not None:
        problems.append((line, f"{where} {problem}"))
        return None
    if not isinstance(expanded, dict):
        problems.append((line, f"{where} is empty"))
        return None
    problem = schema_problem(expanded)
    if problem is not None:
        problems.append((line, f"{where} {problem}"))
        return None
    return expanded
