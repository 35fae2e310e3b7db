"""Classic models served in process over the Open Inference Protocol (v2), end to end over
HTTP: registered in the registry over its API, loaded after their sha256 check, called with
curl-like JSON, with tritonclient (JSON and binary tensors), under the same keys, limits,
budgets and request log as LLM calls."""

from __future__ import annotations

import asyncio
import json
import pickle
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import Engine

from gateway.classic.artifacts import inspect
from gateway.classic.example import TrainedExample, train_example
from gateway.classic.serving import ModelNotReady
from gateway.registry.served import ServedVersions
from gateway.registry.spec import VersionSpec
from gateway.registry.store import RegistryStore
from gateway.store.db import make_engine, migrate
from tests.conftest import MASTER_KEY, ROOT, GatewayFactory, sdk
from tests.fakes.classic_models import ThreadRecorder

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
ROWS = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]
IRIS = {
    "model_name": "iris",
    "litellm_params": {"model": "registry/iris"},
    "model_info": {"cost_per_1k_predictions": 10.0},
}


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> TrainedExample:
    return train_example("iris", tmp_path_factory.mktemp("example"))


def infer_body(rows: list[list[float]] = ROWS, **extra: Any) -> dict[str, Any]:
    shape = [len(rows), len(rows[0])]
    tensor = {"name": "input-0", "shape": shape, "datatype": "FP32", "data": rows}
    return {"inputs": [tensor], **extra}


def version_body(example: TrainedExample, **changes: Any) -> dict[str, Any]:
    return {
        "alias": "iris",
        "kind": "classic",
        "dataset": str(example.dataset),
        "dataset_hash": example.dataset_sha256,
        "artifact": str(example.artifact),
        "artifact_sha256": example.artifact_sha256,
        "framework": "skops",
        "signature": example.signature.model_dump(),
        "feature_stats": example.feature_stats,
        **changes,
    }


def artifact_body(
    alias: str, artifact: Path, framework: str, trusted: bool = False
) -> dict[str, Any]:
    """What registering a classic version of `artifact` sends: its hash and signature, read
    from the file (a pickle is read as trusted here, whatever the version will say)."""
    found = inspect(artifact, framework, trusted=True)
    return {
        "alias": alias,
        "kind": "classic",
        "artifact": str(artifact),
        "artifact_sha256": found.sha256,
        "framework": framework,
        "signature": found.signature.model_dump(),
        "trusted": trusted,
    }


def register(base: str, body: dict[str, Any], name: str = "iris") -> int:
    found = httpx.post(f"{base}/v1/registry/models/{name}/versions", json=body, headers=ADMIN)
    assert found.status_code == 200, found.text
    version: int = found.json()["version"]
    return version


def label(base: str, version: int, name: str = "iris", label: str = "production") -> None:
    moved = httpx.put(
        f"{base}/v1/registry/models/{name}/labels/{label}",
        json={"version": version, "approver": "ana"},
        headers=ADMIN,
    )
    assert moved.status_code == 200, moved.text


def until(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.05)


def ready(base: str, path: str = "iris") -> httpx.Response:
    return httpx.get(f"{base}/v2/models/{path}/ready", headers=ADMIN)


def infer(
    base: str, body: dict[str, Any], path: str = "iris", key: str = MASTER_KEY
) -> httpx.Response:
    return httpx.post(
        f"{base}/v2/models/{path}/infer", json=body, headers={"Authorization": f"Bearer {key}"}
    )


@pytest.fixture
def served(gateway: GatewayFactory, example: TrainedExample) -> str:
    """A gateway serving iris@1, labelled production and loaded."""
    drift = {"subjects": [{"model": "iris", "sample_rate": 1.0}]}
    base = gateway({"model_list": [IRIS], "drift": drift})
    label(base, register(base, version_body(example)))
    until(lambda: ready(base).status_code == 200)
    return base


def rows_of(database: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database) as connection:
        return connection.execute(query).fetchall()


# --- the protocol ---------------------------------------------------------------------------


def test_server_and_model_metadata_health_and_readiness(served: str) -> None:
    server = httpx.get(f"{served}/v2").json()
    assert server["name"] == "llmops-gateway"
    assert server["extensions"] == ["binary_tensor_data"]
    live = httpx.get(f"{served}/v2/health/live")
    assert (live.status_code, live.json()) == (200, {"live": True})
    health = httpx.get(f"{served}/v2/health/ready")
    assert (health.status_code, health.json()["ready"]) == (200, True)
    metadata = httpx.get(f"{served}/v2/models/iris", headers=ADMIN).json()
    assert metadata == {
        "name": "iris",
        "versions": ["1"],
        "platform": "sklearn_skops",
        "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [-1]},
            {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
        ],
    }
    assert httpx.get(f"{served}/v2/models/iris/versions/1", headers=ADMIN).json() == metadata
    model_ready = ready(served)
    assert (model_ready.status_code, model_ready.json()) == (
        200,
        {"name": "iris", "ready": True, "reason": None},
    )
    assert ready(served, "iris/versions/production").status_code == 200


