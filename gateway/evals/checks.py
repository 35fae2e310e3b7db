"""The deterministic checks on text, one per assertion type, each as promptfoo defines it:
comparisons are exact (no trimming), values are compared as JavaScript writes them.

A check answers for the positive form of its assertion (`evaluate` applies `not-`) and raises
`CannotJudge` when the answer lacks what it needs: that case is an ERROR, never a FAIL.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from gateway.evals.js_regex import compile_js
from gateway.evals.jsvalues import js_string
from gateway.evals.structured import STRUCTURED_CHECKS, parse_json_value
from gateway.evals.text_metrics import bleu, grapheme_levenshtein, rouge_n, whitespace_words
from gateway.evals.verdicts import (
    DEFAULT_THRESHOLDS,
    CannotJudge,
    Check,
    Embed,
    EvalContext,
    Judge,
    Outcome,
    Verdict,
    shorten,
    threshold_of,
)

if TYPE_CHECKING:
    from gateway.evals.assertions import AssertionSpec

__all__ = [
    "DEFAULT_THRESHOLDS",
    "DETERMINISTIC_CHECKS",
    "CannotJudge",
    "Check",
    "Embed",
    "EvalContext",
    "Judge",
    "Outcome",
    "Verdict",
    "shorten",
    "threshold_of",
]

# Edit distance is quadratic: past about a million cells (~20 ms) it leaves the event loop.
_EVENT_LOOP_CELLS = 1_000_000


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


async def check_equals(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    expectation = f"to equal {shorten(spec.value)}"
    if isinstance(spec.value, dict | list) or spec.value is None:
        # An object or list is compared with the output read as JSON, as promptfoo does.
        try:
            parsed = parse_json_value(ctx.output)
        except ValueError as exc:
            return Verdict(False, expectation, str(exc))
        return Verdict(_json_equal(parsed, spec.value), expectation)
    # Text, numbers and booleans: the output must be exactly that text (`1.0` is "1").
    return Verdict(ctx.output == js_string(spec.value), expectation)


async def check_contains(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    return Verdict(spec.value in ctx.output, f"to contain {shorten(spec.value)}")


async def check_icontains(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    found = spec.value.casefold() in ctx.output.casefold()
    return Verdict(found, f"to contain {shorten(spec.value)} (ignoring case)")


def _any(spec: AssertionSpec, ctx: EvalContext, fold: bool) -> Verdict:
    output = ctx.output.casefold() if fold else ctx.output
    found = [item for item in spec.value if (item.casefold() if fold else item) in output]
    finding = f"found {shorten(found[0])}" if found else "found none"
    ignoring = " (ignoring case)" if fold else ""
    return Verdict(bool(found), f"to contain any of {shorten(spec.value)}{ignoring}", finding)


def _all(spec: AssertionSpec, ctx: EvalContext, fold: bool) -> Verdict:
    output = ctx.output.casefold() if fold else ctx.output
    missing = [item for item in spec.value if (item.casefold() if fold else item) not in output]
    finding = f"missing {shorten(missing)}" if missing else "found all"
    ignoring = " (ignoring case)" if fold else ""
    return Verdict(not missing, f"to contain all of {shorten(spec.value)}{ignoring}", finding)


async def check_contains_any(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    return _any(spec, ctx, fold=False)


async def check_icontains_any(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    return _any(spec, ctx, fold=True)


async def check_contains_all(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    return _all(spec, ctx, fold=False)


async def check_icontains_all(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    return _all(spec, ctx, fold=True)


async def check_starts_with(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    return Verdict(ctx.output.startswith(spec.value), f"to start with {shorten(spec.value)}")


async def check_regex(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    found = compile_js(spec.value).search(ctx.output)
    return Verdict(found, f"to match /{spec.value}/")


async def check_word_count(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    count = len(whitespace_words(ctx.output))
    finding = f"{count} words"
    if isinstance(spec.value, dict):
        low, high = spec.value.get("min"), spec.value.get("max")
        passed = (low is None or count >= low) and (high is None or count <= high)
        bounds = [
            f"at least {low:g}" if low is not None else "",
            f"at most {high:g}" if high is not None else "",
        ]
        shown = " and ".join(bound for bound in bounds if bound)
        return Verdict(passed, f"to have {shown} words", finding)
    return Verdict(count == spec.value, f"to have {spec.value:g} words", finding)


async def check_finish_reason(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    if ctx.finish_reason is None:
        raise CannotJudge(
            "the answer has no finish reason (an answer cached by an older gateway? rerun with "
            "--no-cache)"
        )
    return Verdict(
        ctx.finish_reason.lower() == spec.value.lower(),
        f"to finish with {spec.value!r}",
        f"finished with {ctx.finish_reason!r}",
    )


async def check_levenshtein(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    limit = threshold_of(spec)
    if len(ctx.output) * len(spec.value) > _EVENT_LOOP_CELLS:
        distance = await asyncio.to_thread(grapheme_levenshtein, ctx.output, spec.value)
    else:
        distance = grapheme_levenshtein(ctx.output, spec.value)
    # Pass or fail, scored 1 or 0, as promptfoo scores it.
    return Verdict(
        distance <= limit,
        f"to be within {limit:g} edits of {shorten(spec.value)}",
        f"distance {distance}",
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


async def check_bleu(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    references = spec.value if isinstance(spec.value, list) else [spec.value]
    limit = threshold_of(spec)
    score = bleu(ctx.output, references)
    return Verdict(
        score >= limit,
        f"to reach BLEU {limit:g} against {shorten(spec.value)}",
        f"BLEU {score:.4f}",
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


DETERMINISTIC_CHECKS: dict[str, Check] = {
    "equals": check_equals,
    "contains": check_contains,
    "icontains": check_icontains,
    "contains-any": check_contains_any,
    "contains-all": check_contains_all,
    "icontains-any": check_icontains_any,
    "icontains-all": check_icontains_all,
    "starts-with": check_starts_with,
    "regex": check_regex,
    "word-count": check_word_count,
    "finish-reason": check_finish_reason,
    "levenshtein": check_levenshtein,
    "rouge-n": check_rouge_n,
    "bleu": check_bleu,
    "cost": check_cost,
    "latency": check_latency,
    **STRUCTURED_CHECKS,
}
