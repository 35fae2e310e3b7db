"""is-valid-tool-call: are an answer's tool calls well formed, and calls of the offered tools?"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match
from jsonschema.validators import validator_for


class ToolSchemaError(ValueError):
    """An offered tool's parameters are not a JSON Schema: the prompt is wrong, not the answer."""


def calls_in_output(output: str) -> list[Any] | None:
    """Tool calls written as text: {"name", "arguments"}, a list of them, or OpenAI's shape."""
    try:
        parsed = json.loads(output)
    except ValueError:
        return None
    if isinstance(parsed, dict) and isinstance(parsed.get("tool_calls"), list):
        parsed = parsed["tool_calls"]
    calls = parsed if isinstance(parsed, list) else [parsed]
    return calls if calls and all(isinstance(call, dict) for call in calls) else None


def _parameters_by_name(tools: list[dict[str, Any]]) -> dict[str, Any]:
    offered = {}
    for tool in tools:
        function = tool.get("function")
        if not isinstance(function, dict):
            function = tool
        if isinstance(function.get("name"), str):
            offered[function["name"]] = function.get("parameters") or {"type": "object"}
    return offered


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return None
    return raw


def call_problem(call: Any, offered: dict[str, Any] | None) -> str | None:
    """What is wrong with one call (OpenAI's {"function": {...}} or a bare {"name", ...})."""
    if not isinstance(call, dict):
        return "not an object"
    function = call.get("function")
    if not isinstance(function, dict):
        function = call
    name = function.get("name")
    if not isinstance(name, str) or not name:
        return "no function name"
    arguments = _arguments(function.get("arguments"))
    if not isinstance(arguments, dict):
        return f"{name}: arguments are not a JSON object"
    if offered is None:
        return None
    if name not in offered:
        return f"{name}: not among the offered tools ({', '.join(sorted(offered)) or 'none'})"
    schema = offered[name]
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise ToolSchemaError(f"tool {name!r} has invalid parameters: {exc.message}") from None
    error = best_match(cls(schema).iter_errors(arguments))
    return None if error is None else f"{name}: arguments at {error.json_path}: {error.message}"


def tool_calls_problem(
    tool_calls: list[dict[str, Any]] | None, output: str, tools: list[dict[str, Any]] | None
) -> str | None:
    """None when every call is valid, else the first problem found."""
    calls: list[Any] | None = tool_calls or calls_in_output(output)
    if not calls:
        return "no tool calls, and the output is not a JSON tool call"
    offered = None if tools is None else _parameters_by_name(tools)
    for index, call in enumerate(calls, 1):
        problem = call_problem(call, offered)
        if problem is not None:
            return f"tool call {index}: {problem}"
    return None