def test_infer_nested_or_flat_echoes_the_id_and_picks_outputs(served: str) -> None:
    nested = infer(served, infer_body(id="req-42"))
    assert nested.status_code == 200, nested.text
    answer = nested.json()
    assert (answer["model_name"], answer["model_version"], answer["id"]) == ("iris", "1", "req-42")
    assert [o["name"] for o in answer["outputs"]] == ["predict", "predict_proba"]
    predict = answer["outputs"][0]
    assert (predict["datatype"], predict["shape"], predict["data"]) == ("INT64", [2], [1, 1])
    values = [value for row in ROWS for value in row]
    flat = {"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": values}
    again = infer(served, {"inputs": [flat], "outputs": [{"name": "predict_proba"}]}).json()
    assert [o["name"] for o in again["outputs"]] == ["predict_proba"]
    assert again["outputs"][0]["shape"] == [2, 3]
    assert again["outputs"][0]["data"] == answer["outputs"][1]["data"]
    assert again["id"]  # no id given: the gateway's request id
    headers = nested.headers
    assert headers["x-gateway-model-version"] == "iris@1"
    assert float(headers["x-gateway-cost-usd"]) == pytest.approx(2 * 10.0 / 1000)
    labelled = infer(served, infer_body(), "iris/versions/production").json()
    assert labelled["model_version"] == "1"


def test_bad_tensors_get_a_400_naming_the_input(served: str) -> None:
    wrong_shape = infer(served, infer_body([[1.0, 2.0, 3.0]]))
    assert wrong_shape.status_code == 400
    assert wrong_shape.json() == {
        "error": "input 'input-0': expected shape [-1, 4] (-1: any size), got [1, 3]"
    }
    half = infer_body()
    half["inputs"][0]["datatype"] = "FP16"
    refused = infer(served, half)
    assert refused.status_code == 400
    assert "FP16 cannot travel in JSON" in refused.json()["error"]
    unknown = infer(served, infer_body(outputs=[{"name": "labels"}]))
    assert unknown.json() == {
        "error": "unknown output 'labels': the model gives predict, predict_proba"
    }
    assert infer(served, {"inputs": []}).status_code == 400


def test_unknown_models_and_versions_are_404_and_keys_are_checked(served: str) -> None:
    missing = infer(served, infer_body(), "roses")
    assert missing.status_code == 404
    assert set(missing.json()) == {"error"}
    assert infer(served, infer_body(), "iris/versions/9").json() == {
        "error": "registry model 'iris' has no version 9 (versions: 1)"
    }
    assert infer(served, infer_body(), "iris/versions/canary").status_code == 404
    assert httpx.get(f"{served}/v2/models/roses", headers=ADMIN).status_code == 404
    assert infer(served, infer_body(), key="sk-nothing").status_code == 401
    created = httpx.post(f"{served}/v1/keys", json={"models": ["gpt-*"]}, headers=ADMIN).json()
    forbidden = infer(served, infer_body(), key=created["key"])
    assert forbidden.status_code == 403
    assert "may not use model 'iris'" in forbidden.json()["error"]
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert httpx.get(f"{served}/v2/models/iris", headers=headers).status_code == 403


def test_rate_limits_and_budgets_priced_per_prediction(served: str) -> None:
    limited = httpx.post(f"{served}/v1/keys", json={"rpm_limit": 1}, headers=ADMIN).json()
    assert infer(served, infer_body(), key=limited["key"]).status_code == 200
    over = infer(served, infer_body(), key=limited["key"])
    assert over.status_code == 429
    assert set(over.json()) == {"error"}
    # $0.05 at $10 per 1,000 predictions: 5 rows, then refused before predicting.
    budget = httpx.post(f"{served}/v1/keys", json={"max_budget": 0.05}, headers=ADMIN).json()
    assert infer(served, infer_body(ROWS * 2), key=budget["key"]).status_code == 200
    refused = infer(served, infer_body(ROWS), key=budget["key"])
    assert refused.status_code == 429
    assert "needs up to $0.02 (2 predictions at $10.00 per 1,000)" in refused.json()["error"]


