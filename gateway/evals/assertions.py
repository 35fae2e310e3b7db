"""Assertions on one answer, in promptfoo's vocabulary: a strict spec and one async check per type.

Each check returns a `Verdict` for the positive form; `evaluate` applies `not-`, the assertion's
`transform` and `weight`, so negation, scores and reasons behave the same for every type, as
promptfoo's do. A check that cannot judge (no judge model, an unparseable judge reply, a raising
user function) raises `CannotJudge`: the case is then an ERROR, never a FAIL, and `not-` never
turns it into a pass.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.core.validation import first_problem
from gateway.evals.checks import (
    DEFAULT_THRESHOLDS,
    DETERMINISTIC_CHECKS,
    CannotJudge,
    Embed,
    EvalContext,
    Judge,
    Outcome,
    Verdict,
)
from gateway.evals.files import is_file_ref
from gateway.evals.graded import GRADED_CHECKS
from gateway.evals.js_regex import JsRegexError, compile_js
from gateway.evals.jsvalues import js_string
from gateway.evals.schemas import schema_value_problem
from gateway.evals.scripts import (
    SCRIPT_CHECKS,
    ScriptProblem,
    is_script,
    run_transform,
    script_problem,
    script_value,
)
from gateway.evals.templating import has_template
from gateway.evals.text_metrics import comma_separated, word_tokens

__all__ = [
    "KNOWN_TYPES",
    "AssertionSpec",
    "Embed",
    "EvalContext",
    "Judge",
    "Outcome",
    "evaluate",
]

KNOWN_TYPES = (
    "equals",
    "contains",
    "icontains",
    "contains-any",
    "contains-all",
    "icontains-any",
    "icontains-all",
    "starts-with",
    "regex",
    "word-count",
    "is-json",
    "contains-json",
    "json-schema",
    "is-xml",
    "is-valid-tool-call",
    "finish-reason",
    "levenshtein",
    "rouge-n",
    "bleu",
    "similar",
    "llm-rubric",
    "cost",
    "latency",
    "python",
    "assert-set",
)
NOT = "not-"
SET = "assert-set"
# promptfoo's name for the same check, so its users' suites load unchanged.
ALIASES = {"is-valid-openai-tools-call": "is-valid-tool-call"}
_UNIT_THRESHOLDS = {"rouge-n", "bleu", "similar", "llm-rubric", "python", SET}
_MAXIMUM_TYPES = {"cost", "latency"}
_TEXT_TYPES = {"contains", "icontains", "starts-with", "levenshtein", "rouge-n", "finish-reason"}


def _type_choices() -> list[JsonValue]:
    # For editors: the JSON Schema of suites lists every type, so typos show while typing.
    names = [*KNOWN_TYPES, *ALIASES]
    return [*names, *(NOT + name for name in names if name != SET)]


class AssertionSpec(BaseModel):
    # A NaN or infinite threshold or weight would make every score compare false (or NaN).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    type: str = Field(json_schema_extra={"enum": _type_choices()})
    value: Any = None
    threshold: float | None = None
    # 0: the assertion is reported (and feeds its metric) but never fails the case.
    weight: float = Field(default=1.0, ge=0)
    n: int | None = Field(default=None, ge=1)
    metric: str | None = Field(
        default=None, description="A named score: averaged per case and over the run."
    )
    transform: str | None = Field(
        default=None,
        description="Python run on the output before this check: an expression of `output` "
        "and `context`, or file://code.py:function.",
    )
    provider: str | None = Field(
        default=None,
        description="The model alias that grades (llm-rubric) or embeds (similar) for this "
        "assertion, instead of the suite's judge or embedding_model.",
    )
    config: dict[str, Any] | None = Field(
        default=None, description="Passed to python checks as context['config']."
    )
    asserts: list[AssertionSpec] | None = Field(
        default=None, alias="assert", description="assert-set: the assertions grouped."
    )

    @property
    def negated(self) -> bool:
        return self.type.startswith(NOT)

    @property
    def base_type(self) -> str:
        return self.type.removeprefix(NOT)

    @field_validator("type")
    @classmethod
    def _known_type(cls, kind: str) -> str:
        negated, base = kind.startswith(NOT), kind.removeprefix(NOT)
        base = ALIASES.get(base, base)
        if base not in KNOWN_TYPES or (negated and base == SET):
            close = difflib.get_close_matches(base, [*KNOWN_TYPES, *ALIASES], n=1)
            hint = f"did you mean {NOT * negated + close[0]!r}? " if close else ""
            raise ValueError(
                f"unknown assertion type {kind!r}; {hint}known types: {', '.join(KNOWN_TYPES)} "
                f"(each but assert-set can be negated with {NOT!r})"
            )
        return NOT * negated + base

    @model_validator(mode="after")
    def _check_fields(self) -> AssertionSpec:
        base = self.base_type
        if self.n is not None and base != "rouge-n":
            raise ValueError(f"{base} assertion: `n` applies only to rouge-n")
        if (self.asserts is not None) != (base == SET):
            raise ValueError(f"{base} assertion: `assert` groups assertions in an assert-set only")
        if self.threshold is not None:
            _check_threshold(base, self.threshold)
        if self.transform is not None:
            _check_script(f"{base} assertion: transform", self.transform)
        if deferred(self.value) and not (base == "python" and not has_template(self.value)):
            return self  # checked once the case's variables or the file have filled it in
        if base in _TEXT_TYPES and _is_number(self.value):
            self.value = js_string(self.value)  # YAML reads `value: 42` as a number
        _VALUE_CHECKS.get(base, _no_value_check)(self)
        return self


def deferred(value: Any) -> bool:
    """A value still to be filled in: a template, or a file to read, when the suite loads."""
    if isinstance(value, list):
        return any(deferred(item) for item in value)
    return isinstance(value, str) and (has_template(value) or is_file_ref(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_threshold(base: str, threshold: float) -> None:
    if base not in DEFAULT_THRESHOLDS and base not in _MAXIMUM_TYPES | _UNIT_THRESHOLDS:
        raise ValueError(f"{base} assertion: `threshold` does not apply (it passes or fails)")
    if base in _UNIT_THRESHOLDS and not 0 <= threshold <= 1:
        raise ValueError(f"{base} assertion: threshold must be between 0 and 1")
    if threshold < 0:
        raise ValueError(f"{base} assertion: threshold must be >= 0")


def _check_script(what: str, code: str) -> None:
    problem = script_problem(code)
    if problem is not None:
        raise ValueError(f"{what}: {problem}")


def _no_value_check(spec: AssertionSpec) -> None:
    if spec.value is not None:
        raise ValueError(f"{spec.base_type} assertion: takes no value")


def _needs_value(spec: AssertionSpec) -> None:
    if spec.value is None:
        raise ValueError(f"{spec.base_type} assertion: needs a value")


def _needs_string(spec: AssertionSpec) -> None:
    if not isinstance(spec.value, str) or not spec.value:
        raise ValueError(f"{spec.base_type} assertion: value must be a non-empty string")


def _needs_strings(spec: AssertionSpec) -> None:
    """A string, or a non-empty list of them (any one may match)."""
    items = spec.value
    if isinstance(items, list) and items and all(isinstance(i, str) and i for i in items):
        return
    _needs_string(spec)


def _needs_string_list(spec: AssertionSpec) -> None:
    items = spec.value
    if isinstance(items, str):
        items = comma_separated(items)  # promptfoo's "a, b, c" form
    if not isinstance(items, list) or not items:
        raise ValueError(f"{spec.base_type} assertion: value must be a non-empty list of strings")
    if not all(isinstance(item, str) or _is_number(item) for item in items):
        raise ValueError(f"{spec.base_type} assertion: every item of value must be a string")
    spec.value = [js_string(item) for item in items]


def _needs_regex(spec: AssertionSpec) -> None:
    _needs_string(spec)
    try:
        compile_js(spec.value)
    except JsRegexError as exc:
        raise ValueError(f"regex assertion: {exc}") from None


def _optional_schema(spec: AssertionSpec) -> None:
    if spec.value is None or spec.value == "":
        spec.value = None
        return
    schema, problem = schema_value_problem(spec.value)
    if problem is not None:
        raise ValueError(f"{spec.base_type} assertion: value {problem}")
    spec.value = schema


def _needs_schema(spec: AssertionSpec) -> None:
    _needs_value(spec)
    _optional_schema(spec)


def _needs_reference(spec: AssertionSpec) -> None:
    _needs_string(spec)
    n = spec.n or 1
    if len(word_tokens(spec.value)) < n:
        raise ValueError(f"rouge-n assertion: the reference needs at least {n} word(s)")


def _needs_maximum(spec: AssertionSpec) -> None:
    # promptfoo users write the limit as `threshold`; ours is `value`. Either works, once.
    if spec.value is None and spec.threshold is not None:
        spec.value = spec.threshold
    if not _is_number(spec.value) or not 0 <= spec.value < math.inf:
        raise ValueError(f"{spec.base_type} assertion: value must be a number >= 0 (the maximum)")
    if spec.threshold is not None and spec.threshold != spec.value:
        raise ValueError(f"{spec.base_type} assertion: give the maximum once, as value")


def _needs_python(spec: AssertionSpec) -> None:
    if not isinstance(spec.value, str) or not spec.value.strip():
        raise ValueError(
            "python assertion: value must be Python code (`output.startswith('Hi')`), "
            "file://checks.py:function, or module.path:function"
        )
    _check_script("python assertion", spec.value)


def _needs_word_count(spec: AssertionSpec) -> None:
    value = spec.value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = spec.value = int(value)
    if isinstance(value, dict):
        unknown = set(value) - {"min", "max"}
        bounds = [value.get("min"), value.get("max")]
        if unknown or not any(b is not None for b in bounds):
            raise ValueError("word-count assertion: value is a number, or {min: N, max: N}")
        if not all(b is None or (_is_number(b) and b >= 0) for b in bounds):
            raise ValueError("word-count assertion: min and max must be numbers >= 0")
        if None not in bounds and bounds[0] > bounds[1]:  # type: ignore[operator]
            raise ValueError("word-count assertion: min must not be above max")
    elif not (_is_number(value) and value >= 0):
        raise ValueError("word-count assertion: value is a number, or {min: N, max: N}")


def _needs_xml_elements(spec: AssertionSpec) -> None:
    if spec.value is None:
        return
    elements = spec.value.get("requiredElements") if isinstance(spec.value, dict) else None
    if (
        not isinstance(spec.value, dict)
        or set(spec.value) != {"requiredElements"}
        or not isinstance(elements, list)
        or not all(isinstance(path, str) and path for path in elements)
    ):
        raise ValueError(
            "is-xml assertion: value is {requiredElements: [root.child, ...]} (or nothing)"
        )


def _needs_set(spec: AssertionSpec) -> None:
    _no_value_check(spec)
    if not spec.asserts:
        raise ValueError("assert-set assertion: `assert` lists the assertions of the set")
    if any(child.base_type == SET for child in spec.asserts):
        raise ValueError("assert-set assertion: an assert-set cannot hold another")


_VALUE_CHECKS: dict[str, Callable[[AssertionSpec], None]] = {
    "equals": _needs_value,
    "contains": _needs_string,
    "icontains": _needs_string,
    "starts-with": _needs_string,
    "regex": _needs_regex,
    "contains-any": _needs_string_list,
    "contains-all": _needs_string_list,
    "icontains-any": _needs_string_list,
    "icontains-all": _needs_string_list,
    "word-count": _needs_word_count,
    "is-json": _optional_schema,
    "contains-json": _optional_schema,
    "json-schema": _needs_schema,
    "is-xml": _needs_xml_elements,
    "finish-reason": _needs_string,
    "levenshtein": _needs_string,
    "rouge-n": _needs_reference,
    "bleu": _needs_strings,
    "similar": _needs_strings,
    "llm-rubric": _needs_string,
    "cost": _needs_maximum,
    "latency": _needs_maximum,
    "python": _needs_python,
    SET: _needs_set,
}


def revalidate(spec: AssertionSpec, **update: Any) -> AssertionSpec:
    """The spec with fields replaced (a rendered value), checked again; ValueError says why."""
    data = spec.model_dump(by_alias=True, exclude_unset=True, exclude={"asserts"})
    data.update(update)
    if spec.asserts is not None and "assert" not in update:
        data["assert"] = spec.asserts
    try:
        return AssertionSpec.model_validate(data)
    except ValidationError as exc:
        raise ValueError(first_problem(exc)[1]) from None


_CHECKS = {**DETERMINISTIC_CHECKS, **GRADED_CHECKS, **SCRIPT_CHECKS}


async def evaluate(spec: AssertionSpec, ctx: EvalContext) -> Outcome:
    """One assertion (not an assert-set: `scoring.judge_case` groups those) on one answer."""
    try:
        if spec.transform is not None:
            ctx = ctx.with_output(await run_transform(spec.transform, ctx))
        if spec.base_type != "python" and isinstance(spec.value, str) and is_script(spec.value):
            spec = await _with_script_value(spec, ctx)
        result = await _CHECKS[spec.base_type](spec, ctx)
    except (CannotJudge, ScriptProblem) as exc:
        return Outcome(False, 0.0, f"{spec.base_type}: {exc}", error=True)
    except Exception as exc:
        # One broken check must not take the run down: its case becomes an ERROR that says why.
        return Outcome(False, 0.0, f"{spec.base_type}: check failed: {exc!r}", error=True)
    if isinstance(result, Outcome):
        return result  # skipped: the same whether negated or not
    outcome = _outcome(result, spec.negated)
    if spec.weight == 0 and not outcome.passed:
        # promptfoo: a zero-weight assertion is a measurement; it never fails its case.
        return Outcome(True, outcome.score, outcome.reason + " (weight 0: not counted)")
    return outcome


async def _with_script_value(spec: AssertionSpec, ctx: EvalContext) -> AssertionSpec:
    """The spec with the expected value its `file://code.py` function gives (promptfoo)."""
    value = await script_value(spec.value, ctx, spec.config)
    try:
        return revalidate(spec, value=value)
    except ValueError as exc:
        raise CannotJudge(f"{spec.value} returned {value!r}: {exc}") from None


def _outcome(verdict: Verdict, negated: bool) -> Outcome:
    passed = verdict.passed != negated
    if verdict.score is None:
        score = float(passed)
    elif negated and verdict.invert_score:
        score = 1.0 - verdict.score
    else:
        score = verdict.score  # a python check's own score is kept, negated or not (promptfoo)
    expectation = f"NOT {verdict.expectation}" if negated else verdict.expectation
    reason = f"expected output {expectation}"
    if verdict.finding:
        reason += f" ({verdict.finding})"
    return Outcome(passed, min(max(score, 0.0), 1.0), reason)
