"""Importing a provider's fine-tune into the registry: an OpenAI fine-tuning job object, as
`GET /v1/fine_tuning/jobs/{id}` returns it, becomes an `llm` version.

The job is read with the fields of the `openai` SDK's `FineTuningJob` (the SDK is not a
dependency of the gateway, so the shape is mirrored here); fields the API adds later are
accepted and ignored. What the registry keeps: the base model (the job's `model`), the job id
(one version per job), the training file as the dataset, the hyperparameters, and in the
metadata the rest of the lineage (validation and result files, trained tokens, ...).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
)

from gateway.core.errors import BadRequest
from gateway.core.validation import dotted, first_problem
from gateway.registry.models import RegistryVersionDetail
from gateway.registry.spec import VersionSpec
from gateway.registry.store import RegistryStore

SUCCEEDED = "succeeded"
# What a name may not hold (core/model_refs.NAME): replaced by '-' in a default name.
_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9._-]+")

Auto = Literal["auto"]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class Hyperparameters(_Lenient):
    # As OpenAI's API bounds them: a job it returned never breaks these.
    batch_size: Auto | PositiveInt | None = None
    learning_rate_multiplier: Auto | PositiveFloat | None = None
    n_epochs: Auto | PositiveInt | None = None


class Method(_Lenient):
    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: dict[str, Any] | None = None
    dpo: dict[str, Any] | None = None
    reinforcement: dict[str, Any] | None = None


Text = Annotated[str, Field(min_length=1, max_length=500)]
JobId = Annotated[str, Field(min_length=1, max_length=200)]  # as the registry stores it


class FineTuningJob(_Lenient):
    """OpenAI's `fine_tuning.job` object. Fields the registry needs are required; the others
    are checked when present (a job the API returned always has them)."""

    id: JobId
    object: Literal["fine_tuning.job"]
    model: Text
    status: Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
    fine_tuned_model: Text | None = None
    training_file: Text
    validation_file: Text | None = None
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    method: Method | None = None
    trained_tokens: NonNegativeInt | None = None
    result_files: list[str] = Field(default_factory=list)
    organization_id: str | None = None
    created_at: NonNegativeInt | None = None  # Unix seconds
    finished_at: NonNegativeInt | None = None
    seed: int | None = None
    suffix: str | None = None
    error: dict[str, Any] | None = None


def parse_job(data: Any, given_as: str = "the job") -> FineTuningJob:
    """The job, or a BadRequest naming the first field that is wrong and how to fix it."""
    if isinstance(data, dict) and data.get("object") == "list" and "data" in data:
        raise BadRequest(
            f"{given_as} is a list of fine-tuning jobs: import one job object (one element of "
            f"its data, or GET /v1/fine_tuning/jobs/ID)"
        )
    if not isinstance(data, dict):
        raise BadRequest(
            f"{given_as} must be a JSON object: a fine-tuning job as OpenAI's API returns it "
            f'(GET /v1/fine_tuning/jobs/ID), with "object": "fine_tuning.job"'
        )
    try:
        return FineTuningJob.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = first["loc"]
        where = ".".join(str(part) for part in loc) or "the job"
        hint = ""
        if loc[:1] == ("object",):
            hint = ' (a fine-tuning job says "object": "fine_tuning.job")'
        raise BadRequest(
            f"{given_as}: {where}: {first['msg']}{hint}", param=str(loc[0]) if loc else None
        ) from None


def require_succeeded(job: FineTuningJob) -> str:
    """The fine-tuned model's name; a job that has not produced one is refused."""
    if job.status != SUCCEEDED:
        why = f": {job.error['message']}" if job.error and job.error.get("message") else ""
        raise BadRequest(
            f"fine-tuning job {job.id} is {job.status!r}{why}; only a job with status "
            f"'succeeded' has a model to serve (import it once it has succeeded)",
            param="status",
        )
    if job.fine_tuned_model is None:
        raise BadRequest(
            f"fine-tuning job {job.id} has no fine_tuned_model: nothing to serve",
            param="fine_tuned_model",
        )
    return job.fine_tuned_model


def default_name(job: FineTuningJob) -> str:
    """The suffix the fine-tune was given (`ft:BASE:ORG:SUFFIX:ID`), else `BASE-ft`: fine-tunes
    with one suffix become versions of one registry model."""
    model = job.fine_tuned_model or ""
    parts = model.split(":")
    suffix = parts[3] if model.startswith("ft:") and len(parts) >= 5 else ""
    name = _NOT_IN_A_NAME.sub("-", suffix or job.suffix or f"{job.model}-ft").strip("-._")
    return name[:200] or "fine-tune"


