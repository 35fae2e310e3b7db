"""The deterministic checks, one per assertion type, and the types every check shares.

A check answers for the positive form of its assertion (`evaluate` applies `not-`) and raises
`CannotJudge` when the answer lacks what it needs: that case is an ERROR, never a FAIL.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for

from gateway.evals.text_metrics import levenshtein, rouge_n
from gateway.evals.tool_calls import ToolSchemaError, tool_calls_problem

if TYPE_CHECKING:
    from gateway.evals.assertions import AssertionSpec

Judge = Callable[[str], Awaitable[str]]
Embed = Callable[[list[str]], Awaitable[list[list[float]]]]

# Edit distance is quadratic: past about a million cells (~20 ms) it leaves the event loop.
_EVENT_LOOP_CELLS = 1_000_000

DEFAULT_THRESHOLDS = {
    "levenshtein": 5.0,
    "rouge-n": 0.75,
    "similar": 0.8,
    "llm-rubric": 0.5,
    "python": 0.5,
}


@dataclass(frozen=True, slots=True)
class Outcome:
    passed: bool
    score: float  # 0..1; binary types give 1.0 or 0.0
    reason: str
    error: bool = False  # could not be judged: the case is ERROR, not FAIL
    skipped: bool = False  # latency of a cached answer: counts as a pass


@dataclass(slots=True)
class EvalContext:
    output: str
    vars: dict[str, Any]
    latency_ms: float | None = None
    cost_usd: float | None = None
    cached: bool = False
    tool_calls: list[dict[str, Any]] | None = None
    judge: Judge | None = None
    embed: Embed | None = None
    tools: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """A check's answer for the positive form of its assertion."""

    passed: bool
    expectation: str  # completes "expected output ...", starting with "to"
    finding: str = ""  # what was observed, when it explains the verdict
    score: float | None = None  # None: 1.0 or 0.0 by `passed`


class CannotJudge(Exception):
    """The assertion could not be judged: the case is an error, not a failure."""


Check = Callable[["AssertionSpec", EvalContext], Awaitable[Verdict | Outcome]]


def threshold_of(spec: AssertionSpec) -> float:
    return spec.threshold if spec.threshold is not None else DEFAULT_THRESHOLDS[spec.base_type]


