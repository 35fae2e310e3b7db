"""Per-feature expectations of classic versions, served: values outside the training data's
range (or categories, or null rate) are counted per feature in the request log and the
metrics, and refused with a 400 naming the feature where the version enforces them."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.classic.example import TrainedExample, train_example
from gateway.classic.expectations import CompiledExpectations, Expectations, Violation
from gateway.classic.signature import Signature
from gateway.classic.tensors import decode_request
from gateway.core.errors import BadRequest
from tests.conftest import GatewayFactory
from tests.test_classic_serving import (
    ADMIN,
    IRIS,
    infer,
    infer_body,
    label,
    ready,
    register,
    rows_of,
    until,
    version_body,
)

PETAL = "petal length (cm)"
SEPAL = "sepal length (cm)"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> TrainedExample:
    return train_example("iris", tmp_path_factory.mktemp("example"))


def expectations(trained: TrainedExample, **changes: Any) -> dict[str, Any]:
    found: dict[str, Any] = trained.expectations.model_dump(exclude_none=True)
    for feature, change in changes.items():
        found["features"][feature].update(change)
    return found


def test_breaking_values_are_counted_per_feature_and_served(
    gateway: GatewayFactory, example: TrainedExample, tmp_path: Path
) -> None:
    base = gateway({"model_list": [IRIS]})
    body = version_body(example, expectations=expectations(example))
    label(base, register(base, body))
    until(lambda: ready(base).status_code == 200)
    shown = httpx.get(f"{base}/v1/registry/models/iris/versions/1", headers=ADMIN).json()
    petal = shown["expectations"]["features"][PETAL]
    assert (petal["min"], petal["max"]) == (
        example.feature_stats["features"][PETAL]["min"],
        example.feature_stats["features"][PETAL]["max"],
    )
    answered = infer(base, infer_body([[6.8, 2.8, 42.0, 1.4], [60.0, 3.4, 4.5, 1.6]]))
    assert answered.status_code == 200, answered.text
    request_id = answered.headers["x-gateway-request-id"]
    assert infer(base, infer_body()).status_code == 200  # in range: nothing counted
    database = tmp_path / ".gateway" / "gateway.db"
    query = "SELECT feature_violations FROM request_log WHERE route = 'infer' ORDER BY created_at"
    until(lambda: len(rows_of(database, query)) == 2)
    assert [row[0] for row in rows_of(database, query)] == [
        orjson.dumps({SEPAL: 1, PETAL: 1}).decode(),
        None,
    ]
    logged = httpx.get(f"{base}/v1/logs/{request_id}", headers=ADMIN).json()
    assert logged["feature_violations"] == {SEPAL: 1, PETAL: 1}
    metrics = httpx.get(f"{base}/metrics").text
    assert f'gateway_feature_violations_total{{feature="{PETAL}",model="iris"}} 1.0' in metrics
    assert f'gateway_feature_violations_total{{feature="{SEPAL}",model="iris"}} 1.0' in metrics


def binary_call(base: str, rows: list[list[float]], version: int) -> httpx.Response:
    """One FP32 input in Triton's binary tensor extension (which can carry NaN)."""
    raw = struct.pack(f"<{4 * len(rows)}f", *(v for row in rows for v in row))
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [len(rows), 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "predict", "parameters": {"binary_data": False}}],
        }
    )
    return httpx.post(
        f"{base}/v2/models/iris/versions/{version}/infer",
        content=head + raw,
        headers={**ADMIN, "Inference-Header-Content-Length": str(len(head))},
    )


