"""The Open Inference Protocol (KServe v2) for classic models: server and model metadata,
health and readiness, and infer, a thin adapter over the call pipeline (so keys, limits,
budgets, routing, the request log, metrics and traces come with it).

Errors on /v2 take the protocol's own shape, `{"error": "..."}`, with the status that says
what happened (400 bad tensors, 401/403, 404 unknown model or version, 429, 503 not ready).
Triton's binary tensor extension is spoken both ways: tritonclient uses it by default.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.api.deps import CallerDep, StateDep
from gateway.calls.pipeline import Call, Pipeline
from gateway.calls.record import CallRecord
from gateway.classic.encoding import HEADER_LENGTH, encode_answer
from gateway.classic.models import (
    InferAnswer,
    ModelMetadata,
    ModelReady,
    ServerLive,
    ServerMetadata,
    ServerReady,
    V2Error,
)
from gateway.classic.serving import ModelNotReady
from gateway.classic.signature import TensorSpec
from gateway.classic.tensors import decode_request
from gateway.core.errors import BadRequest, GatewayError, ModelNotFound
from gateway.identity.auth import Caller
from gateway.observability.redact import redacted_body
from gateway.providers import Deployment
from gateway.providers.classic import Prediction, is_classic, model_path
from gateway.routing.router import Routed
from gateway.state import GatewayState

router = APIRouter(prefix="/v2", tags=["inference (v2)"])
EXTENSIONS = ["binary_tensor_data"]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": V2Error, "description": what}
    for code, what in (
        (400, "Bad tensors: the message names the input, what was expected and what came."),
        (401, "No key, or an unknown one."),
        (403, "The key may not use this model."),
        (404, "No such classic model or version."),
        (503, "The model is not ready: the message says why."),
    )
}


def v2_error(error: GatewayError) -> Response:
    """The protocol's error shape; the status and headers (retry-after...) as for /v1."""
    return Response(
        orjson.dumps({"error": error.message}),
        status_code=error.status,
        media_type="application/json",
        headers=error.headers,
    )


# --- infer (dispatched by the edge, see api/proxied.py) ------------------------------------------


async def infer(
    request: Request, state: GatewayState, caller: Caller, record: CallRecord
) -> Response:
    name = request.path_params["model_name"]
    version = request.path_params.get("model_version")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise BadRequest(
            f"Content-Encoding {encoding!r} is not accepted: send the request uncompressed"
        )
    raw = await request.body()
    # Any Content-Type is read as JSON, as KServe and Triton read it (the protocol names none,
    # and their documented curl calls send none: curl -d says form-urlencoded).
    try:
        body, binary = _split_body(raw, request.headers.get(HEADER_LENGTH))
        tensors = decode_request(body, binary)
    except BadRequest:
        state.calls.infer_target(caller, name)  # an unknown model: its 404, whatever was sent
        raise
    call = Call("infer", body, len(raw), caller, record, alias=name, version=version, infer=tensors)
    await state.calls.admit(call, request.headers)
    routed = await state.calls.predict(call)
    prediction = routed.value
    assert call.infer is not None
    head: dict[str, Any] = {"model_name": name}
    if prediction.model_version is not None:
        head["model_version"] = prediction.model_version
    head["id"] = call.infer.id if call.infer.id is not None else record.request_id
    if prediction.parameters:
        head["parameters"] = prediction.parameters
    answer, json_length = encode_answer(head, prediction.outputs, call.infer)
    headers = _headers(call, routed)
    if json_length is None:
        if call.logs_bodies:
            record.response_body = redacted_body(answer)
        return Response(answer, media_type="application/json", headers=headers)
    headers[HEADER_LENGTH] = str(json_length)
    return Response(answer, media_type="application/octet-stream", headers=headers)


def _split_body(raw: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes | None]:
    """The JSON request and, with the binary extension, the bytes after it."""
    binary = None
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            length = -1
        if not 0 < length <= len(raw):
            raise BadRequest(
                f"Inference-Header-Content-Length must be the JSON part's length in bytes "
                f"(1 to {len(raw)}), not {header_length!r}"
            )
        raw, binary = raw[:length], raw[length:]
    if not raw:
        raise BadRequest("the request body is empty: send an inference request (JSON)")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object {inputs: [...]}")
    return body, binary


def _headers(call: Call, routed: Routed[Prediction]) -> dict[str, str]:
    record = call.record
    overhead = Pipeline.overhead_ms(record, routed.upstream_seconds)
    headers = {
        "x-gateway-model": routed.deployment.id,
        "x-gateway-overhead-ms": f"{overhead:.3f}",
        "x-gateway-cost-usd": f"{record.cost:.10f}",
    }
    if record.model_version is not None:
        headers["x-gateway-model-version"] = record.model_version
    if call.admission is not None:
        headers.update(call.admission.headers())
    return headers


# --- server metadata and health (no key: probes) -----------------------------------------


