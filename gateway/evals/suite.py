"""Eval suite files (`evals/<suite>.yaml`): the schema, targets, and datasets beside them.

Suites are data, validated strictly; an error names the file, the line and the key path.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.core.errors import ConfigError, GatewayError
from gateway.core.model_refs import parse_ref
from gateway.core.typos import unknown_key
from gateway.core.yamlfile import YamlDocument, format_loc, one_line, validation_problems
from gateway.evals.assertions import ALIASES, KNOWN_TYPES, AssertionSpec
from gateway.evals.cases import prepare_all
from gateway.evals.datasets import read_dataset
from gateway.evals.model_tests import (
    DataSpec,
    MetricSpec,
    ModelTest,
    load_model_test,
    metric_problems,
)
from gateway.evals.retrieval import RetrieveSpec
from gateway.evals.scripts import script_problem

TARGET = re.compile(r"^(prompt|model|registry):([^@\s]+)(?:@([^@\s]+))?$")
TARGET_HELP = (
    "prompt:NAME@LABEL, prompt:NAME@VERSION, model:ALIAS, or registry:NAME@REF "
    "(a registry version number or label; registry:NAME is its latest version)"
)


@dataclass(frozen=True, slots=True)
class Target:
    """What a suite calls: a prompt by label or version, a model alias, or a registry model
    version (called through the alias that serves it)."""

    kind: Literal["prompt", "model", "registry"]
    name: str
    ref: str | None = None  # a prompt's label or version; a registry version or label

    @classmethod
    def parse(cls, text: str) -> Target:
        match = TARGET.match(text.strip())
        if match is None:
            raise ValueError(f"target {text!r} must look like {TARGET_HELP}")
        kind, name, ref = match.groups()
        if kind == "model" and ref:
            raise ValueError(f"target {text!r}: a model target takes no @ part")
        if kind == "registry":
            try:
                parse_ref(f"{name}@{ref}" if ref else name)
            except GatewayError as exc:
                raise ValueError(f"target {text!r}: {exc.message}") from None
        return cls(kind, name, ref)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" + (f"@{self.ref}" if self.ref else "")


class CaseOptions(BaseModel):
    """promptfoo's test `options` the gateway acts on."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    transform: str | None = Field(
        default=None,
        description="Python run on the output before every assertion of the case: an "
        "expression of `output` and `context`, or file://code.py:function.",
    )
    provider: str | None = Field(
        default=None, description="The judge model alias for the case's llm-rubric assertions."
    )
    disable_var_expansion: bool = Field(
        default=False,
        alias="disableVarExpansion",
        description="Pass list variables as lists instead of making one case per item.",
    )

    @field_validator("transform")
    @classmethod
    def _code(cls, value: str | None) -> str | None:
        problem = None if value is None else script_problem(value)
        if problem is not None:
            raise ValueError(f"transform: {problem}")
        return value


class CaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    id: str | None = None
    description: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    messages: list[dict[str, Any]] = Field(default_factory=list)
    asserts: list[AssertionSpec] = Field(default_factory=list, alias="assert")
    # The case passes when its weighted score reaches this; by default every assertion must.
    threshold: float | None = Field(default=None, ge=0, le=1)
    options: CaseOptions = Field(default_factory=CaseOptions)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    vars: dict[str, Any] = Field(default_factory=dict)
    asserts: list[AssertionSpec] = Field(default_factory=list, alias="assert")
    options: CaseOptions = Field(default_factory=CaseOptions)
    metadata: dict[str, Any] = Field(default_factory=dict)


class SuiteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    description: str | None = None
    target: str = Field(
        description=f"What the suite calls: {TARGET_HELP}.",
        json_schema_extra={"pattern": TARGET.pattern},
    )
    baseline: str | None = Field(
        default=None,
        description="What the target is compared with (same syntax), e.g. the @production one.",
        json_schema_extra={"pattern": TARGET.pattern},
    )
    dataset: str | None = None  # a .jsonl or .csv file beside the suite
    cases: list[CaseSpec] = Field(default_factory=list)
    defaults: Defaults = Field(default_factory=Defaults)
    # Share of cases that must pass (promptfoo users asked for pass-rate gates).
    threshold: float = Field(default=1.0, ge=0, le=1)
    # Fail when the pass rate drops more than this below the baseline's (off when unset).
    max_regression: float | None = Field(default=None, ge=0, le=1)
    repeat: int = Field(default=1, ge=1, le=100)
    concurrency: int = Field(default=4, ge=1, le=64)
    judge: str | None = None  # model alias for llm-rubric assertions
    embedding_model: str = "local/all-MiniLM-L6-v2"  # for `similar` assertions
    options: dict[str, Any] = Field(default_factory=dict)  # sent with every call
    # Search a collection for each case before it is asked (gateway/evals/retrieval.py).
    retrieve: RetrieveSpec | None = None
    # Model tests of classic registry versions (gateway/evals/model_tests.py): a labelled
    # data file instead of cases, and metrics held to thresholds instead of assertions.
    data: DataSpec | None = Field(
        default=None,
        description="Model tests: a labelled CSV or Parquet file the registry version predicts.",
    )
    metrics: dict[str, MetricSpec] | None = Field(
        default=None,
        description="Model tests: each metric (accuracy, precision, recall, f1, roc_auc, rmse, "
        "mae, demographic_parity_difference, equalized_odds_difference) with min, max and "
        "max_regression.",
    )

    @field_validator("target", "baseline")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        if value is not None:
            Target.parse(value)
        return value

    @model_validator(mode="after")
    def _model_test(self) -> SuiteSpec:
        problem = metric_problems(self.data, self.metrics)
        if problem is not None:
            raise ValueError(problem)
        if self.data is None:
            return self
        for key in ("target", "baseline"):
            value = getattr(self, key)
            if value is not None and Target.parse(value).kind != "registry":
                raise ValueError(
                    f"{key}: a model test (data:) targets a classic registry version, "
                    f"registry:NAME@REF, not {value!r}"
                )
        cased = [name for name in CASE_KEYS if name in self.model_fields_set]
        if cased:
            raise ValueError(
                f"{cased[0]}: a model test (data:) takes no {cased[0]!r}; its cases are the "
                f"data file's rows and its thresholds are per metric"
            )
        return self


# What only suites of cases take (a model test has rows and metrics instead).
CASE_KEYS = (
    "cases",
    "dataset",
    "defaults",
    "threshold",
    "max_regression",
    "repeat",
    "judge",
    "options",
    "retrieve",
)


@dataclass(frozen=True, slots=True)
class Suite:
    name: str
    path: Path
    spec: SuiteSpec
    cases: list[CaseSpec]
    model_test: ModelTest | None = None

    @property
    def target(self) -> Target:
        return Target.parse(self.spec.target)

    @property
    def baseline(self) -> Target | None:
        return Target.parse(self.spec.baseline) if self.spec.baseline else None


def _dataset(path: Path) -> list[CaseSpec]:
    cases = []
    for number, row in read_dataset(path, set(KNOWN_TYPES) | set(ALIASES)):
        try:
            cases.append(CaseSpec.model_validate(row))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            loc = tuple(first["loc"])
            message = unknown_key(CaseSpec, loc) if first["type"] == "extra_forbidden" else None
            raise ConfigError(
                one_line(f"{path}:{number}: {format_loc(loc)}: {message or first['msg']}")
            ) from None
    return cases


def _with_defaults(case: CaseSpec, defaults: Defaults, index: int) -> CaseSpec:
    options = {
        **defaults.options.model_dump(exclude_unset=True),
        **case.options.model_dump(exclude_unset=True),
    }
    return case.model_copy(
        update={
            "id": case.id or f"case-{index + 1}",
            "vars": {**defaults.vars, **case.vars},
            "asserts": [*defaults.asserts, *case.asserts],
            "options": CaseOptions(**options),
            "metadata": {**defaults.metadata, **case.metadata},
        }
    )


def load_suite(path: Path) -> Suite:
    doc = YamlDocument.read(path)
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{path}:1: a suite is a mapping (target, cases, ...)")
    try:
        spec = SuiteSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(doc, exc, SuiteSpec)) from None
    if spec.data is not None:
        assert spec.metrics is not None  # the schema requires them together
        return Suite(path.stem, path, spec, [], load_model_test(path, spec.data, spec.metrics))
    cases = list(spec.cases)
    if spec.dataset:
        cases += _dataset(path.parent / spec.dataset)
    if not cases:
        raise ConfigError(f"{path}:1: the suite has no cases (add `cases:` or `dataset:`)")
    named = []
    for index, case in enumerate(cases):
        merged = _with_defaults(case, spec.defaults, index)
        if not merged.asserts:
            raise ConfigError(f"{path}: case {merged.id!r} has no assertions")
        named.append(merged)
    named = prepare_all(path, named)
    counts = Counter(c.id for c in named)
    duplicates = sorted(i for i, n in counts.items() if n > 1 and i is not None)
    if duplicates:
        shown = ", ".join(repr(i) for i in duplicates)
        raise ConfigError(f"{path}: duplicate case ids: {shown}")
    return Suite(path.stem, path, spec, named)


def suite_json_schema() -> str:
    schema = SuiteSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "LLMOps gateway eval suite (evals/*.yaml)"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
