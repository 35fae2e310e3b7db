"""Registered models, versions, label moves and lineage, as the store builds them, the API
returns them and the CLI prints them. What registering takes is `spec.VersionSpec`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from gateway.classic.signature import Signature
from gateway.core.answers import Answer, ObjectList


class RegistryBase(Answer):
    """Built on another registry version (resolved when registered)."""

    kind: Literal["registry"]
    name: str
    version: int
    ref: str


class ExternalBase(Answer):
    """Built on something outside the registry, named as given (e.g. gpt-4o-mini-2024-07-18)."""

    kind: Literal["external"]
    ref: str


Base = Annotated[RegistryBase | ExternalBase, Field(discriminator="kind")]


class RegistryVersion(Answer):
    name: str
    version: int
    ref: str = Field(description="NAME@VERSION")
    kind: Literal["llm", "classic"]
    alias: str = Field(description="The config model_name that serves it.")
    base: Base | None
    dataset: str | None
    dataset_hash: str | None
    hyperparameters: dict[str, Any]
    description: str | None
    tags: list[str]
    metadata: dict[str, Any]
    created_at: str
    created_by: str
    job_id: str | None = Field(
        default=None, description="The provider's fine-tuning job it was imported from."
    )
    artifact: str | None = Field(description="Classic: the artifact served in process.")
    artifact_sha256: str | None = Field(description="Checked each time it is loaded.")
    framework: str | None = Field(description="skops, onnx, joblib or pickle.")
    signature: Signature | None = Field(description="The tensors it takes and gives.")
    trusted_types: list[str] = Field(description="skops types beyond skops' own it may load.")
    trusted: bool = Field(description="A joblib or pickle artifact may be loaded.")
    feature_stats: dict[str, Any] | None = Field(
        description="The training data's per-feature statistics (the drift reference)."
    )
    expectations: dict[str, Any] | None = Field(
        default=None,
        description="Per-feature range, categories and null rate that serving checks.",
    )


class EvalLink(Answer):
    """An eval run that tested a version (GET /v1/evals/runs/{id} has all of it)."""

    id: str
    suite: str
    passed: bool
    pass_rate: float
    created_at: str


class RegistryVersionDetail(RegistryVersion):
    labels: list[str] = Field(description="The labels on this version.")
    evals: list[EvalLink] = Field(description="The latest runs that tested it, newest first.")


class RegistryModelSummary(Answer):
    name: str
    latest: int
    labels: dict[str, int] = Field(description="Label: the version it points at.")
    updated_at: str


class RegistryModelList(ObjectList[RegistryModelSummary]):
    pass


class RegistryModel(Answer):
    name: str
    latest: int
    labels: dict[str, int]
    created_at: str
    created_by: str
    updated_at: str
    versions: list[RegistryVersion]


class RegistryLabelSet(Answer):
    """The answer to moving a label (`moved` is false when it already pointed there)."""

    name: str
    label: str
    since: int | None = Field(alias="from")
    to: int
    moved: bool
    approver: str
    eval_run: str | None = Field(description="The passing run that allowed it, if required.")


class RegistryLabelMove(Answer):
    """One entry of a model's label history."""

    label: str
    since: int | None = Field(alias="from")
    to: int
    approver: str
    actor: str
    reason: str | None
    eval_suite: str | None
    eval_run: str | None
    at: str


class RegistryHistory(ObjectList[RegistryLabelMove]):
    pass


class Descendant(RegistryVersion):
    depth: int = Field(description="1: built on it directly, 2: on one of those, ...")


class Lineage(Answer):
    version: RegistryVersion
    ancestors: list[RegistryVersion] = Field(description="Its bases, nearest first.")
    descendants: list[Descendant] = Field(description="Built on it, breadth first.")
