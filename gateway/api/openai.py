"""The OpenAI-compatible surface: thin adapters that read the body, run the call pipeline and
encode its answer (chat completions as JSON or SSE, embeddings), and the model list."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.api.deps import CallerDep, StateDep, read_json
from gateway.api.event_stream import EventStreamResponse
from gateway.calls.pipeline import Call, Pipeline
from gateway.calls.record import CallRecord
from gateway.calls.streaming import relay
from gateway.core.answers import Answer, ObjectList
from gateway.core.errors import ModelNotFound
from gateway.identity.auth import Caller
from gateway.prompts.calling import prompt_ref
from gateway.providers.classic import is_classic
from gateway.registry.llm_versions import is_registry_ref
from gateway.routing.router import Routed
from gateway.state import GatewayState

router = APIRouter()


async def chat_completions(
    request: Request, state: GatewayState, caller: Caller, record: CallRecord
) -> Response:
    body, size = await read_json(request)
    call = Call("chat", body, size, caller, record, prompt=prompt_ref(body, request.headers))
    pipeline = state.calls
    await pipeline.admit(call, request.headers)
    if call.body.get("stream"):
        options = call.body.get("stream_options") or {}
        wants_usage = options.get("include_usage") is True
        # Always ask for usage so streamed calls are priced from real counts.
        call.body = {**call.body, "stream_options": {**options, "include_usage": True}}
        opened = await pipeline.open_stream(call)
        headers = _headers(call, opened)
        headers["cache-control"] = "no-cache"
        return EventStreamResponse(relay(pipeline, call, opened, not wants_usage), headers)
    routed = await pipeline.complete(call)
    return Response(
        routed.value.body, media_type="application/json", headers=_headers(call, routed)
    )


async def embeddings(
    request: Request, state: GatewayState, caller: Caller, record: CallRecord
) -> Response:
    body, size = await read_json(request)
    call = Call("embeddings", body, size, caller, record)
    await state.calls.admit(call, request.headers)
    routed = await state.calls.complete(call)
    return Response(
        routed.value.body, media_type="application/json", headers=_headers(call, routed)
    )


def _json(call: Call, routed: Routed[Any]) -> Response:
    return Response(
        routed.value.body, media_type="application/json", headers=_headers(call, routed)
    )


def _headers(call: Call, routed: Routed[Any]) -> dict[str, str]:
    record = call.record
    overhead = Pipeline.overhead_ms(record, routed.upstream_seconds)
    headers = {"x-gateway-model": routed.deployment.id, "x-gateway-overhead-ms": f"{overhead:.3f}"}
    if call.admission is not None:
        headers.update(call.admission.headers())
    if not record.stream:
        headers["x-gateway-cost-usd"] = f"{record.cost:.10f}"
    if record.prompt_name is not None:
        headers["x-gateway-prompt"] = f"{record.prompt_name}@{record.prompt_version}"
    if record.model_version is not None:  # a registry version was named: registry/NAME@REF
        headers["x-gateway-model-version"] = record.model_version
    return headers


class Model(Answer):
    """A model alias, as OpenAI's `GET /v1/models` describes one."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "gateway"


@router.get("/v1/models")
@router.get("/models", include_in_schema=False)
async def list_models(state: StateDep, caller: CallerDep) -> ObjectList[Model]:
    key, routes = caller.key, state.router
    # Classic models (and aliases of them) answer /v2 infer, not the OpenAI API.
    classic = state.classic_aliases
    names = [name for name in routes.listed() if routes.names.target(name) not in classic]
    if key is not None and key.models:
        names = [name for name in names if routes.permits(name, key.allows_model)]
    return ObjectList(data=[Model(id=name) for name in names])


@router.get("/v1/models/{model:path}")
async def get_model(model: str, state: StateDep, caller: CallerDep) -> Model:
    alias = model
    if is_registry_ref(model) and state.router.names.find(model) is None:
        alias = state.llm_versions.resolve(model).alias  # raises the 404 naming what is missing
    served = state.router.states(alias)  # raises the 404 for names no deployment serves
    if is_classic(served[0].deployment):  # not listed above either: /v2 is its API
        raise ModelNotFound(
            f"{model!r} is a classic model, not an OpenAI one: GET /v2/models/{model} describes it",
            param="model",
        )
    key = caller.key
    if key is not None and key.models and not state.router.permits(alias, key.allows_model):
        caller.check_model(alias)  # raises the refusal
    return Model(id=model)