def test_a_version_that_enforces_them_refuses_the_call_naming_the_feature(
    gateway: GatewayFactory, example: TrainedExample, tmp_path: Path
) -> None:
    base = gateway({"model_list": [IRIS]})
    label(base, register(base, version_body(example)))  # @1: none recorded, nothing checked
    enforced = expectations(example, **{PETAL: {"enforce": True}})
    assert register(base, version_body(example, expectations=enforced)) == 2
    until(lambda: ready(base, "iris/versions/2").status_code == 200)
    until(lambda: ready(base).status_code == 200)
    out_of_range = infer_body([[6.8, 2.8, 42.0, 1.4]])

    refused = infer(base, out_of_range, path="iris/versions/2")
    assert refused.status_code == 400
    high = example.feature_stats["features"][PETAL]["max"]
    low = example.feature_stats["features"][PETAL]["min"]
    assert refused.json() == {
        "error": f"input 'input-0': feature '{PETAL}': 42.0 is outside the training range "
        f"[{low:g}, {high:g}] (1 value breaks the expectations iris@2 was registered with, "
        f"which it enforces)"
    }
    assert infer(base, out_of_range).status_code == 200  # @1 (production) records none
    sepal_only = infer(base, infer_body([[60.0, 2.8, 4.8, 1.4]]), path="iris/versions/2")
    assert sepal_only.status_code == 200  # counted, not enforced for that feature
    # FP32 rounds the training maximum up or down: the bound itself is always allowed.
    assert binary_call(base, [[5.0, 3.0, high, 1.0]], 2).status_code == 200
    null = binary_call(base, [[5.0, 3.0, float("nan"), 1.0]], 2)
    assert null.status_code == 400
    assert null.json()["error"].startswith(
        f"input 'input-0': feature '{PETAL}': 1 of 1 values are null, more than the 0.0% allowed"
    )

    database = tmp_path / ".gateway" / "gateway.db"
    query = (
        "SELECT model_version, status, feature_violations FROM request_log "
        "WHERE route = 'infer' ORDER BY created_at"
    )
    until(lambda: len(rows_of(database, query)) == 5)
    assert rows_of(database, query) == [
        ("iris@2", 400, orjson.dumps({PETAL: 1}).decode()),
        ("iris@1", 200, None),
        ("iris@2", 200, orjson.dumps({SEPAL: 1}).decode()),
        ("iris@2", 200, None),
        ("iris@2", 400, orjson.dumps({PETAL: 1}).decode()),
    ]


def test_registering_refuses_expectations_of_features_the_model_does_not_take(
    gateway: GatewayFactory, example: TrainedExample
) -> None:
    base = gateway({"model_list": [IRIS]})
    wrong = {"features": {"petal width": {"min": 0}}}
    found = httpx.post(
        f"{base}/v1/registry/models/iris/versions",
        json=version_body(example, expectations=wrong),
        headers=ADMIN,
    )
    assert found.status_code == 400
    message = found.json()["error"]["message"]
    assert "expectations.features: 'petal width' is not a feature of the signature" in message
    assert PETAL in message
    backwards = {"features": {PETAL: {"min": 5, "max": 1}}}
    found = httpx.post(
        f"{base}/v1/registry/models/iris/versions",
        json=version_body(example, expectations=backwards),
        headers=ADMIN,
    )
    assert found.status_code == 400
    assert "min 5 is above max 1" in found.json()["error"]["message"]


def test_categories_and_whole_inputs_are_checked_too() -> None:
    signature = Signature.model_validate(
        {
            "inputs": [
                {"name": "colour", "datatype": "BYTES", "shape": [-1]},
                {"name": "size", "datatype": "INT64", "shape": [-1]},
            ],
            "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}],
        }
    )
    expected = Expectations.model_validate(
        {
            "enforce": True,
            "features": {"colour": {"categories": ["red", "green"]}, "size": {"min": 1, "max": 3}},
        }
    )
    checks = CompiledExpectations.build(expected, signature, "shirts@4")
    request = decode_request(
        {
            "inputs": [
                {"name": "colour", "datatype": "BYTES", "shape": [3], "data": ["red", "blue", "?"]},
                {"name": "size", "datatype": "INT64", "shape": [3], "data": [1, 2, 3]},
            ]
        }
    )
    found = checks.count(request)
    assert found == {"colour": Violation(2, "'blue' is not an allowed category ('green', 'red')")}
    assert found is not None
    with pytest.raises(BadRequest) as refused:
        checks.enforce(found)
    assert "feature 'colour': 'blue' is not an allowed category" in refused.value.message
    assert "(2 values break the expectations shirts@4" in refused.value.message
