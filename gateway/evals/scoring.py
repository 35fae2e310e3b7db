"""A case's verdict from its assertions, as promptfoo reaches it.

The case's score is the weighted mean of its assertions' scores (0 when every weight is 0).
Without a case `threshold` the case passes when every assertion passes (a zero-weight one
always does); with one, when the score reaches it, whatever single assertions did. An
`assert-set` is judged the same way over its own assertions (its `threshold` is the share of
its weighted score to reach) and then counts as one assertion of the case. Any assertion that
could not be judged makes the case an ERROR. `metric` names a score: the mean of the scores of
the assertions carrying it, weighted by their weights.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.evals.assertions import SET, AssertionSpec, evaluate
from gateway.evals.verdicts import EvalContext, Outcome

Status = Literal["PASS", "FAIL", "ERROR"]


@dataclass(slots=True)
class Judged:
    status: Status
    score: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    named_scores: dict[str, float] = field(default_factory=dict)


class _Metrics:
    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])

    def add(self, name: str | None, score: float, weight: float) -> None:
        if name:
            sums = self.sums[name]
            sums[0] += score * weight
            sums[1] += weight
            sums[2] += score
            sums[3] += 1

    def means(self) -> dict[str, float]:
        # A metric of zero-weight assertions only (a measurement) is their plain mean.
        return {
            name: (weighted / weights if weights else plain / count)
            for name, (weighted, weights, plain, count) in self.sums.items()
        }


def _row(spec: AssertionSpec, outcome: Outcome, in_set: str | None = None) -> dict[str, Any]:
    row = {
        "type": spec.type,
        "metric": spec.metric,
        "weight": spec.weight,
        "passed": outcome.passed,
        "score": outcome.score,
        "reason": outcome.reason,
        "error": outcome.error,
        "skipped": outcome.skipped,
    }
    if in_set is not None:
        row["set"] = in_set
    return row


def _combine(
    weighted: list[tuple[float, Outcome]], threshold: float | None
) -> tuple[bool, float, bool]:
    """(passed, score, error) of assertions taken together."""
    total = sum(weight for weight, _ in weighted)
    score = sum(weight * o.score for weight, o in weighted) / total if total else 0.0
    error = any(o.error for _, o in weighted)
    if threshold is not None:
        return score >= threshold, score, error
    return all(o.passed for _, o in weighted), score, error


async def judge_case(
    asserts: list[AssertionSpec], ctx: EvalContext, threshold: float | None
) -> Judged:
    metrics = _Metrics()
    rows: list[dict[str, Any]] = []
    results: list[tuple[float, Outcome]] = []
    for index, spec in enumerate(asserts):
        if spec.base_type == SET:
            outcome = await _judge_set(spec, ctx, index, rows, metrics)
        else:
            outcome = await evaluate(spec, ctx)
            rows.append(_row(spec, outcome))
        metrics.add(spec.metric, outcome.score, spec.weight)
        results.append((spec.weight, outcome))
    passed, score, error = _combine(results, threshold)
    status: Status = "ERROR" if error else ("PASS" if passed else "FAIL")
    return Judged(status, score, rows, metrics.means())


async def _judge_set(
    spec: AssertionSpec,
    ctx: EvalContext,
    index: int,
    rows: list[dict[str, Any]],
    metrics: _Metrics,
) -> Outcome:
    label = f"assert[{index}]"
    children: list[tuple[float, Outcome]] = []
    for child in spec.asserts or []:
        outcome = await evaluate(child, ctx)
        rows.append(_row(child, outcome, in_set=label))
        metrics.add(child.metric, outcome.score, child.weight)
        children.append((child.weight, outcome))
    passed, score, error = _combine(children, spec.threshold)
    failed = sum(1 for _, o in children if not o.passed)
    need = f"score {score:.2f}" + (f", threshold {spec.threshold:g}" if spec.threshold else "")
    reason = f"assert-set: {len(children) - failed}/{len(children)} passed ({need})"
    outcome = Outcome(passed, score, reason, error=error)
    rows.append(_row(spec, outcome))
    return outcome
