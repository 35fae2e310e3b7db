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


def test_retry_policy_and_allowed_fails_policy_name_remote_failures_by_kind(
    gateway: GatewayFactory, remote: FakeV2Server
) -> None:
    # A remote server's 503 is LiteLLM's ServiceUnavailableError, its 500 an
    # InternalServerError: the router's per-kind settings act on them as on an LLM's.
    models = [
        v2_model("flaky", remote, "flaky,fail_first=2,status=503,id=policy"),
        v2_model("broken", remote, "broken,status=500,id=policy"),
    ]
    router = {
        "num_retries": 0,
        "retry_after": 0,
        "max_retry_wait": 0.05,
        "retry_policy": {"ServiceUnavailableErrorRetries": 2},
        "allowed_fails": 0,  # cool down at the first failure...
        "allowed_fails_policy": {"ServiceUnavailableErrorAllowedFails": 5},  # ...but a 503's
        "cooldown_time": 60,
    }
    base = gateway({"model_list": models, "router_settings": router})
    body = {"inputs": [PAIRS]}
    assert infer(base, body, "flaky").status_code == 200
    assert remote.calls("flaky,fail_first=2,status=503,id=policy") == 3  # 2 retries, no cooldown
    assert infer(base, body, "broken").status_code == 502
    assert remote.calls("broken,status=500,id=policy") == 1  # num_retries: 0
    cooling = infer(base, body, "broken")
    assert "cooling down" in cooling.json()["error"]
    assert remote.calls("broken,status=500,id=policy") == 1


def test_llm_listings_wildcards_and_aliases_leave_classic_models_apart(
    gateway: GatewayFactory, remote: FakeV2Server
) -> None:
    from gateway.core.config import GatewayConfig
    from gateway.prompts.served import ServedModels

    config = {
        "model_list": [
            v2_model("doubler", remote, "doubler,id=apart"),
            {"model_name": "*", "litellm_params": {"model": "openai/*", "api_key": "sk-x"}},
        ],
        "router_settings": {"model_group_alias": {"twice": "doubler"}},
    }
    base = gateway(config)
    listed = [m["id"] for m in httpx.get(f"{base}/v1/models", headers=ADMIN).json()["data"]]
    assert "gpt-4o-mini" in listed  # what the wildcard serves is listed, as LiteLLM does
    assert "doubler" not in listed
    assert "twice" not in listed  # an alias of a classic model is one too
    for name in ("doubler", "twice"):  # nor found one by one
        retrieved = httpx.get(f"{base}/v1/models/{name}", headers=ADMIN)
        assert retrieved.status_code == 404
        assert f"GET /v2/models/{name}" in retrieved.json()["error"]["message"]
    through_alias = infer(base, {"inputs": [PAIRS]}, "twice")
    assert through_alias.status_code == 200, through_alias.text
    assert through_alias.json()["model_name"] == "twice"
    # The catch-all serves chat calls to any other name, never /v2 infer.
    not_classic = infer(base, {"inputs": [PAIRS]}, "gpt-4o-mini")
    assert not_classic.status_code == 404
    assert "is not a classic model" in not_classic.json()["error"]
    chat = {"model": "doubler", "messages": [{"role": "user", "content": "hi"}]}
    refused = httpx.post(f"{base}/v1/chat/completions", json=chat, headers=ADMIN)
    assert refused.status_code == 400  # the classic model's own name wins over the wildcard
    assert "POST /v2/models/doubler/infer" in refused.json()["error"]["message"]
    served = ServedModels.from_config(GatewayConfig.model_validate(config), "gateway.yaml")
    assert served.problem("gpt-4o-mini") is None
    assert "is a classic model" in (served.problem("doubler") or "")


def test_tags_route_infer_calls_from_the_header(
    gateway: GatewayFactory, remote: FakeV2Server
) -> None:
    models = [
        {**v2_model("tagged", remote, "doubler,id=eu"), "model_info": {"id": "eu"}},
        {**v2_model("tagged", remote, "doubler,id=us"), "model_info": {"id": "us"}},
    ]
    models[0]["litellm_params"]["tags"] = ["eu"]
    models[1]["litellm_params"]["tags"] = ["us", "default"]
    base = gateway({"model_list": models, "router_settings": {"enable_tag_filtering": True}})
    url = f"{base}/v2/models/tagged/infer"
    for tags, deployment in (("eu", "eu"), ("us", "us"), (None, "us")):
        headers = {**ADMIN, **({"x-litellm-tags": tags} if tags else {})}
        answer = httpx.post(url, json={"inputs": [PAIRS]}, headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-gateway-model"] == deployment
