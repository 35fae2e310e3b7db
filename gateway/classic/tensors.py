"""Open Inference Protocol (v2) tensors: datatypes, a request's inputs decoded and checked
(data nested or flat, row-major), outputs chosen. Pure Python on purpose: numpy is imported
only by the runtimes that run a model in this process (classic/runtimes.py), so the gateway
starts, and proxies to remote servers, without it.

Every refusal is a 400 naming the input, what was expected and what came.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

from gateway.core.errors import BadRequest

# datatype: (struct code of one element in the binary extension, bytes per element).
DATATYPES: dict[str, tuple[str, int]] = {
    "BOOL": ("?", 1),
    "UINT8": ("B", 1),
    "UINT16": ("H", 2),
    "UINT32": ("I", 4),
    "UINT64": ("Q", 8),
    "INT8": ("b", 1),
    "INT16": ("h", 2),
    "INT32": ("i", 4),
    "INT64": ("q", 8),
    "FP16": ("e", 2),
    "FP32": ("f", 4),
    "FP64": ("d", 8),
    "BYTES": ("", 0),  # variable: 4-byte little-endian length, then the bytes
}
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
}
FP32_MAX = 3.4028234663852886e38
# The most dimensions a tensor may have: no model takes more, and it bounds the nesting walk.
MAX_RANK = 32
FP16_IN_JSON = (
    "FP16 cannot travel in JSON (JSON numbers have no 16-bit float form): send the tensor as "
    "FP32, or its raw bytes with the binary tensor extension (binary_data_size)"
)


@dataclass(slots=True)
class Tensor:
    """One input: `data` is flat row-major values, or raw little-endian bytes when it came
    in the binary extension."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: list[Any] | bytes
    parameters: dict[str, Any] | None = None

    @property
    def rows(self) -> int:
        """The batch: the first dimension (a scalar is one row)."""
        return self.shape[0] if self.shape else 1

    def describe(self) -> str:
        return f"{self.datatype} {list(self.shape)}"


@dataclass(slots=True)
class RequestedOutput:
    name: str
    binary: bool | None  # its data in the binary extension; None: as the request says


@dataclass(slots=True)
class InferRequest:
    id: str | None
    parameters: dict[str, Any] | None
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None  # None: every output the model gives
    binary_outputs: bool  # for outputs not named: the request's binary_data_output

    @property
    def rows(self) -> int:
        """Predictions asked for: the first input's batch (what a call is priced by)."""
        return self.inputs[0].rows

    def output_names(self) -> list[str] | None:
        return None if self.outputs is None else [o.name for o in self.outputs]


@dataclass(slots=True)
class Output:
    """One output: `data` is flat row-major values (a list, or a numpy array: both encode)."""

    name: str
    datatype: str
    shape: list[int]
    data: Any


