"""Assertions on one answer, in promptfoo's vocabulary: a strict spec and one async check per type.

Each check returns a `Verdict` for the positive form; `evaluate` applies `not-`, so negation,
scores and reasons behave the same for every type. A check that cannot judge (no judge model,
an unparseable judge reply, a raising user function) raises `CannotJudge`: the case is then an
ERROR, never a FAIL, and `not-` never turns it into a pass.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from gateway.core.schemacheck import schema_problem
from gateway.core.wording import plural
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
from gateway.evals.graded import GRADED_CHECKS
from gateway.evals.text_metrics import word_tokens

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
    "starts-with",
    "regex",
    "is-json",
    "json-schema",
    "is-valid-tool-call",
    "levenshtein",
    "rouge-n",
    "similar",
    "llm-rubric",
    "cost",
    "latency",
    "python",
)
NOT = "not-"
# promptfoo's name for the same check, so its users' suites load unchanged.
ALIASES = {"is-valid-openai-tools-call": "is-valid-tool-call"}
_UNIT_THRESHOLDS = {"rouge-n", "similar", "llm-rubric", "python"}
_MAXIMUM_TYPES = {"cost", "latency"}
_TEXT_TYPES = {"contains", "icontains", "starts-with", "levenshtein", "rouge-n"}
_PYTHON_TARGET = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?")


def _type_choices() -> list[JsonValue]:
    # For editors: the JSON Schema of suites lists every type, so typos show while typing.
    names = [*KNOWN_TYPES, *ALIASES]
    return [*names, *(NOT + name for name in names)]


class AssertionSpec(BaseModel):
    # A NaN or infinite threshold or weight would make every score compare false (or NaN).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    type: str = Field(json_schema_extra={"enum": _type_choices()})
    value: Any = None
    threshold: float | None = None
    weight: float = Field(default=1.0, ge=0)
    n: int | None = Field(default=None, ge=1)
    metric: str | None = None

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
        if base not in KNOWN_TYPES:
            close = difflib.get_close_matches(base, [*KNOWN_TYPES, *ALIASES], n=1)
            hint = f"did you mean {NOT * negated + close[0]!r}? " if close else ""
            raise ValueError(
                f"unknown assertion type {kind!r}; {hint}known types: {', '.join(KNOWN_TYPES)} "
                f"(each can be negated with {NOT!r})"
            )
        return NOT * negated + base

    @model_validator(mode="after")
    def _check_fields(self) -> AssertionSpec:
        base = self.base_type
        if self.n is not None and base != "rouge-n":
            raise ValueError(f"{base} assertion: `n` applies only to rouge-n")
        if self.threshold is not None:
            _check_threshold(base, self.threshold)
        if base in _TEXT_TYPES and _is_number(self.value):
            self.value = str(self.value)  # YAML reads `value: 42` as a number
        _VALUE_CHECKS.get(base, _no_value_check)(self)
        return self


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_threshold(base: str, threshold: float) -> None:
    if base not in DEFAULT_THRESHOLDS and base not in _MAXIMUM_TYPES:
        raise ValueError(f"{base} assertion: `threshold` does not apply (it passes or fails)")
    if base in _UNIT_THRESHOLDS and not 0 <= threshold <= 1:
        raise ValueError(f"{base} assertion: threshold must be between 0 and 1")
    if threshold < 0:
        raise ValueError(f"{base} assertion: threshold must be >= 0")


def _no_value_check(spec: AssertionSpec) -> None:
    if spec.value is not None:
        raise ValueError(f"{spec.base_type} assertion: takes no value")


def _needs_value(spec: AssertionSpec) -> None:
    if spec.value is None:
        raise ValueError(f"{spec.base_type} assertion: needs a value")


def _needs_string(spec: AssertionSpec) -> None:
    if not isinstance(spec.value, str) or not spec.value:
        raise ValueError(f"{spec.base_type} assertion: value must be a non-empty string")


def _needs_string_list(spec: AssertionSpec) -> None:
    items = spec.value
    if not isinstance(items, list) or not items:
        raise ValueError(f"{spec.base_type} assertion: value must be a non-empty list of strings")
    if not all(isinstance(item, str) or _is_number(item) for item in items):
        raise ValueError(f"{spec.base_type} assertion: every item of value must be a string")
    spec.value = [str(item) for item in items]


def _needs_regex(spec: AssertionSpec) -> None:
    _needs_string(spec)
    try:
        re.compile(spec.value)
    except re.error as exc:
        raise ValueError(
            f"regex assertion: value is not a valid regular expression: {exc}"
        ) from None


def _optional_schema(spec: AssertionSpec) -> None:
    if spec.value is None:
        return
    problem = schema_problem(spec.value)
    if problem is not None:
        raise ValueError(f"{spec.base_type} assertion: value {problem}")


def _needs_schema(spec: AssertionSpec) -> None:
    _needs_value(spec)
    _optional_schema(spec)


def _needs_reference(spec: AssertionSpec) -> None:
    _needs_string(spec)
    n = spec.n or 1
    if len(word_tokens(spec.value)) < n:
        raise ValueError(f"rouge-n assertion: the reference needs at least {plural(n, 'word')}")


def _needs_maximum(spec: AssertionSpec) -> None:
    # promptfoo users write the limit as `threshold`; ours is `value`. Either works, once.
    if spec.value is None and spec.threshold is not None:
        spec.value = spec.threshold
    if not _is_number(spec.value) or not 0 <= spec.value < math.inf:
        raise ValueError(f"{spec.base_type} assertion: value must be a number >= 0 (the maximum)")
    if spec.threshold is not None and spec.threshold != spec.value:
        raise ValueError(f"{spec.base_type} assertion: give the maximum once, as value")


def _needs_python_target(spec: AssertionSpec) -> None:
    target = spec.value
    if (
        not isinstance(target, str)
        or not _PYTHON_TARGET.fullmatch(target)
        or ("." not in target and ":" not in target)
    ):
        raise ValueError(
            "python assertion: value must name a function as 'module.path:function' "
            f"or 'module.path.function', got {target!r}"
        )


_VALUE_CHECKS: dict[str, Callable[[AssertionSpec], None]] = {
    "equals": _needs_value,
    "contains": _needs_string,
    "icontains": _needs_string,
    "starts-with": _needs_string,
    "regex": _needs_regex,
    "contains-any": _needs_string_list,
    "contains-all": _needs_string_list,
    "is-json": _optional_schema,
    "json-schema": _needs_schema,
    "levenshtein": _needs_string,
    "rouge-n": _needs_reference,
    "similar": _needs_string,
    "llm-rubric": _needs_string,
    "cost": _needs_maximum,
    "latency": _needs_maximum,
    "python": _needs_python_target,
}


_CHECKS = {**DETERMINISTIC_CHECKS, **GRADED_CHECKS}


async def evaluate(spec: AssertionSpec, ctx: EvalContext) -> Outcome:
    try:
        result = await _CHECKS[spec.base_type](spec, ctx)
    except CannotJudge as exc:
        return Outcome(False, 0.0, f"{spec.base_type}: {exc}", error=True)
    except Exception as exc:
        # One broken check must not take the run down: its case becomes an ERROR that says why.
        return Outcome(False, 0.0, f"{spec.base_type}: check failed: {exc!r}", error=True)
    if isinstance(result, Outcome):
        return result  # skipped: the same whether negated or not
    return _outcome(result, spec.negated)


def _outcome(verdict: Verdict, negated: bool) -> Outcome:
    score = verdict.score if verdict.score is not None else float(verdict.passed)
    expectation = verdict.expectation
    if negated:
        score, expectation = 1.0 - score, f"NOT {expectation}"
    reason = f"expected output {expectation}"
    if verdict.finding:
        reason += f" ({verdict.finding})"
    return Outcome(verdict.passed != negated, min(max(score, 0.0), 1.0), reason)
