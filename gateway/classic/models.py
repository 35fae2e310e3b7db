"""The Open Inference Protocol's answers, as /v2 returns them (and /openapi.json describes)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gateway.classic.signature import TensorSpec
from gateway.core.answers import Answer


class ServerMetadata(Answer):
    name: str
    version: str
    extensions: list[str] = Field(description="binary_tensor_data: Triton's binary tensors.")


class ServerLive(Answer):
    live: bool


class ServerReady(Answer):
    ready: bool
    not_ready: dict[str, str] = Field(
        default_factory=dict, description="Each classic model that is not ready, and why."
    )


class ModelMetadata(Answer):
    name: str
    versions: list[str] = Field(description="Versions a path may name (a label works too).")
    platform: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class ModelReady(Answer):
    name: str
    ready: bool
    reason: str | None = Field(default=None, description="Why it is not ready.")


class OutputTensor(Answer):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = Field(
        default=None, description="Row-major; absent when sent in binary."
    )
    parameters: dict[str, Any] | None = Field(
        default=None, description="binary_data_size: its bytes after the JSON."
    )


class InferAnswer(Answer):
    model_name: str
    model_version: str | None = None
    id: str = Field(description="The request's id, else the gateway's request id.")
    parameters: dict[str, Any] | None = None
    outputs: list[OutputTensor]


class V2Error(Answer):
    error: str
