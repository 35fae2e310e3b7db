"""`gateway registry train-example` and `registry register --artifact`, as a user runs them:
real processes, the project's database, then `gateway serve` answering a v2 infer offline."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import MASTER_KEY, Project, gateway_process
from tests.fakes.classic_models import ThreadRecorder
from tests.test_classic_serving import until

IRIS = {"model_name": "iris", "litellm_params": {"model": "registry/iris"}}


def succeed(project: Project, *args: str) -> str:
    result = project.gateway(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def serve_iris(project: Project) -> None:
    config = yaml.safe_load((project.root / "gateway.yaml").read_text())
    config["model_list"].append(IRIS)
    (project.root / "gateway.yaml").write_text(yaml.safe_dump(config))


@pytest.mark.slow
def test_train_example_registers_a_model_that_serve_answers(project: Project) -> None:
    serve_iris(project)
    out = succeed(project, "registry", "train-example").splitlines()
    assert out[0].startswith("registered iris@1 (alias iris; accuracy ")
    assert out[1] == "iris: production (none) -> 1"
    shown = json.loads(succeed(project, "registry", "show", "iris@1"))
    data = Path(shown["dataset"])
    assert data.name == "iris.csv"
    # The shipped model test's data is this same file, kept in the repository.
    shipped = Path(__file__).parent.parent / "evals" / "registry" / "iris.csv"
    assert data.read_bytes() == shipped.read_bytes()
    assert shown["dataset_hash"] == "sha256:" + hashlib.sha256(data.read_bytes()).hexdigest()
    artifact = Path(shown["artifact"])
    assert shown["artifact_sha256"] == "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert (shown["kind"], shown["framework"], shown["labels"]) == (
        "classic",
        "skops",
        ["production"],
    )
    features = shown["feature_stats"]["features"]
    assert list(features) == shown["signature"]["features"]
    assert len(features) == 4
    petal = features["petal length (cm)"]
    assert petal["min"] <= petal["quantiles"]["p50"] <= petal["max"]
    assert sum(petal["histogram"]["counts"]) == shown["feature_stats"]["rows"] == 112
    expected = shown["expectations"]
    assert expected["enforce"] is False
    assert expected["features"]["petal length (cm)"] == {
        "min": petal["min"],
        "max": petal["max"],
        "max_null_rate": 0.0,
    }
    assert shown["metadata"]["classes"] == ["setosa", "versicolor", "virginica"]
    reference = shown["metadata"]["drift_reference"]  # drift's, with no step of its own
    assert reference["format"] == "gateway-drift-reference/1"
    assert (reference["rows"], reference["source"]) == (
        112,
        "training data: sklearn.datasets.load_iris, 112 rows",
    )
    assert list(reference["columns"]) == [
        *features,
        "predict",
        "predict_proba[0]",
        "predict_proba[1]",
        "predict_proba[2]",
    ]

    env = project.env()
    with gateway_process(Path(env["GATEWAY_DATA_DIR"]), env=env) as (base, _):
        headers = {"Authorization": f"Bearer {MASTER_KEY}"}
        ready = f"{base}/v2/models/iris/ready"
        until(lambda: httpx.get(ready, headers=headers).status_code == 200, seconds=60)
        body = {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "data": [5.1, 3.5, 1.4, 0.2],
                }
            ]
        }
        answer = httpx.post(f"{base}/v2/models/iris/infer", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == [0]  # setosa

    # The request log, read back by the version that answered.
    logged = succeed(project, "logs", "--model-version", "iris@1", "--json").splitlines()
    assert [json.loads(line)["model_version"] for line in logged] == ["iris@1"]
    assert succeed(project, "logs", "--model-version", "iris", "--json").splitlines() == logged
    assert succeed(project, "logs", "--model-version", "iris@2", "--json") == ""
    label = project.gateway("logs", "--model-version", "iris@production")
    assert label.returncode != 0
    assert label.stderr.startswith("error: --model-version: ")
    assert "NAME or NAME@N" in label.stderr

    again = succeed(project, "registry", "train-example").splitlines()
    assert again[1] == "iris: production 1 -> 2"


def test_train_example_needs_a_model_name_serving_it(project: Project) -> None:
    refused = project.gateway("registry", "train-example", "--name", "roses")
    assert refused.returncode == 2
    assert "no model_name 'roses' in the config" in refused.stderr
    assert "registry/roses" in refused.stderr
    unknown = project.gateway("registry", "train-example", "--dataset", "mnist")
    assert unknown.returncode == 2
    assert "--dataset 'mnist': one of iris, wine, breast_cancer" in unknown.stderr


def test_register_reads_an_artifact_and_refuses_untrusted_pickles(
    project: Project, tmp_path: Path
) -> None:
    serve_iris(project)
    artifact = tmp_path / "summer.pkl"
    artifact.write_bytes(pickle.dumps(ThreadRecorder()))
    base = ("registry", "register", "iris", "--alias", "iris", "--artifact", str(artifact))
    refused = project.gateway(*base)
    assert refused.returncode == 2
    assert "runs code when loaded" in refused.stderr
    assert "--trust-pickle" in refused.stderr
    out = succeed(project, *base, "--trust-pickle")
    assert out.strip() == "registered iris@1 (alias iris)"
    shown = json.loads(succeed(project, "registry", "show", "iris@1"))
    assert (shown["kind"], shown["framework"], shown["trusted"]) == ("classic", "pickle", True)
    assert shown["signature"]["inputs"] == [
        {"name": "input-0", "datatype": "FP64", "shape": [-1, 2]}
    ]
    odd = tmp_path / "model.bin"
    odd.write_bytes(b"?")
    unknown = project.gateway(
        "registry", "register", "iris", "--alias", "iris", "--artifact", str(odd)
    )
    assert unknown.returncode == 2
    assert "cannot tell its framework" in unknown.stderr
    loose = project.gateway("registry", "register", "iris", "--alias", "iris", "--trust-pickle")
    assert loose.returncode == 2
    assert "describe an --artifact" in loose.stderr
