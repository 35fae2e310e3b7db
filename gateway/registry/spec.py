"""What registering a version takes (the HTTP body and the CLI options both become this)."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.classic.artifacts import Framework
from gateway.classic.expectations import Expectations
from gateway.classic.signature import Signature
from gateway.core.errors import BadRequest

HASH = re.compile(r"(?:sha256:)?([0-9a-fA-F]{64})")

Tag = Annotated[str, Field(min_length=1, max_length=100)]
CLASSIC_FIELDS = (
    "artifact",
    "artifact_sha256",
    "framework",
    "signature",
    "feature_stats",
    "expectations",
)


def sha256_hash(value: str | None) -> str | None:
    if value is None:
        return None
    match = HASH.fullmatch(value.strip())
    if match is None:
        raise ValueError("must be 'sha256:' and 64 hex digits (the CLI computes it from the file)")
    return "sha256:" + match.group(1).lower()


class VersionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    alias: str = Field(min_length=1, max_length=200)  # the model_name in config that serves it
    # Classic models (served over /v2 infer) will be registered the same way.
    kind: Literal["llm", "classic"] = "llm"
    # "NAME@REF" of another registry version, or free text naming an external base model.
    base: str | None = Field(default=None, min_length=1, max_length=500)
    dataset: str | None = Field(default=None, min_length=1, max_length=1000)  # URI or path
    dataset_hash: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    description: str | None = Field(default=None, max_length=10_000)
    tags: list[Tag] = Field(default_factory=list, max_length=100)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_by: str | None = Field(default=None, min_length=1, max_length=200)
    # The provider's job it came from (OpenAI's ftjob-...): a job registers one version only.
    job_id: str | None = Field(default=None, min_length=1, max_length=200)
    # Classic versions served in process: the artifact (a path or file:// URI on the gateway's
    # machine) and its sha256, checked whenever it is loaded; how it is saved; its signature.
    artifact: str | None = Field(default=None, min_length=1, max_length=1000)
    artifact_sha256: str | None = None
    framework: Framework | None = None
    signature: Signature | None = None
    # skops: types beyond skops' own trusted set that loading may create (reviewed by whoever
    # registers it). trusted: a joblib or pickle artifact may be loaded at all.
    trusted_types: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=list, max_length=1000
    )
    trusted: bool = False
    # The training data's per-feature statistics: the reference for drift.
    feature_stats: dict[str, Any] | None = None
    # Per-feature range, categories and null rate of the training data; serving counts calls
    # that break them, and refuses them where `enforce` says so (classic/expectations.py).
    expectations: Expectations | None = None

    @field_validator("dataset_hash", "artifact_sha256")
    @classmethod
    def _sha256(cls, value: str | None) -> str | None:
        return sha256_hash(value)

    @model_validator(mode="after")
    def _classic_fields(self) -> VersionSpec:
        if self.kind == "llm":
            given = [name for name in CLASSIC_FIELDS if getattr(self, name) is not None]
            if given or self.trusted or self.trusted_types:
                raise ValueError(
                    f"{', '.join(given) or 'trusted'}: for classic versions (kind: classic)"
                )
        if self.artifact is not None:
            missing = [
                name
                for name in ("artifact_sha256", "framework", "signature")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"an artifact needs {', '.join(missing)} too (the CLI reads them from the "
                    f"file: gateway registry register NAME --kind classic --artifact FILE)"
                )
        if self.expectations is not None:
            self.expectations.check_features(self.signature)
        return self


def check_alias(alias: str, known: Collection[str]) -> None:
    if alias not in known:
        raise BadRequest(
            f"unknown alias {alias!r}: a version must be served by a model_name of the "
            f"gateway config (known: {', '.join(sorted(known)) or 'none'})",
            param="alias",
        )