def _version() -> str:
    try:
        return importlib.metadata.version("llmops-gateway")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@router.get("", responses=ERRORS)
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name="llmops-gateway", version=_version(), extensions=EXTENSIONS)


@router.get("/health/live")
async def server_live() -> ServerLive:
    return ServerLive(live=True)


@router.get("/health/ready", responses={503: {"model": ServerReady, "description": "Not ready."}})
async def server_ready(state: StateDep, response: Response) -> ServerReady:
    """Ready when every classic model served in process has its default version (the one
    labelled production) loaded; the others are listed with why."""
    not_ready = {}
    for alias in state.router.aliases():
        deployment = state.router.states(alias)[0].deployment
        if deployment.provider == "registry":
            try:
                state.providers.classic.check_ready(deployment, None)
            except GatewayError as exc:
                not_ready[alias] = exc.message
    if not_ready:
        response.status_code = 503
    return ServerReady(ready=not not_ready, not_ready=not_ready)


# --- model metadata and readiness (a key that may use the model) -------------------------------


def _classic(state: GatewayState, caller: Caller, name: str) -> Deployment:
    """The model's first deployment; 404 unless it is a classic model, 403 unless the key
    may use it."""
    try:
        deployment = state.router.states(name)[0].deployment
    except ModelNotFound:
        deployment = None
    if deployment is None or not is_classic(deployment):
        served = ", ".join(a for a in state.router.aliases() if a in state.classic_aliases)
        raise ModelNotFound(
            f"No classic model named {name!r} (classic models here: {served or 'none'}).",
            param="model",
        )
    caller.check_model(name)
    return deployment


async def _metadata(
    name: str, version: str | None, state: GatewayState, caller: Caller
) -> ModelMetadata:
    deployment = _classic(state, caller, name)
    classic = state.providers.classic
    if deployment.provider == "registry":
        versions = state.classic_versions
        served = versions.find(deployment.upstream_model, version)
        signature = served.signature
        return ModelMetadata(
            name=name,
            versions=[str(v) for v in versions.versions(deployment.upstream_model)],
            platform=served.platform,
            inputs=signature.inputs if signature else [],
            outputs=signature.outputs if signature else [],
        )
    if deployment.provider == "mlflow":
        return ModelMetadata(name=name, versions=[], platform="mlflow", inputs=[], outputs=[])
    status, found = await classic.remote_get(
        deployment, model_path(deployment.upstream_model, version)
    )
    if status != 200 or not isinstance(found, dict):
        said = found.get("error") if isinstance(found, dict) else found
        raise ModelNotReady(f"model {name!r}: its server answered {status}: {said}")
    try:
        return ModelMetadata(
            name=name,
            versions=[str(v) for v in found.get("versions") or []],
            platform=str(found.get("platform") or ""),
            inputs=[TensorSpec.model_validate(t) for t in found.get("inputs") or []],
            outputs=[TensorSpec.model_validate(t) for t in found.get("outputs") or []],
        )
    except ValueError:
        raise ModelNotReady(f"model {name!r}: its server's metadata is malformed") from None


async def _ready(
    name: str, version: str | None, state: GatewayState, caller: Caller, response: Response
) -> ModelReady:
    deployment = _classic(state, caller, name)
    reason = None
    if deployment.provider == "registry":
        try:
            state.providers.classic.check_ready(deployment, version)
        except ModelNotReady as exc:
            reason = exc.message
    else:
        path = (
            "/ping"
            if deployment.provider == "mlflow"
            else (model_path(deployment.upstream_model, version) + "/ready")
        )
        status, found = await state.providers.classic.remote_get(deployment, path)
        if status != 200:
            said = found.get("error") if isinstance(found, dict) else found
            reason = f"its server answered {status}" + (f": {said}" if said else "")
    if reason is not None:
        response.status_code = 503
    return ModelReady(name=name, ready=reason is None, reason=reason)


NOT_READY = {**ERRORS, 503: {"model": ModelReady, "description": "Not ready, and why."}}


@router.get("/models/{model_name:path}/versions/{model_version}/ready", responses=NOT_READY)
async def version_ready(
    model_name: str, model_version: str, state: StateDep, caller: CallerDep, response: Response
) -> ModelReady:
    return await _ready(model_name, model_version, state, caller, response)


@router.get("/models/{model_name:path}/versions/{model_version}", responses=ERRORS)
async def version_metadata(
    model_name: str, model_version: str, state: StateDep, caller: CallerDep
) -> ModelMetadata:
    return await _metadata(model_name, model_version, state, caller)


@router.get("/models/{model_name:path}/ready", responses=NOT_READY)
async def model_ready(
    model_name: str, state: StateDep, caller: CallerDep, response: Response
) -> ModelReady:
    return await _ready(model_name, None, state, caller, response)


@router.get("/models/{model_name:path}", responses=ERRORS)
async def model_metadata(model_name: str, state: StateDep, caller: CallerDep) -> ModelMetadata:
    return await _metadata(model_name, None, state, caller)


__all__ = ["InferAnswer", "infer", "router", "v2_error"]
