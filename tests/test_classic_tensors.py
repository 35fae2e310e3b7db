"""Open Inference Protocol tensors: decoding (nested or flat, every JSON datatype, binary),
the checks against a signature, and the answer's encoding (JSON and binary)."""

from __future__ import annotations

import struct
from typing import Any

import orjson
import pytest

from gateway.classic.encoding import encode_answer
from gateway.classic.signature import Signature
from gateway.classic.tensors import InferRequest, Output, decode_request, flat_values
from gateway.core.errors import BadRequest


def tensor(datatype: str, shape: list[int], data: Any, name: str = "x") -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def refused(body: dict[str, Any], binary: bytes | None = None) -> str:
    with pytest.raises(BadRequest) as caught:
        decode_request(body, binary)
    return caught.value.message


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        ("BOOL", [True, False]),
        ("UINT8", [0, 255]),
        ("UINT16", [0, 65535]),
        ("UINT32", [0, 2**32 - 1]),
        ("UINT64", [0, 2**64 - 1]),
        ("INT8", [-128, 127]),
        ("INT16", [-(2**15), 2**15 - 1]),
        ("INT32", [-(2**31), 2**31 - 1]),
        ("INT64", [-(2**63), 2**63 - 1]),
        ("FP32", [1.5, -2]),
        ("FP64", [1e300, 3]),
        ("BYTES", ["a", "ü"]),
    ],
)
def test_every_json_datatype_decodes_nested_or_flat(datatype: str, values: list[Any]) -> None:
    flat = decode_request({"inputs": [tensor(datatype, [1, 2], values)]})
    nested = decode_request({"inputs": [tensor(datatype, [1, 2], [values])]})
    assert flat.inputs[0].data == nested.inputs[0].data == values
    assert flat.inputs[0].shape == (1, 2)
    assert flat.rows == 1


def test_values_out_of_their_datatype_are_refused_naming_the_input() -> None:
    assert refused({"inputs": [tensor("UINT8", [1], [256], "pixels")]}) == (
        "input 'pixels': 256 is out of range for UINT8 (0 to 255)"
    )
    assert "is True, not an integer" in refused({"inputs": [tensor("INT64", [1], [True])]})
    assert "is 1, not true or false" in refused({"inputs": [tensor("BOOL", [1], [1])]})
    assert "is 'a', not a number (datatype FP64)" in refused(
        {"inputs": [tensor("FP64", [2], [1.0, "a"])]}
    )
    assert "beyond FP32's range" in refused({"inputs": [tensor("FP32", [1], [1e39])]})
    assert "is 3, not a string" in refused({"inputs": [tensor("BYTES", [1], [3])]})


def test_fp16_cannot_travel_in_json_and_says_why() -> None:
    message = refused({"inputs": [tensor("FP16", [1, 2], [1.0, 2.0], "half")]})
    assert message.startswith("input 'half': FP16 cannot travel in JSON")
    assert "FP32" in message
    assert "binary" in message


def test_shapes_and_nesting_must_agree() -> None:
    assert refused({"inputs": [tensor("FP32", [2, 2], [1, 2, 3])]}) == (
        "input 'x': shape [2, 2] holds 4 values, data has 3"
    )
    assert "data nested as [2, 2] does not match its shape [1, 4]" in refused(
        {"inputs": [tensor("FP32", [1, 4], [[1, 2], [3, 4]])]}
    )
    assert "nested deeper than its shape" in refused({"inputs": [tensor("FP32", [1, 1], [[[1]]])]})
    assert "'shape' must be a list" in refused({"inputs": [tensor("FP32", [-1], [1])]})
    assert "datatype 'FLOAT' is not one of BOOL" in refused({"inputs": [tensor("FLOAT", [1], [1])]})


def test_the_request_shape_is_checked() -> None:
    assert "'inputs' is required" in refused({})
    assert "'id' must be a string" in refused({"id": 3, "inputs": [tensor("FP32", [1], [1])]})
    assert "given twice" in refused({"inputs": [tensor("FP32", [1], [1])] * 2})
    assert "'name' is required" in refused({"inputs": [{"datatype": "FP32", "shape": [1]}]})
    outputs = {"inputs": [tensor("FP32", [1], [1])], "outputs": [{"nam": "y"}]}
    assert "outputs[0]: 'name' is required" in refused(outputs)