def decode_request(body: dict[str, Any], binary: bytes | None = None) -> InferRequest:
    """The request's tensors, checked for what the protocol requires (not yet against a
    model's signature: see classic/signature.py). `binary` is what followed the JSON header
    in the binary extension; inputs with a `binary_data_size` parameter take their bytes
    from it, in order."""
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest(f"'id' must be a string, not {_shown(request_id)}", param="id")
    parameters = _parameters(body.get("parameters"), "parameters")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest(
            "'inputs' is required: a non-empty list of tensors {name, shape, datatype, data}",
            param="inputs",
        )
    remaining = memoryview(binary) if binary is not None else None
    tensors: list[Tensor] = []
    seen: set[str] = set()
    for index, item in enumerate(inputs):
        tensor, remaining = _input(item, index, remaining)
        if tensor.name in seen:
            raise BadRequest(f"input {tensor.name!r} is given twice", param="inputs")
        seen.add(tensor.name)
        tensors.append(tensor)
    if remaining is not None and len(remaining):
        raise BadRequest(
            f"{len(remaining)} bytes of binary tensor data follow the inputs that claim "
            f"them (their binary_data_size values add up to less than was sent)",
            param="inputs",
        )
    binary_outputs = bool(parameters and parameters.get("binary_data_output") is True)
    return InferRequest(
        request_id, parameters, tensors, _outputs(body.get("outputs")), binary_outputs
    )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parameters(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest(f"'{where}' must be an object of name: value pairs", param=where)
    return value


def _input(item: Any, index: int, binary: memoryview | None) -> tuple[Tensor, memoryview | None]:
    where = f"inputs[{index}]"
    if not isinstance(item, dict):
        raise BadRequest(f"{where} must be an object {{name, shape, datatype, data}}")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"{where}: 'name' is required (a non-empty string)", param="inputs")
    label = f"input {name!r}"
    datatype = item.get("datatype")
    if datatype not in DATATYPES:
        known = ", ".join(DATATYPES)
        raise BadRequest(
            f"{label}: datatype {_shown(datatype)} is not one of {known}", param="inputs"
        )
    shape = _shape(item.get("shape"), label)
    parameters = _parameters(item.get("parameters"), f"{where}.parameters")
    if parameters and "shared_memory_region" in parameters:
        raise BadRequest(
            f"{label}: shared memory is not supported through the gateway (it runs elsewhere "
            f"than the client); send the data in JSON or as binary data",
            param="inputs",
        )
    size = parameters.get("binary_data_size") if parameters else None
    if size is not None:
        if binary is None:
            raise BadRequest(
                f"{label}: binary_data_size is set, but the request has no binary part (send "
                f"the header Inference-Header-Content-Length with the JSON's length)",
                param="inputs",
            )
        raw, binary = _take(binary, size, label)
        return Tensor(name, datatype, shape, _binary_data(raw, datatype, shape, label)), binary
    if datatype == "FP16":
        raise BadRequest(f"{label}: {FP16_IN_JSON}", param="inputs")
    if "data" not in item:
        raise BadRequest(f"{label}: 'data' is required", param="inputs")
    flat = _flatten(item["data"], shape, label)
    _check_values(flat, datatype, label)
    return Tensor(name, datatype, shape, flat, parameters), binary


def _shape(value: Any, label: str) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or len(value) > MAX_RANK
        or not all(type(d) is int and d >= 0 for d in value)
    ):
        raise BadRequest(
            f"{label}: 'shape' must be a list of at most {MAX_RANK} non-negative integers, "
            f"not {_shown(value)}",
            param="inputs",
        )
    return tuple(value)


def _count(shape: tuple[int, ...] | list[int]) -> int:
    return math.prod(shape)


def _flatten(data: Any, shape: tuple[int, ...], label: str) -> list[Any]:
    """Row-major values: flat as given, or nested exactly as the shape says."""
    if not isinstance(data, list):
        raise BadRequest(f"{label}: 'data' must be a list", param="inputs")
    if data and isinstance(data[0], list):
        flat: list[Any] = []
        _unnest(data, shape, 0, flat, label)
    else:
        flat = data
    if len(flat) != _count(shape):
        raise BadRequest(
            f"{label}: shape {list(shape)} holds {_count(shape)} values, data has {len(flat)}",
            param="inputs",
        )
    return flat


def _unnest(
    level: list[Any], shape: tuple[int, ...], depth: int, out: list[Any], label: str
) -> None:
    if depth >= len(shape) or len(level) != shape[depth]:
        raise BadRequest(
            f"{label}: data nested as {_nesting(level, depth)} does not match its shape "
            f"{list(shape)} (nest it exactly as the shape, or send it flat)",
            param="inputs",
        )
    if depth == len(shape) - 1:
        if any(isinstance(value, list) for value in level):
            raise BadRequest(
                f"{label}: data is nested deeper than its shape {list(shape)}", param="inputs"
            )
        out.extend(level)
        return
    for child in level:
        if not isinstance(child, list):
            raise BadRequest(
                f"{label}: data mixes lists and values at depth {depth + 1}", param="inputs"
            )
        _unnest(child, shape, depth + 1, out, label)


def _nesting(level: list[Any], depth: int) -> list[int]:
    """The shape the nested data has (following first elements), for the message."""
    dims = [len(level)]
    while level and isinstance(level[0], list) and len(dims) <= MAX_RANK:
        level = level[0]
        dims.append(len(level))
    return dims


_NUMBER = (int, float)


