"""Prompts, their versions and label moves, as the API takes and returns them and the CLI
prints them. The store builds these; the routes return them as they are."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from gateway.core.answers import Answer, ObjectList


class VersionTarget(Answer):
    """A label on one version."""

    version: str

    def __str__(self) -> str:
        return self.version


class WeightedTarget(Answer):
    """A label that splits traffic across versions by relative weight."""

    weights: dict[str, float]

    def __str__(self) -> str:
        return "+".join(f"{v}:{w:g}" for v, w in self.weights.items())


LabelTarget = VersionTarget | WeightedTarget


class PromptSummary(Answer):
    name: str
    labels: dict[str, LabelTarget]
    versions: int = Field(description="How many versions are registered.")
    latest: str | None
    description: str | None
    model: str | None
    file_removed: bool = Field(
        default=False,
        description="The last sync found no file for this prompt; latest stays on its last "
        "version and labels keep serving until moved.",
    )


class PromptList(ObjectList[PromptSummary]):
    errors: list[str] = Field(description="Files that failed validation at the last sync.")


class ProductionVersion(Answer):
    version: str
    front_matter: dict[str, Any]
    template: str


class PromptDetail(PromptSummary):
    production: ProductionVersion


class SyncResult(Answer):
    registered: list[str] = Field(description="NAME@VERSION of each new version.")
    unchanged: list[str]
    latest_moved: list[str] = Field(
        default_factory=list,
        description="NAME@VERSION where latest moved back to a version registered before "
        "(the file on disk is that version again).",
    )
    removed: list[str] = Field(
        default_factory=list,
        description="Prompts registered before whose file is gone; latest stays where it was.",
    )
    errors: list[str]


class PromptVersion(Answer):
    name: str
    version: str
    path: str | None = Field(description="Relative to the prompts folder.")
    git_commit: str | None
    git_author: str | None
    git_message: str | None
    created_at: str


class PromptVersionText(PromptVersion):
    content: str
    includes: dict[str, Any] | None = Field(
        default=None,
        description="The partials ({name: source}) and named schemas ({name: JSON Schema}) "
        "the version includes; null for a version registered before the gateway rendered as "
        "Dotprompt does (it renders as it did then).",
    )


class PromptVersionList(ObjectList[PromptVersion]):
    pass


class PromptDiff(Answer):
    since: str = Field(alias="from")
    to: str
    diff: str = Field(description="Unified diff.")


class RenderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    label: str | None = None
    version: str | None = None
    variables: Any = Field(
        default_factory=dict,
        description="An object of named values (one value for an input schema of one value).",
    )
    context: dict[str, Any] = Field(
        default_factory=dict, description="The `@` data, as a call's prompt.context."
    )
    messages: list[dict[str, Any]] = Field(
        default_factory=list, description="A call's own messages, placed as history."
    )
    user: str | None = None


class RenderedPrompt(Answer):
    name: str
    version: str
    model: str | None
    config: dict[str, Any]
    messages: list[dict[str, Any]]
    ext: dict[str, Any] = Field(
        default_factory=dict, description="Dotprompt's namespaced front matter (team.owner)."
    )


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=2000)
    actor: str | None = Field(default=None, max_length=200)


class PromptLabelMoved(Answer):
    name: str
    label: str
    since: LabelTarget | None = Field(alias="from")
    to: LabelTarget


class PromptLabelMove(Answer):
    """One entry of a prompt's label history."""

    label: str
    since: LabelTarget | None = Field(alias="from")
    to: LabelTarget
    actor: str
    reason: str | None
    at: str


class PromptHistory(ObjectList[PromptLabelMove]):
    pass


_TARGET: TypeAdapter[LabelTarget] = TypeAdapter(LabelTarget)


def as_target(stored: Mapping[str, Any]) -> LabelTarget:
    """A label's target as the store keeps it ({"version": ...} or {"weights": ...})."""
    return _TARGET.validate_python(stored)