def test_binary_inputs_are_read_from_the_bytes_after_the_json() -> None:
    floats = struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)
    words = b"".join(len(w).to_bytes(4, "little") + w for w in (b"hi", b"there"))
    body = {
        "inputs": [
            {
                "name": "a",
                "datatype": "FP32",
                "shape": [2, 2],
                "parameters": {"binary_data_size": 16},
            },
            {"name": "h", "datatype": "FP16", "shape": [1], "parameters": {"binary_data_size": 2}},
            {
                "name": "w",
                "datatype": "BYTES",
                "shape": [2],
                "parameters": {"binary_data_size": len(words)},
            },
        ]
    }
    half = struct.pack("<e", 0.5)
    request = decode_request(body, floats + half + words)
    a, h, w = request.inputs
    assert flat_values(a) == [1.0, 2.0, 3.0, 4.0]
    assert flat_values(h) == [0.5]  # FP16 travels in binary
    assert w.data == ["hi", "there"]
    assert "bytes of binary tensor data follow" in refused(body, floats + half + words + b"x")
    short = {"inputs": [{**body["inputs"][0], "parameters": {"binary_data_size": 12}}]}
    assert "takes 16 bytes, binary_data_size gives 12" in refused(short, floats[:12])
    assert "has no binary part" in refused(body)


SIGNATURE = Signature.model_validate(
    {
        "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [-1]},
            {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
        ],
    }
)


def checked(body: dict[str, Any]) -> str:
    with pytest.raises(BadRequest) as caught:
        SIGNATURE.check(decode_request(body))
    return caught.value.message


def test_a_signature_names_what_it_expected_and_what_came() -> None:
    good = tensor("FP32", [2, 4], [0.0] * 8, "input-0")
    SIGNATURE.check(decode_request({"inputs": [good]}))  # -1: any number of rows
    assert checked({"inputs": [{**good, "shape": [2, 2], "data": [0] * 4}]}) == (
        "input 'input-0': expected shape [-1, 4] (-1: any size), got [2, 2]"
    )
    assert checked({"inputs": [{**good, "datatype": "FP64"}]}) == (
        "input 'input-0': expected datatype FP32, got FP64"
    )
    assert checked({"inputs": [{**good, "name": "features"}]}) == (
        "unknown input 'features': the model takes input-0 (FP32 [-1, 4])"
    )
    assert checked({"inputs": [good], "outputs": [{"name": "classes"}]}) == (
        "unknown output 'classes': the model gives predict, predict_proba"
    )


def test_answers_carry_json_or_binary_outputs_as_asked() -> None:
    outputs = [Output("predict", "INT64", [2], [1, 2]), Output("names", "BYTES", [1], ["a"])]
    json_only = decode_request({"inputs": [tensor("FP32", [1], [1])]})
    body, length = encode_answer({"model_name": "m", "id": "1"}, outputs, json_only)
    assert length is None
    assert orjson.loads(body)["outputs"][0] == {
        "name": "predict",
        "datatype": "INT64",
        "shape": [2],
        "data": [1, 2],
    }
    binary = InferRequest(None, None, json_only.inputs, None, binary_outputs=True)
    body, length = encode_answer({"model_name": "m", "id": "1"}, outputs, binary)
    assert length is not None
    head = orjson.loads(body[:length])
    assert [o["parameters"]["binary_data_size"] for o in head["outputs"]] == [16, 5]
    assert body[length:] == struct.pack("<2q", 1, 2) + (1).to_bytes(4, "little") + b"a"
    one_json = decode_request(
        {
            "inputs": [tensor("FP32", [1], [1])],
            "parameters": {"binary_data_output": True},
            "outputs": [{"name": "predict", "parameters": {"binary_data": False}}],
        }
    )
    body, length = encode_answer({"model_name": "m", "id": "1"}, outputs[:1], one_json)
    assert length is None  # the output's own choice wins over the request's default
