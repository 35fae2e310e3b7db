"""What the providers need of a served classic version, whoever keeps them (the registry's
catalog, registry/served.py): its number, signature, state and loaded runtime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from gateway.classic.artifacts import PLATFORMS, Artifact
from gateway.classic.expectations import CompiledExpectations
from gateway.classic.signature import Signature
from gateway.core.errors import GatewayError

State = Literal["registered", "loading", "ready", "failed"]


class ModelNotReady(GatewayError):
    """The version exists but cannot answer now (loading), or at all (its artifact failed its
    check or does not load): the message says which. Not a fault of a remote upstream, so
    it never cools a deployment down."""

    status = 503
    type = "server_error"
    code = "model_not_ready"


@dataclass(slots=True)
class ServedVersion:
    name: str  # the registry model
    number: int
    artifact: Artifact | None
    signature: Signature | None
    state: State = "registered"
    problem: str | None = None  # why it cannot serve, once it has failed
    runtime: Any = None  # a classic.runtimes.Runtime, once ready
    expectations: CompiledExpectations | None = None  # checked on each call, when recorded

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.number}"

    @property
    def platform(self) -> str:
        return PLATFORMS.get(self.artifact.framework, "") if self.artifact else ""


class VersionSource(Protocol):
    """Resolves `NAME` and a ref (None: the version labelled production; a number; a label;
    latest) to a served version: NotFound for what does not exist, ModelNotReady for a
    version that cannot answer (yet), saying why."""

    def resolve(self, name: str, ref: str | None) -> ServedVersion: ...

    def find(self, name: str, ref: str | None) -> ServedVersion: ...

    def versions(self, name: str) -> list[int]: ...
