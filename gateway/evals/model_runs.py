"""Running a model test: the version predicts every row of the data file through the
gateway's `/v2/models/{alias}/versions/{N}/infer` (the path production calls take: its
artifact after the sha256 check, its signature and expectations, its runtime; priced and
logged like any call), then its metrics are computed and judged.

Why over /v2 and not by loading the artifact here: "the version" is what the gateway serves
under that number, and a test of anything else (another load of the file, another dtype
conversion) would not be a test of it. A version still loading answers 503 with
retry-after; the run waits for it, up to LOAD_WAIT_S.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.evals.model_metrics import MetricProblem, Predicted, classification, regression
from gateway.evals.model_tests import METRICS, MetricSpec, ModelTest
from gateway.evals.runner import GatewayClient, TargetError
from gateway.evals.suite import Target

LOAD_WAIT_S = 120.0


@dataclass(slots=True)
class Scored:
    """One version's metrics on the data."""

    target: str
    version: str  # registry:NAME@N
    values: dict[str, float]
    rows: int
    cost_usd: float
    latency_ms: float
    started_at: str
    finished_at: str


@dataclass(slots=True)
class MetricCheck:
    name: str
    value: float
    spec: MetricSpec
    baseline: float | None = None
    regression: float | None = None  # how much worse than the baseline (negative: better)
    reasons: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.reasons

    def threshold(self) -> str:
        parts = []
        if self.spec.min is not None:
            parts.append(f">= {self.spec.min:g}")
        if self.spec.max is not None:
            parts.append(f"<= {self.spec.max:g}")
        if self.spec.max_regression is not None:
            parts.append(f"regression <= {self.spec.max_regression:g}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.name,
            "value": round(self.value, 6),
            "min": self.spec.min,
            "max": self.spec.max,
            "max_regression": self.spec.max_regression,
            "baseline": None if self.baseline is None else round(self.baseline, 6),
            "regression": None if self.regression is None else round(self.regression, 6),
            "passed": self.passed,
            "reasons": self.reasons,
        }


# --- predicting ------------------------------------------------------------------------------


def _values(column: list[Any], datatype: str, name: str) -> list[Any]:
    """A column's values as the input's datatype travels in JSON."""
    if datatype == "BYTES":
        return [str(v) for v in column]
    convert: Any
    if datatype == "BOOL":
        kind, convert = "true or false", _boolean
    elif datatype.startswith("FP"):
        kind, convert = "a number", float
    else:
        kind, convert = "an integer", _integer
    converted = []
    for value in column:
        try:
            converted.append(convert(value))
        except (TypeError, ValueError):
            raise TargetError(
                f"feature column {name!r} holds {value!r}, not {kind} (the version takes "
                f"{datatype})"
            ) from None
    return converted


def _integer(value: Any) -> int:
    if isinstance(value, str) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    return int(value)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise ValueError(value)


def _tensors(test: ModelTest, signature: dict[str, Any], features: list[str]) -> list[Any]:
    """The request's inputs for all rows, before they are cut into batches: (name, datatype,
    rows of values or a column of values)."""
    frame = test.frame
    empty = [f for f in features if frame[f].isna().any()]
    if empty:
        raise TargetError(
            f"{test.path}: feature column {empty[0]!r} has empty values, which JSON tensors "
            f"cannot carry: fill or drop those rows"
        )
    inputs = signature["inputs"]
    if len(inputs) == 1 and len(inputs[0]["shape"]) == 2:
        spec = inputs[0]
        width = spec["shape"][1]
        if width not in (-1, len(features)):
            raise TargetError(
                f"the version takes {width} features in {spec['name']!r}; the suite gives "
                f"{len(features)} ({', '.join(features)})"
            )
        columns = [_values(frame[f].tolist(), spec["datatype"], f) for f in features]
        rows = [list(row) for row in zip(*columns, strict=True)]
        return [(spec["name"], spec["datatype"], rows, True)]
    by_name = {spec["name"]: spec for spec in inputs}
    missing = [name for name in by_name if name not in features]
    if missing:
        raise TargetError(
            f"the version takes inputs {', '.join(map(repr, by_name))}; data.features must "
            f"name a column for each (no {missing[0]!r})"
        )
    return [
        (name, spec["datatype"], _values(frame[name].tolist(), spec["datatype"], name), False)
        for name, spec in by_name.items()
    ]


def _body(inputs: list[Any], start: int, end: int, outputs: list[str]) -> dict[str, Any]:
    tensors = []
    for name, datatype, values, matrix in inputs:
        part = values[start:end]
        shape = [len(part), len(part[0])] if matrix else [len(part)]
        tensors.append({"name": name, "datatype": datatype, "shape": shape, "data": part})
    return {"inputs": tensors, "outputs": [{"name": o} for o in outputs]}


async def _infer(client: GatewayClient, path: str, body: dict[str, Any], what: str) -> Any:
    deadline = time.monotonic() + LOAD_WAIT_S
    while True:
        try:
            response = await client.http.post(path, json=body, headers=client.headers, timeout=300)
        except Exception as exc:  # httpx's transport errors
            raise TargetError(f"gateway unreachable: {exc}") from None
        if response.status_code == 503 and time.monotonic() < deadline:
            wait = response.headers.get("retry-after")
            if wait is not None:  # loading: it will be ready
                await asyncio.sleep(min(float(wait), 1.0))
                continue
        if response.status_code != 200:
            try:
                said = response.json()["error"]
                said = said["message"] if isinstance(said, dict) else said
            except (ValueError, KeyError, TypeError):
                said = response.text[:200]
            raise TargetError(f"{what}: {response.status_code}: {said}")
        return response