def served_by(fine_tuned_model: str, deployments: Iterable[tuple[str, str]]) -> list[str]:
    """The model_names whose deployment calls the fine-tuned model, from (model_name,
    litellm_params.model) pairs: `openai/ft:...`, `azure/ft:...` or the bare `ft:...`."""
    found: dict[str, None] = {}
    for alias, model in deployments:
        if "*" in alias:
            continue  # a wildcard serves whatever it is asked: it names no fine-tune
        if model == fine_tuned_model or model.partition("/")[2] == fine_tuned_model:
            found[alias] = None
    return list(found)


def no_alias(job: FineTuningJob, fine_tuned_model: str, source: str) -> BadRequest:
    return BadRequest(
        f"no model_name in {source} serves {fine_tuned_model} (job {job.id}): add one to its "
        f"model_list and restart or reload the gateway, e.g.\n"
        f"  - model_name: {default_name(job)}\n"
        f"    litellm_params:\n"
        f"      model: openai/{fine_tuned_model}\n"
        f"      api_key: os.environ/OPENAI_API_KEY\n"
        f"or name the alias that serves it: --alias ALIAS (over HTTP: ?alias=ALIAS)",
        param="alias",
    )


def choose_alias(
    job: FineTuningJob, given: str | None, deployments: Iterable[tuple[str, str]], source: str
) -> str:
    """The alias given, else the one model_name serving the fine-tuned model."""
    fine_tuned = require_succeeded(job)
    if given is not None:
        return given
    serving = served_by(fine_tuned, deployments)
    if not serving:
        raise no_alias(job, fine_tuned, source)
    if len(serving) > 1:
        raise BadRequest(
            f"several model_names serve {fine_tuned} ({', '.join(serving)}): choose one with "
            f"--alias ALIAS (over HTTP: ?alias=ALIAS)",
            param="alias",
        )
    return serving[0]


def hyperparameters(job: FineTuningJob) -> dict[str, Any]:
    """The job's hyperparameters as it reports them ("auto" kept: the provider chose), the
    method's own (a DPO job's beta...) included."""
    values: dict[str, Any] = {}
    method = job.method
    if method is not None:
        chosen = getattr(method, method.type) or {}
        values.update(chosen.get("hyperparameters") or {})
    values.update(job.hyperparameters.model_dump(exclude_none=True))
    return {k: v for k, v in values.items() if v is not None}


def version_spec(job: FineTuningJob, alias: str, created_by: str | None = None) -> VersionSpec:
    """The version the job registers; a value the registry cannot keep (an alias too long)
    is a 400 naming it."""
    fine_tuned = require_succeeded(job)
    try:
        return _spec(job, fine_tuned, alias, created_by)
    except ValidationError as exc:
        loc, message = first_problem(exc)
        field = dotted(loc)
        raise BadRequest(f"{field}: {message}", param=field or None) from None


def _spec(job: FineTuningJob, fine_tuned: str, alias: str, created_by: str | None) -> VersionSpec:
    lineage: dict[str, Any] = {
        "provider": "openai",
        "fine_tuned_model": fine_tuned,
        "training_file": job.training_file,
        "validation_file": job.validation_file,
        "result_files": job.result_files,
        "trained_tokens": job.trained_tokens,
        "method": job.method.type if job.method is not None else None,
        "organization_id": job.organization_id,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "seed": job.seed,
    }
    return VersionSpec(
        alias=alias,
        kind="llm",
        base=job.model,
        dataset=job.training_file,
        hyperparameters=hyperparameters(job),
        description=f"fine-tune of {job.model} (OpenAI job {job.id}): {fine_tuned}",
        tags=["fine-tune"],
        metadata={k: v for k, v in lineage.items() if v is not None},
        created_by=created_by,
        job_id=job.id,
    )


def import_job(
    store: RegistryStore,
    data: Any,
    *,
    name: str | None,
    alias: str | None,
    deployments: Iterable[tuple[str, str]],
    aliases: Collection[str],
    source: str,
    actor: str,
    given_as: str = "the job",
) -> RegistryVersionDetail:
    """Registers the job's fine-tune as the next version of `name` (default: default_name).
    `deployments` are the config's (model_name, litellm_params.model) pairs, `aliases` its
    model names, `source` the config and `given_as` the job as messages name them. A job
    imported before raises AlreadyImported naming its version."""
    job = parse_job(data, given_as)
    require_succeeded(job)
    store.refuse_reimport(job.id)
    chosen = choose_alias(job, alias, deployments, source)
    spec = version_spec(job, chosen)
    # A fine-tune of an imported fine-tune is built on that version, not on a bare name.
    parent = store.finetune_of(job.model)
    if parent is not None:
        spec = spec.model_copy(update={"base": parent})
    return store.register(name or default_name(job), spec, aliases=aliases, actor=actor)
