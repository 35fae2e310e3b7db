"""Models run in this process: scikit-learn estimators (saved with skops, or with joblib or
pickle when trusted) and ONNX graphs (onnxruntime). Imported only when a classic version is
loaded: it brings numpy, and the runtimes bring scikit-learn or onnxruntime.

`predict` is blocking; the provider calls it from a worker thread, never the event loop.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from gateway.classic.signature import Signature, TensorSpec
from gateway.classic.tensors import Output, Tensor

NUMPY_TYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}
# What scikit-learn estimators offer, by the output name that asks for it.
SKLEARN_METHODS = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "transform",
)
ONNX_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


class Runtime(Protocol):
    def predict(self, inputs: list[Tensor], outputs: list[str]) -> list[Output]: ...


def datatype_of(dtype: Any) -> str:
    dtype = np.dtype(dtype)
    if dtype.kind in "OUS":
        return "BYTES"
    for name, numpy_type in NUMPY_TYPES.items():
        if name != "BYTES" and np.dtype(numpy_type) == dtype:
            return name
    return "FP64"


def as_array(tensor: Tensor) -> Any:
    numpy_type = NUMPY_TYPES[tensor.datatype]
    if isinstance(tensor.data, bytes):
        array = np.frombuffer(tensor.data, dtype=np.dtype(numpy_type).newbyteorder("<"))
    elif tensor.datatype == "BYTES":
        array = np.array(tensor.data, dtype=object)
    else:
        array = np.asarray(tensor.data, dtype=numpy_type)
    return array.reshape(tensor.shape)


def as_output(name: str, value: Any, datatype: str) -> Output:
    array = np.asarray(value)
    shape = list(array.shape)
    if datatype == "BYTES":
        data: Any = [str(item) for item in array.ravel().tolist()]
    else:
        data = np.ascontiguousarray(array.astype(NUMPY_TYPES[datatype], copy=False)).ravel()
    return Output(name, datatype, shape, data)


class SklearnRuntime:
    """One 2-D input (rows of features); each output is the estimator method of its name."""

    def __init__(self, model: Any, signature: Signature) -> None:
        unknown = [o.name for o in signature.outputs if o.name not in SKLEARN_METHODS]
        if unknown or len(signature.inputs) != 1:
            raise ValueError(
                f"a scikit-learn signature has one input and outputs named after the "
                f"estimator's methods ({', '.join(SKLEARN_METHODS)}); not {unknown or 'these'}"
            )
        missing = [o.name for o in signature.outputs if not hasattr(model, o.name)]
        if missing:
            raise ValueError(f"the estimator has no method {', '.join(missing)}")
        self.model = model
        self.methods = {o.name: getattr(model, o.name) for o in signature.outputs}
        self.datatypes = {o.name: o.datatype for o in signature.outputs}

    def predict(self, inputs: list[Tensor], outputs: list[str]) -> list[Output]:
        rows = as_array(inputs[0])
        if rows.ndim == 1:
            rows = rows.reshape(-1, 1)
        return [as_output(n, self.methods[n](rows), self.datatypes[n]) for n in outputs]


class OnnxRuntime:
    def __init__(self, session: Any, signature: Signature) -> None:
        self.session = session
        self.datatypes = {o.name: o.datatype for o in signature.outputs}

    def predict(self, inputs: list[Tensor], outputs: list[str]) -> list[Output]:
        feeds = {tensor.name: as_array(tensor) for tensor in inputs}
        values = self.session.run(outputs, feeds)
        return [as_output(n, v, self.datatypes[n]) for n, v in zip(outputs, values, strict=True)]


def sklearn_signature(model: Any, datatype: str = "FP64") -> Signature:
    """What a fitted estimator says of itself: its feature count (and names), its methods."""
    features = getattr(model, "n_features_in_", None)
    if not isinstance(features, int):
        raise ValueError("the estimator is not fitted (it has no n_features_in_)")
    names = getattr(model, "feature_names_in_", None)
    classes = getattr(model, "classes_", None)
    outputs = [
        TensorSpec(
            name="predict",
            datatype=datatype_of(classes.dtype) if classes is not None else "FP64",
            shape=[-1],
        )
    ]
    if classes is not None and hasattr(model, "predict_proba"):
        outputs.append(TensorSpec(name="predict_proba", datatype="FP64", shape=[-1, len(classes)]))
    return Signature(
        inputs=[TensorSpec(name="input-0", datatype=datatype, shape=[-1, features])],
        outputs=outputs,
        features=[str(n) for n in names] if names is not None else None,
    )


def onnx_signature(session: Any) -> Signature:
    """The graph's tensor inputs and outputs; outputs that are not tensors (a ZipMap's
    sequence of maps) cannot travel in the protocol and are left out."""

    def specs(nodes: list[Any], what: str) -> list[TensorSpec]:
        found = []
        for node in nodes:
            datatype = ONNX_TYPES.get(node.type)
            if datatype is None:
                if what == "input":
                    raise ValueError(f"input {node.name!r} has type {node.type}, not a tensor")
                continue
            shape = [d if isinstance(d, int) and d >= 0 else -1 for d in node.shape]
            found.append(TensorSpec(name=node.name, datatype=datatype, shape=shape))
        return found

    return Signature(
        inputs=specs(session.get_inputs(), "input"),
        outputs=specs(session.get_outputs(), "output"),
    )
