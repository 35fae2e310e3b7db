"""Checks of structured answers: JSON (whole or inside text, with a schema), XML, tool calls."""

from __future__ import annotations

import json
import xml.parsers.expat
from typing import TYPE_CHECKING, Any

from gateway.evals.schemas import validation_problem
from gateway.evals.tool_calls import ToolSchemaError, tool_calls_problem
from gateway.evals.verdicts import CannotJudge, Check, EvalContext, Verdict

if TYPE_CHECKING:
    from gateway.evals.assertions import AssertionSpec


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json_value(text: str) -> Any:
    """The output as JavaScript's JSON.parse reads it: NaN and Infinity are not JSON (Python's
    parser would take them); integers beyond 64 bits are kept."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("not JSON: nested too deep") from None
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None


async def check_is_json(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    expectation = "to be JSON" if spec.value is None else "to be JSON matching the schema"
    try:
        document = parse_json_value(ctx.output)
    except ValueError as exc:
        return Verdict(False, expectation, str(exc))
    problem = None if spec.value is None else validation_problem(document, spec.value)
    return Verdict(problem is None, expectation, problem or "")


async def check_json_schema(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    return await check_is_json(spec, ctx)


def json_in_text(text: str) -> list[Any]:
    """The JSON objects and arrays written in a text, outermost first, left to right."""
    decoder = json.JSONDecoder(parse_constant=_refuse_constant)
    found: list[Any] = []
    index = 0
    while True:
        starts = [i for i in (text.find("{", index), text.find("[", index)) if i != -1]
        if not starts:
            return found
        start = min(starts)
        try:
            value, end = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            index = start + 1
            continue
        found.append(value)
        index = end


async def check_contains_json(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    documents = json_in_text(ctx.output)
    if spec.value is None:
        finding = f"found {len(documents)}" if documents else "found none"
        return Verdict(bool(documents), "to contain JSON", finding)
    problem = "no JSON found"
    for document in documents:
        problem = validation_problem(document, spec.value) or ""
        if not problem:
            return Verdict(True, "to contain JSON matching the schema")
    return Verdict(False, "to contain JSON matching the schema", problem)


class _XmlRefused(Exception):
    pass


def parse_xml(text: str) -> dict[str, Any]:
    """The document's element tree as {name: [children...]} per element; ValueError says why
    the text is not one well-formed XML document. A DTD's internal subset is refused (entity
    expansion is how XML bombs work), as promptfoo refuses it."""
    parser = xml.parsers.expat.ParserCreate()
    root: dict[str, Any] = {"name": None, "children": []}
    stack = [root]

    def start(name: str, attributes: dict[str, str]) -> None:
        element = {"name": name, "children": []}
        stack[-1]["children"].append(element)
        stack.append(element)

    def end(name: str) -> None:
        stack.pop()

    def doctype(name: str, system: str | None, public: str | None, internal: int) -> None:
        if internal:
            raise _XmlRefused("DTD internal subsets are not supported")

    def entity(*args: Any) -> None:
        raise _XmlRefused("entity declarations are not supported")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    try:
        parser.Parse(text, True)
    except _XmlRefused as exc:
        raise ValueError(str(exc)) from None
    except xml.parsers.expat.ExpatError as exc:
        reason = xml.parsers.expat.errors.messages[exc.code]
        raise ValueError(f"not well-formed XML: {reason} (line {exc.lineno})") from None
    return root


def _has_path(root: dict[str, Any], path: list[str]) -> bool:
    """A dotted path from the document element down (`root.child.grandchild`); a number picks
    one of several same-named elements (`root.item.1`), as promptfoo's parsed object does."""
    current: list[dict[str, Any]] = [root]
    for part in path:
        if len(current) > 1:  # several same-named elements: only an index goes on
            if not part.isdigit() or int(part) >= len(current):
                return False
            current = [current[int(part)]]
            continue
        current = [child for child in current[0]["children"] if child["name"] == part]
        if not current:
            return False
    return True


async def check_is_xml(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    required = (spec.value or {}).get("requiredElements", [])
    expectation = "to be XML" + (f" with {', '.join(required)}" if required else "")
    try:
        root = parse_xml(ctx.output)
    except ValueError as exc:
        return Verdict(False, expectation, str(exc))
    missing = [path for path in required if not _has_path(root, path.split("."))]
    return Verdict(not missing, expectation, f"missing {', '.join(missing)}" if missing else "")


async def check_tool_call(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    if ctx.tools is None:
        # promptfoo checks calls against the provider's tools; with none offered, there is
        # nothing to check them against.
        raise CannotJudge("the suite offers no tools to check calls against (options.tools)")
    try:
        problem = tool_calls_problem(ctx.tool_calls, ctx.output, ctx.tools)
    except ToolSchemaError as exc:
        raise CannotJudge(str(exc)) from None
    return Verdict(problem is None, "to be a valid call of the offered tools", problem or "")


STRUCTURED_CHECKS: dict[str, Check] = {
    "is-json": check_is_json,
    "contains-json": check_contains_json,
    "json-schema": check_json_schema,
    "is-xml": check_is_xml,
    "is-valid-tool-call": check_tool_call,
}
