"""Classic models served by other servers: a remote Open Inference Protocol server (a loopback
fake, and a second gateway serving a registry model) and an MLflow scoring server, proxied
with the router's retries, timeouts, cooldowns and fallbacks, under the gateway's keys and
log."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.classic.example import TrainedExample
from tests.conftest import MASTER_KEY, GatewayFactory
from tests.fakes.v2_server import FakeV2Server, running_v2_server
from tests.test_classic_serving import (
    ADMIN,
    IRIS,
    example,
    infer,
    infer_body,
    label,
    ready,
    register,
    until,
    version_body,
)

__all__ = ["example"]  # the trained model fixture, shared with test_classic_serving
PAIRS = {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1.0, 2.0], [3.0, 4.0]]}


@pytest.fixture(scope="module")
def remote() -> Iterator[FakeV2Server]:
    with running_v2_server() as fake:
        yield fake


def v2_model(alias: str, remote: FakeV2Server, name: str, **params: Any) -> dict[str, Any]:
    return {
        "model_name": alias,
        "litellm_params": {"model": f"v2/{name}", "api_base": remote.url, **params},
        "model_info": {"cost_per_1k_predictions": 1.0},
    }


def test_a_remote_v2_model_answers_through_the_gateway(
    gateway: GatewayFactory, remote: FakeV2Server, tmp_path: Path
) -> None:
    base = gateway({"model_list": [v2_model("doubler", remote, "doubler,id=plain")]})
    answer = infer(base, {"id": "r1", "inputs": [PAIRS]}, "doubler")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "model_name": "doubler",
        "model_version": "7",
        "id": "r1",
        "outputs": [
            {"name": "x_doubled", "datatype": "FP32", "shape": [2, 2], "data": [2.0, 4.0, 6.0, 8.0]}
        ],
    }
    assert answer.headers["x-gateway-model-version"] == "doubler,id=plain@7"
    assert float(answer.headers["x-gateway-cost-usd"]) == pytest.approx(0.002)
    assert remote.last("doubler,id=plain")["inputs"][0]["data"] == [1.0, 2.0, 3.0, 4.0]
    versioned = infer(base, {"inputs": [PAIRS]}, "doubler/versions/3")
    assert versioned.json()["model_version"] == "3"  # the path's version reaches the server
    metadata = httpx.get(f"{base}/v2/models/doubler", headers=ADMIN).json()
    assert (metadata["name"], metadata["platform"]) == ("doubler", "fake_v2")
    assert ready(base, "doubler").json() == {"name": "doubler", "ready": True, "reason": None}
    database = tmp_path / ".gateway" / "gateway.db"

    def logged() -> list[tuple[Any, ...]]:
        with sqlite3.connect(database) as connection:
            query = "SELECT route, provider, predictions FROM request_log WHERE status = 200"
            return connection.execute(query).fetchall()

    until(lambda: len(logged()) == 2)
    assert logged() == [("infer", "v2", 2), ("infer", "v2", 2)]


def test_binary_requests_reach_a_remote_server_as_json(
    gateway: GatewayFactory, remote: FakeV2Server
) -> None:
    import numpy as np
    import tritonclient.http as triton

    base = gateway({"model_list": [v2_model("doubler", remote, "doubler,id=binary")]})
    client = triton.InferenceServerClient(base.removeprefix("http://"))
    tensor = triton.InferInput("x", [2, 2], "FP32")
    tensor.set_data_from_numpy(np.array([[1, 2], [3, 4]], dtype=np.float32))
    result = client.infer("doubler", [tensor], headers=dict(ADMIN))  # binary both ways
    assert result.as_numpy("x_doubled").tolist() == [[2, 4], [6, 8]]
    sent = remote.last("doubler,id=binary")
    assert sent["inputs"][0]["data"] == [1.0, 2.0, 3.0, 4.0]
    assert "parameters" not in sent  # binary_data_output is the gateway's business


def test_retries_fallbacks_timeouts_and_cooldowns(
    gateway: GatewayFactory, remote: FakeV2Server
) -> None:
    models = [
        v2_model("flaky", remote, "flaky,fail_first=1,id=retry"),
        v2_model("down", remote, "down,status=500,id=fallback"),
        v2_model("backup", remote, "doubler,id=backup"),
        v2_model("stuck", remote, "stuck,hang", timeout=0.3),
        v2_model("busy", remote, "busy,status=503,id=cooldown"),
    ]
    router = {
        "num_retries": 1,
        "retry_after": 0,
        "max_retry_wait": 0.05,
        "allowed_fails": 2,
        "cooldown_time": 60,
        "fallbacks": [{"down": ["backup"]}],
    }
    base = gateway({"model_list": models, "router_settings": router})
    body = {"inputs": [PAIRS]}
    assert infer(base, body, "flaky").status_code == 200
    assert remote.calls("flaky,fail_first=1,id=retry") == 2  # retried

    fell_back = infer(base, body, "down")
    assert fell_back.status_code == 200
    assert fell_back.headers["x-gateway-model"] == "backup#2"

    timed_out = infer(base, body, "stuck")
    assert timed_out.status_code == 504
    assert timed_out.json() == {"error": "the upstream of model 'stuck' did not answer in time"}

    for _ in range(2):  # two failed attempts: it cools down
        assert infer(base, body, "busy").status_code == 503
    calls = remote.calls("busy,status=503,id=cooldown")
    cooling = infer(base, body, "busy")
    assert cooling.status_code == 503
    assert "cooling down" in cooling.json()["error"]
    assert remote.calls("busy,status=503,id=cooldown") == calls  # not asked while it cools


def test_a_remote_refusal_of_the_input_is_a_400_with_its_words(
    gateway: GatewayFactory, remote: FakeV2Server
) -> None:
    base = gateway({"model_list": [v2_model("doubler", remote, "doubler,id=refuse")]})
    flags = {"name": "x", "datatype": "BOOL", "shape": [1], "data": [True]}
    refused = infer(base, {"inputs": [flags]}, "doubler")
    assert refused.status_code == 400
    assert "cannot double BOOL" in refused.json()["error"]


def test_an_mlflow_endpoint_takes_a_dataframe_split(
    gateway: GatewayFactory, remote: FakeV2Server
) -> None:
    model = {
        "model_name": "churn",
        "litellm_params": {"model": "mlflow/churn", "api_base": remote.url},
    }
    base = gateway({"model_list": [model]})
    columns = [
        {"name": "tenure", "datatype": "INT64", "shape": [2], "data": [3, 10]},
        {"name": "spend", "datatype": "FP64", "shape": [2], "data": [1.5, 2.5]},
    ]
    answer = infer(base, {"inputs": columns}, "churn")
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"] == [
        {"name": "predictions", "datatype": "FP64", "shape": [2], "data": [4.5, 12.5]}
    ]
    assert remote.last("mlflow") == {
        "dataframe_split": {"columns": ["tenure", "spend"], "data": [[3, 1.5], [10, 2.5]]}
    }
    assert infer(base, {"inputs": [PAIRS]}, "churn").json()["outputs"][0]["data"] == [3.0, 7.0]
    assert ready(base, "churn").status_code == 200


def test_another_gateway_serving_a_registry_model_as_the_remote(
    gateway: GatewayFactory, example: TrainedExample
) -> None:
    serving = gateway({"model_list": [IRIS]})
    label(serving, register(serving, version_body(example)))
    until(lambda: ready(serving).status_code == 200)
    front = {
        "model_name": "flowers",
        "litellm_params": {"model": "v2/iris", "api_base": serving, "api_key": MASTER_KEY},
    }
    base = gateway({"model_list": [front]})
    answer = infer(base, infer_body(id="through-two"), "flowers")
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert (found["model_name"], found["model_version"], found["id"]) == (
        "flowers",
        "1",
        "through-two",
    )
    assert found["outputs"][0]["data"] == [1, 1]
    metadata = httpx.get(f"{base}/v2/models/flowers", headers=ADMIN).json()
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}]
    wrong = infer(base, infer_body([[1.0, 2.0]]), "flowers")
    assert wrong.status_code == 400  # the serving gateway's words, passed on
    assert "expected shape [-1, 4]" in wrong.json()["error"]
