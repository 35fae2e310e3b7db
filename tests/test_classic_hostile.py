"""What a hostile or careless client sends to /v2/models/{name}/infer: every body gets the
protocol's `{"error": ...}` with a status that says what was wrong, never a 500 and never a
model library's own words; an unknown model is a 404 whatever the body; and the body is read
as JSON whatever Content-Type says, as KServe and Triton read it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from gateway.classic.example import TrainedExample, train_example
from tests.conftest import GatewayFactory
from tests.test_classic_serving import ADMIN, IRIS, label, ready, register, until, version_body


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> TrainedExample:
    return train_example("iris", tmp_path_factory.mktemp("example"))


@pytest.fixture
def base(gateway: GatewayFactory, example: TrainedExample) -> str:
    url = gateway({"model_list": [IRIS]})
    label(url, register(url, version_body(example)))
    until(lambda: ready(url).status_code == 200)
    return url


def tensor(**changes: Any) -> dict[str, Any]:
    one = {"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [[6.8, 2.8, 4.8, 1.4]]}
    return {"inputs": [{**one, **changes}]}


def encoded(body: Any) -> bytes:
    return json.dumps(body).encode()


NESTED = b"[" * 1000 + b"]" * 1000
# (what was sent, its headers, the error's words)
REFUSED = {
    "not JSON": (b"{", {}, "not valid JSON"),
    "NaN": (
        b'{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP32","data":[NaN,1,2,3]}]}',
        {},
        "not valid JSON",
    ),
    "1,000 levels deep": (b'{"inputs":' + NESTED + b"}", {}, "inputs[0] must be an object"),
    "a list": (b"[1]", {}, "must be a JSON object"),
    "no inputs": (b'{"inputs": null}', {}, "'inputs' is required"),
    "no rows": (encoded(tensor(shape=[0, 4], data=[])), {}, "holds no values (shape [0, 4])"),
    "a shape too big": (encoded(tensor(shape=[10**12, 4])), {}, "does not match its shape"),
    "a negative shape": (encoded(tensor(shape=[-1, 4])), {}, "non-negative integers"),
    "a boolean shape": (encoded(tensor(shape=[True, 4])), {}, "non-negative integers"),
    "words for numbers": (encoded(tensor(data=[["a", "b", "c", "d"]])), {}, "not a number"),
    "FP16": (encoded(tensor(datatype="FP16")), {}, "FP16 cannot travel in JSON"),
    "an unknown output": (
        encoded({**tensor(), "outputs": [{"name": "nope"}]}),
        {},
        "unknown output 'nope'",
    ),
    "an id that is not a string": (encoded({**tensor(), "id": {"a": 1}}), {}, "'id' must be"),
    "an input twice": (encoded({"inputs": tensor()["inputs"] * 2}), {}, "given twice"),
    "a NUL in a name": (encoded(tensor(name="input-0\x00")), {}, "unknown input 'input-0\\x00'"),
    "a binary length past the end": (
        encoded(tensor()),
        {"Inference-Header-Content-Length": "99999"},
        "Inference-Header-Content-Length must be",
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_bad_body_gets_a_400_in_the_protocols_shape(base: str, case: str) -> None:
    body, headers, words = REFUSED[case]
    answer = httpx.post(f"{base}/v2/models/iris/infer", content=body, headers={**ADMIN, **headers})
    assert answer.status_code == 400, answer.text
    assert list(answer.json()) == ["error"]
    assert words in answer.json()["error"]
    assert "StandardScaler" not in answer.text


def test_an_unknown_model_is_a_404_whatever_the_body(base: str) -> None:
    for body in (b"{", encoded(tensor()), b""):
        answer = httpx.post(f"{base}/v2/models/nope/infer", content=body, headers=ADMIN)
        assert answer.status_code == 404, answer.text
        assert "'nope'" in answer.json()["error"]


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "application/x-www-form-urlencoded", "text/plain"],
)
def test_the_body_is_json_whatever_content_type_says(base: str, content_type: str | None) -> None:
    # curl -d @input.json, as KServe's and Triton's documentation call it, says form-urlencoded.
    headers = ADMIN if content_type is None else {**ADMIN, "Content-Type": content_type}
    answer = httpx.post(f"{base}/v2/models/iris/infer", content=encoded(tensor()), headers=headers)
    assert answer.status_code == 200, answer.text
    predict = answer.json()["outputs"][0]
    assert (predict["name"], predict["shape"]) == ("predict", [1])
    assert predict["data"][0] in (0, 1, 2)  # an iris class
