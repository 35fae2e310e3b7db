"""The inference answer's bytes: JSON, with the outputs asked for in binary appended after it
(Triton's binary tensor extension: the JSON's length goes in Inference-Header-Content-Length,
each such output says its `binary_data_size` and carries no `data`)."""

from __future__ import annotations

import struct
from typing import Any

import orjson

from gateway.classic.tensors import DATATYPES, InferRequest, Output

# Numpy arrays (the local runtimes' outputs) serialize in C, without a tolist() copy.
JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
HEADER_LENGTH = "inference-header-content-length"


def encode_answer(
    head: dict[str, Any], outputs: list[Output], request: InferRequest
) -> tuple[bytes, int | None]:
    """The body, and the JSON part's length when binary outputs follow it (else None)."""
    asked = {o.name: o.binary for o in request.outputs} if request.outputs is not None else {}
    tensors: list[dict[str, Any]] = []
    binary: list[bytes] = []
    for output in outputs:
        tensor: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": output.shape,
        }
        wanted = asked.get(output.name)
        if wanted if wanted is not None else request.binary_outputs:
            raw = raw_bytes(output)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            binary.append(raw)
        else:
            tensor["data"] = output.data
        tensors.append(tensor)
    body = orjson.dumps({**head, "outputs": tensors}, option=JSON_OPTIONS)
    if not binary:
        return body, None
    return body + b"".join(binary), len(body)


def raw_bytes(output: Output) -> bytes:
    """Little-endian, row-major; BYTES items each after their 4-byte length."""
    data = output.data
    if output.datatype == "BYTES":
        items = data.tolist() if hasattr(data, "tolist") else data
        parts = []
        for item in items:
            encoded = item if isinstance(item, bytes) else str(item).encode("utf-8")
            parts.append(len(encoded).to_bytes(4, "little") + encoded)
        return b"".join(parts)
    if hasattr(data, "tobytes"):  # a numpy array, already of the datatype's dtype
        raw: bytes = data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
        return raw
    code = DATATYPES[output.datatype][0]
    return struct.pack(f"<{len(data)}{code}", *data)