def test_calls_are_logged_metered_and_sampled(served: str, tmp_path: Path) -> None:
    answered = infer(served, infer_body(id="logged"))
    request_id = answered.headers["x-gateway-request-id"]
    infer(served, infer_body([[1.0]]))  # a 400: logged too
    database = tmp_path / ".gateway" / "gateway.db"
    query = (
        "SELECT route, alias, model_version, predictions, cost_usd, status FROM request_log "
        "ORDER BY created_at"
    )
    until(lambda: len(rows_of(database, query)) == 2)
    assert rows_of(database, query) == [
        ("infer", "iris", "iris@1", 2, pytest.approx(0.02), 200),
        ("infer", "iris", "iris@1", 0, 0.0, 400),
    ]
    logged = httpx.get(f"{served}/v1/logs/{request_id}", headers=ADMIN).json()
    assert (logged["model_version"], logged["predictions"]) == ("iris@1", 2)
    # Drift's sample: one row per predicted row, its features and outputs by name.
    samples = 'SELECT subject, alias, "values" FROM drift_samples ORDER BY id'
    until(lambda: len(rows_of(database, samples)) == 2)
    sampled = rows_of(database, samples)
    assert [(subject, alias) for subject, alias, _ in sampled] == [("classic:iris@1", "iris")] * 2
    first = json.loads(sampled[0][2])
    assert first["sepal length (cm)"] == pytest.approx(6.8)
    assert first["petal width (cm)"] == pytest.approx(1.4)
    assert first["predict"] in (0, 1, 2)
    assert sum(first[f"predict_proba[{j}]"] for j in range(3)) == pytest.approx(1.0)
    metrics = httpx.get(f"{served}/metrics").text
    assert 'gateway_requests_total{model="iris",route="infer",status="200"}' in metrics


def test_a_label_move_changes_what_answers_on_every_replica(
    served: str, gateway: GatewayFactory, example: TrainedExample
) -> None:
    replica = gateway({"model_list": [IRIS]})  # another replica on the same database
    second = register(served, version_body(example, description="the same model, again"))
    for base in (served, replica):
        until(lambda base=base: ready(base, f"iris/versions/{second}").status_code == 200)
        assert infer(base, infer_body()).json()["model_version"] == "1"
    label(served, second)
    for base in (served, replica):
        until(lambda base=base: infer(base, infer_body()).json()["model_version"] == "2", 10)
    assert httpx.get(f"{replica}/v2/models/iris", headers=ADMIN).json()["versions"] == ["1", "2"]
    # The request log tells the two apart: by version, or every version of the model.
    logs = f"{replica}/v1/logs"
    by_version = {
        ref: {
            row["model_version"]
            for row in httpx.get(logs, params={"model_version": ref}, headers=ADMIN).json()["data"]
        }
        for ref in ("iris@1", "iris@2", "iris")
    }
    assert by_version == {"iris@1": {"iris@1"}, "iris@2": {"iris@2"}, "iris": {"iris@1", "iris@2"}}
    for wrong in ("iris@production", "iris@0", "ir%s@1", "@1"):
        refused = httpx.get(logs, params={"model_version": wrong}, headers=ADMIN)
        assert refused.status_code == 400, wrong
        assert refused.json()["error"]["param"] == "model_version"


def test_a_changed_artifact_is_refused_naming_both_hashes(
    gateway: GatewayFactory, example: TrainedExample, tmp_path: Path
) -> None:
    # The entry records the example's sha256; the file was changed since. Changed before it is
    # registered: a version loads as soon as it is the newest, so changing it afterwards would
    # race that load.
    copy = tmp_path / "tampered.skops"
    copy.write_bytes(example.artifact.read_bytes() + b"\0")
    base = gateway({"model_list": [IRIS]})
    label(base, register(base, version_body(example, artifact=str(copy))))
    until(lambda: "has sha256:" in str(ready(base).json().get("reason")))
    answer = ready(base)
    assert answer.status_code == 503
    reason = answer.json()["reason"]
    assert example.artifact_sha256 in reason
    assert "iris@1 is not ready" in reason
    refused = infer(base, infer_body())
    assert refused.status_code == 503
    assert refused.json()["error"] == reason
    health = httpx.get(f"{base}/v2/health/ready")
    assert (health.status_code, health.json()["not_ready"]) == (503, {"iris": reason})


def test_a_model_with_no_version_yet_says_how_to_make_one(gateway: GatewayFactory) -> None:
    base = gateway({"model_list": [IRIS]})
    answer = infer(base, infer_body())
    assert answer.status_code == 503
    assert "gateway registry train-example" in answer.json()["error"]
    assert ready(base).json()["ready"] is False