def _check_values(flat: list[Any], datatype: str, label: str) -> None:
    """Each value is of the datatype's JSON kind and in its range (bool is not a number)."""
    if datatype == "BOOL":
        wanted: tuple[type, ...] = (bool,)
        kind = "true or false"
    elif datatype == "BYTES":
        wanted, kind = (str,), "a string"
    elif datatype in INTEGER_RANGES:
        wanted, kind = (int,), "an integer"
    else:
        wanted, kind = _NUMBER, "a number"
    for position, value in enumerate(flat):
        if type(value) not in wanted:
            raise BadRequest(
                f"{label}: value {position} is {_shown(value)}, not {kind} (datatype {datatype})",
                param="inputs",
            )
    if not flat:
        return
    if datatype in INTEGER_RANGES:
        low, high = INTEGER_RANGES[datatype]
        least, most = min(flat), max(flat)
        if least < low or most > high:
            bad = least if least < low else most
            raise BadRequest(
                f"{label}: {bad} is out of range for {datatype} ({low} to {high})",
                param="inputs",
            )
    elif datatype in ("FP32", "FP64"):
        largest = max(abs(value) for value in flat)
        if not math.isfinite(largest):  # 1e400 parses as infinity
            raise BadRequest(f"{label}: values must be finite numbers", param="inputs")
        if datatype == "FP32" and largest > FP32_MAX:
            raise BadRequest(
                f"{label}: {largest} is beyond FP32's range (±{FP32_MAX:.7g}); send FP64",
                param="inputs",
            )


def _take(binary: memoryview, size: Any, label: str) -> tuple[bytes, memoryview]:
    if type(size) is not int or size < 0:
        raise BadRequest(
            f"{label}: binary_data_size must be a non-negative integer", param="inputs"
        )
    if size > len(binary):
        raise BadRequest(
            f"{label}: binary_data_size is {size}, but only {len(binary)} bytes of binary "
            f"data are left",
            param="inputs",
        )
    return bytes(binary[:size]), binary[size:]


def _binary_data(raw: bytes, datatype: str, shape: tuple[int, ...], label: str) -> Any:
    """Fixed-size datatypes stay raw bytes (the runtime reads them in place); BYTES become
    the list of strings their length-prefixed items hold."""
    count = _count(shape)
    if datatype == "BYTES":
        return _bytes_items(raw, count, label)
    expected = count * DATATYPES[datatype][1]
    if len(raw) != expected:
        raise BadRequest(
            f"{label}: shape {list(shape)} of {datatype} takes {expected} bytes, "
            f"binary_data_size gives {len(raw)}",
            param="inputs",
        )
    return raw


def _bytes_items(raw: bytes, count: int, label: str) -> list[str]:
    items: list[str] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise BadRequest(f"{label}: a BYTES item's 4-byte length is cut short")
        length = int.from_bytes(raw[offset : offset + 4], "little")
        offset += 4
        if offset + length > len(raw):
            raise BadRequest(f"{label}: a BYTES item runs past binary_data_size")
        try:
            items.append(raw[offset : offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise BadRequest(
                f"{label}: BYTES item {len(items)} is not UTF-8 text", param="inputs"
            ) from None
        offset += length
    if len(items) != count:
        raise BadRequest(
            f"{label}: its shape holds {count} BYTES items, the binary data has {len(items)}",
            param="inputs",
        )
    return items


def _outputs(value: Any) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise BadRequest("'outputs' must be a list of {name, parameters?}", param="outputs")
    chosen = []
    for index, item in enumerate(value):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            raise BadRequest(f"outputs[{index}]: 'name' is required", param="outputs")
        parameters = _parameters(item.get("parameters"), f"outputs[{index}].parameters")
        flag = parameters.get("binary_data") if parameters else None
        chosen.append(RequestedOutput(name, flag if isinstance(flag, bool) else None))
    return chosen


def flat_values(tensor: Tensor) -> list[Any]:
    """The values as a list, whichever way they came (to forward them as JSON)."""
    if isinstance(tensor.data, list):
        return tensor.data
    code = DATATYPES[tensor.datatype][0]
    values = list(struct.unpack(f"<{_count(tensor.shape)}{code}", tensor.data))
    return values