def _output(answer: dict[str, Any], name: str) -> tuple[list[Any], list[int]]:
    for output in answer.get("outputs", []):
        if output.get("name") == name:
            return output["data"], output["shape"]
    raise TargetError(f"the answer has no output {name!r}")


async def predict(
    test: ModelTest, client: GatewayClient, target: Target
) -> tuple[str, Predicted, float, float]:
    """Every row's prediction: (version, predictions, cost, seconds predicting)."""
    resolved = await client.resolve(target, classic=True)
    name, _, number = resolved.version.removeprefix("registry:").partition("@")
    found = await client.registry_version(target, name, number)
    if not found.get("signature"):
        raise TargetError(
            f"{resolved.version} records no signature: a model test needs to know the "
            f"tensors it takes (register it with --artifact, which reads them)"
        )
    signature = found["signature"]
    data = test.data
    features = data.features or signature.get("features")
    if not features:
        raise TargetError(
            f"{resolved.version}: its signature names no features: list the data file's "
            f"feature columns, in the model's order, in data.features"
        )
    missing = [f for f in features if f not in test.frame.columns]
    if missing:
        raise TargetError(
            f"{test.path}: no feature column {missing[0]!r}, which {resolved.version} takes "
            f"(columns: {', '.join(test.frame.columns)})"
        )
    gives = [o["name"] for o in signature["outputs"]]
    if data.prediction_output not in gives:
        raise TargetError(
            f"{resolved.version} gives no output {data.prediction_output!r} (outputs: "
            f"{', '.join(gives)}): set data.prediction_output"
        )
    outputs = [data.prediction_output]
    if data.probability_output in gives and test.task == "classification":
        outputs.append(data.probability_output)
    inputs = _tensors(test, signature, features)
    path = f"/v2/models/{resolved.model}/versions/{number}/infer"
    labels: list[Any] = []
    probabilities: list[list[float]] | None = [] if len(outputs) > 1 else None
    cost = seconds = 0.0
    for start in range(0, test.rows, data.batch_size):
        end = min(start + data.batch_size, test.rows)
        began = time.perf_counter()
        response = await _infer(
            client,
            path,
            _body(inputs, start, end, outputs),
            f"{resolved.version} on rows {start + 1}-{end} of {test.path.name}",
        )
        seconds += time.perf_counter() - began
        cost += float(response.headers.get("x-gateway-cost-usd", "0"))
        answer = response.json()
        labels += _output(answer, data.prediction_output)[0]
        if probabilities is not None:
            values, shape = _output(answer, data.probability_output)
            width = shape[1] if len(shape) == 2 else 1
            probabilities += [values[i : i + width] for i in range(0, len(values), width)]
    if len(labels) != test.rows:
        raise TargetError(
            f"{resolved.version} gave {len(labels)} predictions for {test.rows} rows "
            f"(output {data.prediction_output!r} must have one per row)"
        )
    return resolved.version, Predicted(labels, probabilities), cost, seconds


async def score(test: ModelTest, client: GatewayClient, target: Target) -> Scored:
    started = datetime.now(UTC).isoformat()
    version, predicted, cost, seconds = await predict(test, client, target)
    data, frame = test.data, test.frame
    truth = [v.item() if hasattr(v, "item") else v for v in frame[data.label].tolist()]
    try:
        if test.task == "regression":
            values = regression(list(test.metrics), truth, predicted)
        else:
            groups = None
            if data.sensitive is not None:
                groups = [str(g) for g in frame[data.sensitive].fillna("(empty)").tolist()]
            values = classification(
                list(test.metrics), truth, predicted, data.positive_class, groups
            )
    except MetricProblem as exc:
        raise TargetError(f"{version}: {exc}") from None
    return Scored(
        str(target),
        version,
        values,
        test.rows,
        cost,
        seconds * 1000,
        started,
        datetime.now(UTC).isoformat(),
    )


# --- judging ---------------------------------------------------------------------------------


def judge(test: ModelTest, candidate: Scored, baseline: Scored | None) -> list[MetricCheck]:
    checks = []
    for name, spec in test.metrics.items():
        value = candidate.values[name]
        check = MetricCheck(name, value, spec)
        if spec.min is not None and value < spec.min:
            check.reasons.append(f"{name} {value:.4f} is below the minimum {spec.min:g}")
        if spec.max is not None and value > spec.max:
            check.reasons.append(f"{name} {value:.4f} is above the maximum {spec.max:g}")
        if baseline is not None:
            before = baseline.values[name]
            check.baseline = before
            worse = before - value if METRICS[name] == "higher" else value - before
            check.regression = worse
            allowed = spec.max_regression
            if allowed is not None and worse > allowed + 1e-12:
                check.reasons.append(
                    f"{name} {value:.4f} is {worse:.4f} worse than the baseline's {before:.4f} "
                    f"({baseline.version}; allowed: {allowed:g})"
                )
        checks.append(check)
    return checks