def test_pickle_loads_only_when_trusted_and_predicts_off_the_event_loop(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    artifact = tmp_path / "summer.pkl"
    artifact.write_bytes(pickle.dumps(ThreadRecorder()))
    model = {"model_name": "summer", "litellm_params": {"model": "registry/summer"}}
    base = gateway({"model_list": [model]})
    body = artifact_body("summer", artifact, "pickle")
    untrusted = register(base, body, "summer")
    until(lambda: "--trust-pickle" in str(ready(base, f"summer/versions/{untrusted}").json()))
    trusted = register(base, {**body, "trusted": True}, "summer")
    until(lambda: ready(base, f"summer/versions/{trusted}").status_code == 200)
    rows = {"name": "input-0", "datatype": "FP64", "shape": [2, 2], "data": [1, 2, 3, 4]}
    answer = infer(base, {"inputs": [rows]}, f"summer/versions/{trusted}")
    assert answer.json()["outputs"][0]["data"] == [3.0, 7.0]
    assert ThreadRecorder.threads
    assert all(name.startswith("predict") for name in ThreadRecorder.threads)


def test_onnx_models_are_served_too(gateway: GatewayFactory, tmp_path: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    fitted = LogisticRegression(max_iter=500).fit(data.data, data.target)
    graph = to_onnx(
        fitted, data.data[:1].astype(np.float32), options={id(fitted): {"zipmap": False}}
    )
    artifact = tmp_path / "iris.onnx"
    artifact.write_bytes(graph.SerializeToString())
    model = {"model_name": "iris-onnx", "litellm_params": {"model": "registry/iris-onnx"}}
    base = gateway({"model_list": [model]})
    body = artifact_body("iris-onnx", artifact, "onnx")
    label(base, register(base, body, "iris-onnx"), "iris-onnx")
    until(lambda: ready(base, "iris-onnx").status_code == 200)
    metadata = httpx.get(f"{base}/v2/models/iris-onnx", headers=ADMIN).json()
    assert metadata["platform"] == "onnx_onnxv1"
    assert metadata["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    tensor = {"name": "X", "datatype": "FP32", "shape": [2, 4], "data": ROWS}
    answer = infer(base, {"inputs": [tensor], "outputs": [{"name": "label"}]}, "iris-onnx")
    assert answer.json()["outputs"] == [
        {"name": "label", "datatype": "INT64", "shape": [2], "data": [1, 1]}
    ]


# --- clients and the rest of the gateway -------------------------------------------------------


def test_tritonclient_json_and_binary_tensors(served: str) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(served.removeprefix("http://"))
    # tritonclient writes into the headers it is given (Inference-Header-Content-Length for
    # binary inputs): each call gets its own copy.
    key = lambda: dict(ADMIN)  # noqa: E731
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris", headers=key())
    assert client.get_model_metadata("iris", headers=key())["inputs"][0]["shape"] == [-1, 4]
    rows = np.array(ROWS, dtype=np.float32)
    for binary in (False, True):
        tensor = triton.InferInput("input-0", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        outputs = [
            triton.InferRequestedOutput("predict", binary_data=binary),
            triton.InferRequestedOutput("predict_proba", binary_data=binary),
        ]
        result = client.infer("iris", [tensor], outputs=outputs, headers=key(), request_id="t1")
        assert result.as_numpy("predict").tolist() == [1, 1]
        assert result.as_numpy("predict_proba").shape == (2, 3)
        assert result.get_response()["id"] == "t1"
    tensor = triton.InferInput("input-0", [1, 4], "FP32")
    tensor.set_data_from_numpy(rows[:1])  # tritonclient's defaults: binary both ways
    assert client.infer("iris", [tensor], headers=key()).as_numpy("predict").tolist() == [1]
    wrong = triton.InferInput("input-0", [1, 2], "FP32")
    wrong.set_data_from_numpy(rows[:1, :2], binary_data=False)
    with pytest.raises(InferenceServerException, match="expected shape"):
        client.infer("iris", [wrong], headers=key())


def test_llm_routes_know_classic_models_apart(served: str) -> None:
    import openai

    client = sdk(served)
    assert "iris" not in [m.id for m in client.models.list()]
    with pytest.raises(openai.BadRequestError, match="POST /v2/models/iris/infer"):
        client.chat.completions.create(model="iris", messages=[{"role": "user", "content": "hi"}])
    answer = httpx.post(f"{served}/v2/models/local/echo/infer", json=infer_body(), headers=ADMIN)
    assert answer.status_code == 404


def test_serving_skops_never_imports_torch(example: TrainedExample) -> None:
    script = (
        "import sys\n"
        "from gateway.classic.artifacts import Artifact, load\n"
        "from gateway.classic.signature import Signature\n"
        f"signature = Signature.model_validate_json({example.signature.model_dump_json()!r})\n"
        f"artifact = Artifact({str(example.artifact)!r}, {example.artifact_sha256!r}, 'skops')\n"
        "load(artifact, signature)\n"
        "print('torch' in sys.modules, 'sklearn' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.split() == ["False", "True"]


def test_a_replica_catalogue_follows_the_registry_on_each_database(
    engine: Engine, example: TrainedExample
) -> None:
    store = RegistryStore(engine)
    spec = VersionSpec.model_validate(version_body(example))
    store.register("iris", spec, aliases=["iris"], actor="test")
    served = ServedVersions(store, {"iris"})
    try:
        served.refresh()  # what the poller does twice a second
        with pytest.raises(ModelNotReady, match="labelled production"):
            served.resolve("iris", None)
        until(lambda: served.find("iris", "1").state == "ready")  # the newest: loaded
        assert served.find("iris", "1").signature == example.signature
        store.set_label("iris", "production", 1, approver="ana", actor="test")
        store.register("iris", spec, aliases=["iris"], actor="test")
        served.refresh()
        assert served.resolve("iris", None).number == 1
        store.set_label("iris", "production", 2, approver="ana", actor="test")
        served.refresh()
        until(lambda: served.find("iris", None).state == "ready")
        assert served.resolve("iris", None).ref == "iris@2"
        assert served.versions("iris") == [1, 2]
    finally:
        asyncio.run(served.aclose())


def test_closing_waits_for_a_load_under_way(engine: Engine, example: TrainedExample) -> None:
    """No loader thread outlives the app: closing waits for the load it is in the middle of."""
    store = RegistryStore(engine)
    store.register(
        "iris", VersionSpec.model_validate(version_body(example)), aliases=["iris"], actor="t"
    )
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow(artifact: Any, signature: Any) -> object:
        started.set()
        release.wait(30)
        finished.set()
        return object()

    served = ServedVersions(store, {"iris"}, loader=slow)
    served.refresh()  # iris@1 is the newest: its load starts
    assert started.wait(30)
    threading.Timer(0.2, release.set).start()  # the load ends after close was asked for
    asyncio.run(served.aclose())
    assert finished.is_set()
    assert served.find("iris", "1").state == "ready"


HUNG_LOAD_THEN_EXIT = """
import asyncio, sys, threading
from gateway.registry.served import ServedVersions
from gateway.registry.store import RegistryStore
from gateway.store.db import make_engine

started = threading.Event()

def hung(artifact, signature):
    started.set()
    threading.Event().wait()  # never returns

served = ServedVersions(RegistryStore(make_engine(sys.argv[1])), {"iris"}, loader=hung,
                        close_wait=0.1)
served.refresh()
assert started.wait(30)
asyncio.run(served.aclose())
print("closed", flush=True)
"""


def test_a_hung_load_does_not_keep_the_process_from_exiting(
    tmp_path: Path, example: TrainedExample
) -> None:
    # A pool's worker threads are joined at interpreter exit: a load that never returns must
    # not run in one, or `gateway serve` would hang after shutting down.
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    engine = make_engine(url)
    migrate(engine)
    RegistryStore(engine).register(
        "iris", VersionSpec.model_validate(version_body(example)), aliases=["iris"], actor="t"
    )
    engine.dispose()
    done = subprocess.run(
        [sys.executable, "-c", HUNG_LOAD_THEN_EXIT, url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "closed"
    assert "left behind at shutdown" in done.stderr


def test_closing_leaves_a_hung_load_behind(engine: Engine, example: TrainedExample) -> None:
    """A load that never returns (a stuck file system) does not hang the app's shutdown."""
    store = RegistryStore(engine)
    store.register(
        "iris", VersionSpec.model_validate(version_body(example)), aliases=["iris"], actor="t"
    )
    started, release = threading.Event(), threading.Event()

    def hung(artifact: Any, signature: Any) -> object:
        started.set()
        release.wait(60)
        return object()

    served = ServedVersions(store, {"iris"}, loader=hung, close_wait=0.1)
    try:
        served.refresh()
        assert started.wait(30)
        asyncio.run(served.aclose())  # returns with the load still under way
        assert not release.is_set()
        assert served.find("iris", "1").state == "loading"
    finally:
        release.set()