def shorten(value: Any, limit: int = 60) -> str:
    """A value as a reason shows it: strings quoted, anything else as JSON, long ones clipped."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return repr(text) if isinstance(value, str) else text


class _NotJson(ValueError):
    pass


def _parse_json(text: str) -> Any:
    try:
        # The standard parser, not orjson: it keeps integers beyond 64 bits.
        return json.loads(text)
    except ValueError as exc:
        raise _NotJson(f"not JSON: {exc}") from None


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: `true` is not `1`, but `1` is `1.0`."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    numbers = isinstance(a, int | float) and isinstance(b, int | float)
    return (type(a) is type(b) or numbers) and a == b


def _schema_problem(document: Any, schema: Any) -> str | None:
    cls = validator_for(schema, default=Draft202012Validator)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    error = best_match(validator.iter_errors(document))
    return None if error is None else f"at {error.json_path}: {error.message}"


async def check_equals(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    expectation = f"to equal {shorten(spec.value)}"
    if isinstance(spec.value, str):
        return Verdict(ctx.output.strip() == spec.value.strip(), expectation)
    try:
        parsed = _parse_json(ctx.output)
    except _NotJson as exc:
        return Verdict(False, expectation, str(exc))
    return Verdict(_json_equal(parsed, spec.value), expectation)


async def check_contains(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    return Verdict(spec.value in ctx.output, f"to contain {shorten(spec.value)}")


async def check_icontains(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    found = spec.value.casefold() in ctx.output.casefold()
    return Verdict(found, f"to contain {shorten(spec.value)} (ignoring case)")


async def check_contains_any(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    found = [item for item in spec.value if item in ctx.output]
    finding = f"found {shorten(found[0])}" if found else "found none"
    return Verdict(bool(found), f"to contain any of {shorten(spec.value)}", finding)


async def check_contains_all(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    missing = [item for item in spec.value if item not in ctx.output]
    finding = f"missing {shorten(missing)}" if missing else "found all"
    return Verdict(not missing, f"to contain all of {shorten(spec.value)}", finding)


async def check_starts_with(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    # Models often open with a newline or space that nobody means to assert on.
    found = ctx.output.lstrip().startswith(spec.value)
    return Verdict(found, f"to start with {shorten(spec.value)}")


async def check_regex(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    return Verdict(re.search(spec.value, ctx.output) is not None, f"to match /{spec.value}/")


async def check_is_json(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    expectation = "to be JSON" if spec.value is None else "to be JSON matching the schema"
    try:
        document = _parse_json(ctx.output)
    except _NotJson as exc:
        return Verdict(False, expectation, str(exc))
    problem = None if spec.value is None else _schema_problem(document, spec.value)
    return Verdict(problem is None, expectation, problem or "")


async def check_json_schema(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    return await check_is_json(spec, ctx)


async def check_levenshtein(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    limit = threshold_of(spec)
    if len(ctx.output) * len(spec.value) > _EVENT_LOOP_CELLS:
        distance = await asyncio.to_thread(levenshtein, ctx.output, spec.value)
    else:
        distance = levenshtein(ctx.output, spec.value)
    longest = max(len(ctx.output), len(spec.value))
    return Verdict(
        distance <= limit,
        f"to be within {limit:g} edits of {shorten(spec.value)}",
        f"distance {distance}",
        1.0 - distance / longest if longest else 1.0,
    )


async def check_rouge_n(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    n, limit = spec.n or 1, threshold_of(spec)
    score = rouge_n(ctx.output, spec.value, n)
    return Verdict(
        score >= limit,
        f"to reach ROUGE-{n} {limit:g} against {shorten(spec.value)}",
        f"ROUGE-{n} {score:.3f}",
        score,
    )


async def check_cost(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    if ctx.cost_usd is None:
        raise CannotJudge("the answer has no cost to check")
    return Verdict(
        ctx.cost_usd <= spec.value,
        f"to cost at most ${spec.value:g}",
        f"cost ${ctx.cost_usd:.6g}",
    )


async def check_latency(spec: AssertionSpec, ctx: EvalContext) -> Verdict | Outcome:
    if ctx.cached:
        # A cache hit's latency says nothing about the model; promptfoo users asked for a skip.
        return Outcome(
            True, 1.0, "latency not checked: the answer came from the cache", skipped=True
        )
    if ctx.latency_ms is None:
        raise CannotJudge("the answer has no latency to check")
    return Verdict(
        ctx.latency_ms <= spec.value,
        f"to take at most {spec.value:g} ms",
        f"took {ctx.latency_ms:.0f} ms",
    )


async def check_tool_call(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    expectation = "to be a valid tool call" + (" of the offered tools" if ctx.tools else "")
    try:
        problem = tool_calls_problem(ctx.tool_calls, ctx.output, ctx.tools)
    except ToolSchemaError as exc:
        raise CannotJudge(str(exc)) from None
    return Verdict(problem is None, expectation, problem or "")


DETERMINISTIC_CHECKS: dict[str, Check] = {
    "equals": check_equals,
    "contains": check_contains,
    "icontains": check_icontains,
    "contains-any": check_contains_any,
    "contains-all": check_contains_all,
    "starts-with": check_starts_with,
    "regex": check_regex,
    "is-json": check_is_json,
    "json-schema": check_json_schema,
    "is-valid-tool-call": check_tool_call,
    "levenshtein": check_levenshtein,
    "rouge-n": check_rouge_n,
    "cost": check_cost,
    "latency": check_latency,
}
