"""Classic models as deployments of the router, so they get its retries, timeouts, cooldowns
and fallbacks like any other:

- `registry/NAME` runs a version of registry model NAME in this process: its artifact,
  loaded by the registry's catalog (registry/served.py), predicts in a worker thread;
- `v2/NAME` calls model NAME of another Open Inference Protocol server (KServe, MLServer,
  Triton) at `api_base`, in JSON;
- `mlflow/NAME` calls an MLflow scoring server's `/invocations` at `api_base`, the inputs
  sent as a `dataframe_split`.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from gateway.classic.batching import Batcher, Predict
from gateway.classic.serving import ServedVersion, VersionSource
from gateway.classic.tensors import InferRequest, Output, Tensor, flat_values
from gateway.core.config import CLASSIC_PROVIDERS
from gateway.core.errors import BadRequest, GatewayError, UpstreamError
from gateway.providers.base import Deployment, Reply, Stream
from gateway.providers.errors import status_error, translate_http_errors, where
from gateway.transport.http_client import HTTPClient

# Predictions running at once in this process; more wait for a thread (each one holds the
# GIL for its Python part, so more threads than cores buy nothing, and measured on two cores,
# 1 or 4 threads served one-row calls alike).
PREDICT_THREADS = min(4, os.cpu_count() or 1)
# Binary-extension parameters are the gateway's business with its own client; a remote
# server is always spoken to in JSON.
BINARY_PARAMETERS = ("binary_data_size", "binary_data", "binary_data_output")


@dataclass(slots=True)
class Prediction:
    outputs: list[Output]
    model_version: str | None  # what the answer's model_version says
    version_ref: str | None  # the registry version (NAME@N), for the request log
    rows: int
    parameters: dict[str, Any] | None
    upstream_seconds: float
    # For drift monitoring: the model where it ran (the registry model, or the remote
    # server's) and the names of a 2-D input's columns, when known.
    name: str = ""
    features: list[str] | None = None


class ModelFailed(GatewayError):
    """The model itself raised while predicting (not on the caller's input)."""

    status = 500
    type = "server_error"
    code = "model_failed"


def is_classic(deployment: Deployment) -> bool:
    return deployment.provider in CLASSIC_PROVIDERS


class ClassicProvider:
    def __init__(self, versions: VersionSource | None, max_response_bytes: int) -> None:
        self.versions = versions
        self.max_response_bytes = max_response_bytes
        self._threads: ThreadPoolExecutor | None = None
        self._batchers: dict[tuple[str, str], Batcher] = {}
        self._http: HTTPClient | None = None
        self._metadata_client: Any = None

    # --- what LLM deployments answer: refused, with where to go instead -----------------------
    @staticmethod
    def _not_an_llm(deployment: Deployment) -> BadRequest:
        return BadRequest(
            f"model {deployment.alias!r} is a classic model: call POST "
            f"/v2/models/{deployment.alias}/infer (Open Inference Protocol)",
            param="model",
        )

    async def chat(self, deployment: Deployment, body: dict[str, Any]) -> Reply:
        raise self._not_an_llm(deployment)

    async def open_stream(self, deployment: Deployment, body: dict[str, Any]) -> Stream:
        raise self._not_an_llm(deployment)

    async def embeddings(self, deployment: Deployment, body: dict[str, Any]) -> Reply:
        raise self._not_an_llm(deployment)

    # --- predictions ----------------------------------------------------------------------------
    def _versions(self, deployment: Deployment) -> VersionSource:
        if self.versions is None:
            raise ModelFailed(f"model {deployment.alias!r}: no registry catalog is running")
        return self.versions

    def check_ready(self, deployment: Deployment, version: str | None) -> ServedVersion:
        """The `registry/` deployment's version, ready to predict (else 404 or 503, why)."""
        return self._versions(deployment).resolve(deployment.upstream_model, version)

    def check(
        self, deployment: Deployment, version: str | None, request: InferRequest
    ) -> ServedVersion | None:
        """Before anything is reserved: the version a `registry/` deployment serves (404 or
        503 saying why when it cannot), with the request checked against its signature (400
        naming the input). Remote servers check their own."""
        if deployment.provider != "registry":
            return None
        served = self.check_ready(deployment, version)
        assert served.signature is not None  # a version without one never becomes ready
        served.signature.check(request)
        return served

    async def infer(
        self,
        deployment: Deployment,
        request: InferRequest,
        version: str | None,
        checked: ServedVersion | None = None,
    ) -> Prediction:
        if deployment.provider == "registry":
            if checked is None or checked.name != deployment.upstream_model:
                checked = self.check(deployment, version, request)
            assert checked is not None
            return await self._local(deployment, request, checked)
        if deployment.provider == "v2":
            return await self._v2(deployment, request, version)
        return await self._mlflow(deployment, request)

    async def _local(
        self, deployment: Deployment, request: InferRequest, served: ServedVersion
    ) -> Prediction:
        assert served.signature is not None
        names = request.output_names() or served.signature.output_names()
        started = time.perf_counter()
        try:
            outputs = await self._predictor(deployment, served)(request.inputs, names)
        except (ValueError, TypeError) as exc:  # the estimator's refusal of these values
            raise BadRequest(
                f"model {deployment.alias!r} ({served.ref}) refused the input: {exc}",
                param="inputs",
            ) from None
        except Exception as exc:
            raise ModelFailed(
                f"model {deployment.alias!r} ({served.ref}) failed: {type(exc).__name__}",
                detail=f"{served.ref}: {type(exc).__name__}: {exc}",
            ) from None
        seconds = time.perf_counter() - started
        return Prediction(
            outputs,
            str(served.number),
            served.ref,
            request.rows,
            None,
            seconds,
            served.name,
            served.signature.features,
        )

    def _predictor(self, deployment: Deployment, served: ServedVersion) -> Predict:
        """The version's predict in a worker thread; behind a batcher when configured."""
        runtime = served.runtime

        async def in_thread(inputs: list[Tensor], outputs: list[str]) -> list[Output]:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(PREDICT_THREADS, thread_name_prefix="predict")
            loop = asyncio.get_running_loop()
            found: list[Output] = await loop.run_in_executor(
                self._threads, runtime.predict, inputs, outputs
            )
            return found

        if not deployment.max_batch_size:
            return in_thread
        key = (deployment.id, served.ref)
        batcher = self._batchers.get(key)
        if batcher is None:
            batcher = Batcher(in_thread, deployment.max_batch_size, deployment.max_batch_time)
            self._batchers[key] = batcher
        return batcher

    # --- remote servers -------------------------------------------------------------------------
    def _client(self) -> HTTPClient:
        if self._http is None:
            self._http = HTTPClient()  # in the loop that serves the calls
        return self._http

    @staticmethod
    def _headers(deployment: Deployment) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        headers.update((k.lower(), v) for k, v in deployment.extra_headers.items())
        if deployment.api_key:
            headers["authorization"] = f"Bearer {deployment.api_key}"
        return headers

    @staticmethod
    def _base(deployment: Deployment) -> str:
        if not deployment.api_base:
            raise UpstreamError(
                f"model {deployment.alias!r} has no upstream address; tell the operator",
                detail=f"{where(deployment)} has no api_base",
            )
        return deployment.api_base.rstrip("/")

    async def _post(
        self, deployment: Deployment, path: str, payload: dict[str, Any]
    ) -> tuple[Any, float]:
        started = time.perf_counter()
        with translate_http_errors(deployment):
            response = await self._client().post(
                self._base(deployment) + path,
                self._headers(deployment),
                orjson.dumps(payload),
                total=deployment.timeout,
            )
            raw = await response.read(self.max_response_bytes)
            if response.status >= 300:
                raise status_error(response.status, response.headers, raw, deployment)
        try:
            return orjson.loads(raw), time.perf_counter() - started
        except orjson.JSONDecodeError:
            raise _malformed(deployment, f"invalid JSON: {raw[:200]!r}") from None

    async def _v2(
        self, deployment: Deployment, request: InferRequest, version: str | None
    ) -> Prediction:
        path = model_path(deployment.upstream_model, version) + "/infer"
        payload: dict[str, Any] = {"inputs": [_json_input(t) for t in request.inputs]}
        if request.id is not None:
            payload["id"] = request.id
        parameters = _without_binary(request.parameters)
        if parameters:
            payload["parameters"] = parameters
        if request.outputs is not None:
            payload["outputs"] = [{"name": o.name} for o in request.outputs]
        answer, seconds = await self._post(deployment, path, payload)
        outputs = _v2_outputs(answer, deployment)
        model_version = answer.get("model_version")
        model_version = str(model_version) if model_version is not None else None
        ref = f"{deployment.upstream_model}@{model_version}" if model_version else None
        parameters = (
            answer.get("parameters") if isinstance(answer.get("parameters"), dict) else None
        )
        return Prediction(
            outputs,
            model_version,
            ref,
            request.rows,
            parameters,
            seconds,
            deployment.upstream_model,
            _columns(request),
        )

    async def _mlflow(self, deployment: Deployment, request: InferRequest) -> Prediction:
        answer, seconds = await self._post(
            deployment, "/invocations", {"dataframe_split": dataframe_split(request)}
        )
        predictions = answer.get("predictions") if isinstance(answer, dict) else None
        outputs = predictions_as_outputs(predictions, deployment)
        return Prediction(
            outputs,
            None,
            None,
            request.rows,
            None,
            seconds,
            deployment.upstream_model,
            _columns(request),
        )

    # --- metadata and readiness of remote models (not the request path) -----------------------
    async def remote_get(self, deployment: Deployment, path: str) -> tuple[int, Any]:
        """GET a remote model's metadata or ready answer: (status, JSON or None); a server
        that cannot be reached is (503, its reason)."""
        import httpx

        if self._metadata_client is None:
            self._metadata_client = httpx.AsyncClient()
        try:
            response = await self._metadata_client.get(
                self._base(deployment) + path,
                headers=self._headers(deployment),
                timeout=deployment.timeout,
            )
        except httpx.HTTPError as exc:
            return 503, f"{type(exc).__name__}"
        except GatewayError as exc:
            return 503, exc.message
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._metadata_client is not None:
            await self._metadata_client.aclose()
            self._metadata_client = None
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None


def model_path(name: str, version: str | None) -> str:
    path = f"/v2/models/{quote(name, safe='')}"
    return path + (f"/versions/{quote(version, safe='')}" if version else "")


def _without_binary(parameters: dict[str, Any] | None) -> dict[str, Any] | None:
    if not parameters:
        return None
    return {k: v for k, v in parameters.items() if k not in BINARY_PARAMETERS}


def _json_input(tensor: Tensor) -> dict[str, Any]:
    item: dict[str, Any] = {
        "name": tensor.name,
        "shape": list(tensor.shape),
        "datatype": tensor.datatype,
        "data": flat_values(tensor),
    }
    parameters = _without_binary(tensor.parameters)
    if parameters:
        item["parameters"] = parameters
    return item


def _columns(request: InferRequest) -> list[str] | None:
    """The column names a caller gave its one 2-D input (`parameters.columns`, as MLflow
    takes them), for drift."""
    if len(request.inputs) != 1:
        return None
    columns = (request.inputs[0].parameters or {}).get("columns")
    if isinstance(columns, list) and all(isinstance(c, str) for c in columns):
        return columns
    return None


def _malformed(deployment: Deployment, what: str) -> UpstreamError:
    return UpstreamError(
        f"the upstream of model {deployment.alias!r} answered with something that is not an "
        f"inference answer; tell the operator",
        detail=f"{where(deployment)}: {what}",
    )


def _v2_outputs(answer: Any, deployment: Deployment) -> list[Output]:
    tensors = answer.get("outputs") if isinstance(answer, dict) else None
    if not isinstance(tensors, list):
        raise _malformed(deployment, "no 'outputs' list")
    outputs = []
    for tensor in tensors:
        if not (
            isinstance(tensor, dict)
            and isinstance(tensor.get("name"), str)
            and isinstance(tensor.get("datatype"), str)
            and isinstance(tensor.get("shape"), list)
            and isinstance(tensor.get("data"), list)
        ):
            raise _malformed(deployment, f"an output is not a JSON tensor: {str(tensor)[:200]}")
        outputs.append(Output(tensor["name"], tensor["datatype"], tensor["shape"], tensor["data"]))
    return outputs


def dataframe_split(request: InferRequest) -> dict[str, Any]:
    """MLflow's pandas `split` orientation: one 2-D input is the frame's rows (its
    `parameters.columns`, when given, name them); several 1-D inputs are one column each,
    named after the input."""
    inputs = request.inputs
    if len(inputs) == 1 and len(inputs[0].shape) == 2:
        tensor = inputs[0]
        width = tensor.shape[1]
        values = flat_values(tensor)
        frame: dict[str, Any] = {
            "data": [values[i : i + width] for i in range(0, len(values), width)]
        }
        columns = (tensor.parameters or {}).get("columns")
        if isinstance(columns, list):
            frame["columns"] = columns
        return frame
    rows = {t.rows for t in inputs}
    if len(rows) != 1 or any(len(t.shape) > 2 or t.rows != len(flat_values(t)) for t in inputs):
        raise BadRequest(
            "an MLflow model takes one 2-D input (rows of features) or 1-D inputs of equal "
            "length (one per column)",
            param="inputs",
        )
    columns = [flat_values(t) for t in inputs]
    return {
        "columns": [t.name for t in inputs],
        "data": [list(r) for r in zip(*columns, strict=True)],
    }


def _datatype(values: list[Any]) -> str:
    kinds = {type(v) for v in values}
    if kinds <= {bool}:
        return "BOOL"
    if kinds <= {int}:
        return "INT64"
    if kinds <= {int, float}:
        return "FP64"
    if kinds <= {str}:
        return "BYTES"
    raise ValueError(f"values of mixed or unknown kinds: {sorted(k.__name__ for k in kinds)}")


def predictions_as_outputs(predictions: Any, deployment: Deployment) -> list[Output]:
    """MLflow's `predictions`: a list (of values, or of rows of values) is one output
    "predictions"; an object of columns is one output per column."""
    columns: list[tuple[Any, Any]]
    if isinstance(predictions, dict):
        columns = list(predictions.items())
    elif isinstance(predictions, list):
        columns = [("predictions", predictions)]
    else:
        raise _malformed(deployment, "no 'predictions' list or object")
    outputs = []
    for name, values in columns:
        if not isinstance(values, list):
            raise _malformed(deployment, f"predictions {name!r} is not a list")
        shape = [len(values)]
        flat = values
        if values and all(isinstance(v, list) for v in values):
            widths = {len(v) for v in values}
            if len(widths) != 1:
                raise _malformed(deployment, f"predictions {name!r} has rows of unequal length")
            shape.append(widths.pop())
            flat = [item for row in values for item in row]
        try:
            datatype = _datatype(flat)
        except ValueError as exc:
            raise _malformed(deployment, f"predictions {name!r}: {exc}") from None
        outputs.append(Output(str(name), datatype, shape, flat))
    return outputs
