"""What registering a version takes (the HTTP body and the CLI options both become this)."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.core.errors import BadRequest

HASH = re.compile(r"(?:sha256:)?([0-9a-fA-F]{64})")

Tag = Annotated[str, Field(min_length=1, max_length=100)]


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

    @field_validator("dataset_hash")
    @classmethod
    def _sha256(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = HASH.fullmatch(value.strip())
        if match is None:
            raise ValueError(
                "must be 'sha256:' and 64 hex digits (the CLI computes it from --dataset FILE)"
            )
        return "sha256:" + match.group(1).lower()


def check_alias(alias: str, known: Collection[str]) -> None:
    if alias not in known:
        raise BadRequest(
            f"unknown alias {alias!r}: a version must be served by a model_name of the "
            f"gateway config (known: {', '.join(sorted(known)) or 'none'})",
            param="alias",
        )
