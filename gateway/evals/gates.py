"""Promotion: a label move, and the gate it passes. Prompts and registry models, moved over
HTTP or with the CLI, all go through `require_passing_runs`: a label moves only to versions
with a passing run of the required suite, and a refusal names the command that allows it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from gateway.core.errors import BadRequest, PermissionDenied
from gateway.core.model_refs import eval_version
from gateway.evals.store import EvalStore

EVAL_REQUIRED = "eval_required"


class LabelMove(BaseModel):
    """Moving a label, for prompts (POST /v1/prompts/{name}/labels) and registry models
    (PUT /v1/registry/models/{name}/labels/{label}); each takes the fields its history keeps
    and refuses the others by name."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # pydantic matches with Rust's regex, where `$` is the end of the text ("prod\n" fails).
    label: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Prompts: the label to move (a registry label is named in the path).",
    )
    version: Annotated[str, Field(max_length=64)] | int | None = Field(
        default=None,
        description="The version to point at: a prompt's version id, a registry version number.",
    )
    weights: dict[str, float] | None = Field(
        default=None,
        max_length=100,
        description="Prompts: split traffic across versions by relative weight.",
    )
    approver: str | None = Field(
        default=None, max_length=200, description="Registry: who signed the move off (required)."
    )
    actor: str | None = Field(
        default=None, max_length=200, description="Prompts: who moved it, for the history."
    )
    reason: str | None = Field(default=None, max_length=2000)
    require_eval: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="A suite (name or evals/NAME.yaml) that must have passed the version(s).",
    )

    @field_validator("version", mode="wrap")
    @classmethod
    def _one_error(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:  # one message for the field, not one per member of the union
            raise ValueError(
                "must be a version id (a string of at most 64 characters) or a version number"
            ) from None

    def takes_only(self, route: str, *names: str) -> None:
        """Refuses, by name, a field given that this route does not take."""
        for name in type(self).model_fields:
            if name not in names and name in self.model_fields_set:
                raise BadRequest(
                    f"{name}: {route} label moves take {', '.join(names)}; not {name!r}.",
                    param=name,
                )


def suite_name(suite: str) -> str:
    """`evals/support-triage.yaml` and `support-triage` name the same suite."""
    return Path(suite).stem


@dataclass(frozen=True, slots=True)
class PromotedVersion:
    """A version as an eval run records it, and the suite target that would test it."""

    version: str
    target: str

    @classmethod
    def prompt(cls, name: str, version: str) -> PromotedVersion:
        return cls(f"{name}@{version}", f"prompt:{name}@{version}")

    @classmethod
    def registry(cls, name: str, number: int) -> PromotedVersion:
        tested = eval_version(name, number)
        return cls(tested, tested)


@dataclass(frozen=True, slots=True)
class Passed:
    suite: str  # its name, as runs record it
    runs: list[str] = field(default_factory=list)  # a passing run per version, in order


def refusal(suite: str, tested: PromotedVersion, failed: str | None = None) -> str:
    """Why a promotion is refused (with why its latest run failed, when it says), and the
    command that would allow it."""
    return (
        f"refusing to promote {tested.version}: suite {suite!r} has no passing run of it"
        + (f"; its latest run failed: {failed}" if failed else "")
        + f" (run: gateway eval run evals/{suite}.yaml --target {tested.target})"
    )


def require_passing_runs(evals: EvalStore, suite: str, tested: Iterable[PromotedVersion]) -> Passed:
    """The latest passing run of `suite` on each version; PermissionDenied (403,
    eval_required) naming the first version without one."""
    name = suite_name(suite)
    runs = []
    for version in tested:
        run_id = evals.passing_run(name, version.version)
        if run_id is None:
            failed = evals.latest_failure(name, version.version)
            raise PermissionDenied(refusal(name, version, failed), code=EVAL_REQUIRED)
        runs.append(run_id)
    return Passed(name, runs)
