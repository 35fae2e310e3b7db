"""The types every check shares: what a check sees (`EvalContext`), what it answers (`Verdict`),
what an assertion comes to (`Outcome`), and the defaults promptfoo gives thresholds."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.evals.assertions import AssertionSpec

Judge = Callable[[str], Awaitable[str]]
Embed = Callable[[list[str]], Awaitable[list[list[float]]]]

# promptfoo's defaults; `python` has none: a returned number passes when above 0.
DEFAULT_THRESHOLDS = {
    "levenshtein": 5.0,  # the most edits allowed
    "rouge-n": 0.75,
    "bleu": 0.5,
    "similar": 0.75,
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
    tools: list[dict[str, Any]] | None = None  # the tools the suite offers (options.tools)
    finish_reason: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    # A judge or embedder by model alias, for an assertion's `provider`.
    judge_with: Callable[[str], Judge] | None = None
    embed_with: Callable[[str], Embed] | None = None

    def with_output(self, output: str) -> EvalContext:
        return dataclasses.replace(self, output=output)

    def judge_for(self, alias: str | None) -> Judge | None:
        if alias is not None and self.judge_with is not None:
            return self.judge_with(alias)
        return self.judge

    def embed_for(self, alias: str | None) -> Embed | None:
        if alias is not None and self.embed_with is not None:
            return self.embed_with(alias)
        return self.embed

    def script_context(self, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """What user Python (checks and transforms) gets as `context`, as in promptfoo."""
        return {
            "vars": self.vars,
            "test": {
                "vars": self.vars,
                "metadata": self.metadata,
                "description": self.description,
            },
            "latency_ms": self.latency_ms,
            "cost_usd": self.cost_usd,
            "cached": self.cached,
            "tool_calls": self.tool_calls,
            "finish_reason": self.finish_reason,
            "config": config or {},
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """A check's answer for the positive form of its assertion."""

    passed: bool
    expectation: str  # completes "expected output ...", starting with "to"
    finding: str = ""  # what was observed, when it explains the verdict
    score: float | None = None  # None: 1.0 or 0.0 by the final pass
    invert_score: bool = True  # `not-` turns score into 1 - score (not for python's own score)


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
