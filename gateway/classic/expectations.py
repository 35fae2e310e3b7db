"""Per-feature expectations of a classic version: the range, allowed categories and null rate
its training data had, recorded with the version. Serving counts the values of each call that
break them (request log, metrics) and refuses the call with a 400 naming the feature when the
version, or that feature, says `enforce: true`.

The checks are compiled once, when a replica reads the version (off the request path); a call
then costs a column slice and a C-level min/max or set test per feature. Recording from a data
file (pandas) lives in `classic/recording.py`, so serving never imports pandas.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.classic.signature import Signature
from gateway.classic.tensors import DATATYPES, InferRequest, Tensor
from gateway.core.errors import BadRequest
from gateway.core.validation import dotted, first_problem

Category = str | int | float | bool
# Relative rounding of values sent in these float types (binary tensors carry them as such).
NARROW_FLOATS = {"FP32": 1e-6, "FP16": 1e-3}


class FeatureExpectation(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    min: float | None = Field(default=None, description="The least value allowed.")
    max: float | None = Field(default=None, description="The greatest value allowed.")
    categories: list[Category] | None = Field(
        default=None, max_length=10_000, description="The only values allowed."
    )
    max_null_rate: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="The most a call's values may be null (NaN: binary tensors carry it).",
    )
    enforce: bool | None = Field(
        default=None, description="Refuse calls that break it (default: the version's)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> FeatureExpectation:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


class Expectations(BaseModel):
    """`{"enforce": false, "features": {NAME: {min, max, categories, max_null_rate, enforce}}}`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enforce: bool = Field(
        default=False, description="Refuse calls breaking any expectation (400 naming it)."
    )
    features: dict[str, FeatureExpectation] = Field(max_length=10_000)

    @classmethod
    def parse(cls, value: Any, where: str = "expectations") -> Expectations:
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            loc, message = first_problem(exc)
            raise BadRequest(f"{where}.{dotted(loc)}: {message}", param=where) from None

    def check_features(self, signature: Signature | None) -> None:
        """Every feature named must be a column of the signature's 2-D input (its `features`)
        or an input of its own: a 400 naming the first that is neither."""
        if signature is None:
            return
        known = [*(signature.features or []), *(i.name for i in signature.inputs)]
        for name in self.features:
            if placement(name, signature) is None:
                raise BadRequest(
                    f"expectations.features: {name!r} is not a feature of the signature "
                    f"(features: {', '.join(known)})",
                    param="expectations",
                )


def placement(feature: str, signature: Signature) -> tuple[str, int | None] | None:
    """Where a feature's values travel: (input name, column of a 2-D input or None for the
    whole input)."""
    if signature.features and feature in signature.features and len(signature.inputs) == 1:
        return signature.inputs[0].name, signature.features.index(feature)
    for spec in signature.inputs:
        if spec.name == feature:
            return spec.name, None
    return None


@dataclass(frozen=True, slots=True)
class Violation:
    count: int
    reason: str  # what broke it, for the 400: "42.0 is above the training maximum 6.9"


@dataclass(frozen=True, slots=True)
class FeatureCheck:
    feature: str
    input: str
    column: int | None
    low: float | None
    high: float | None
    categories: frozenset[Any] | None
    max_null_rate: float | None
    enforce: bool
    bounds: str = ""  # the range as recorded, for messages ("[1, 6.9]")

    def values(self, tensor: Tensor) -> list[Any]:
        data = tensor.data
        if isinstance(data, bytes):  # binary extension: unpacked here, only for checked inputs
            code = DATATYPES[tensor.datatype][0]
            data = list(struct.unpack(f"<{len(data) // struct.calcsize(code)}{code}", data))
        if self.column is None:
            return data
        width = tensor.shape[1] if len(tensor.shape) == 2 else 1
        return data[self.column :: width]

    def violation(self, values: list[Any], binary: bool) -> Violation | None:
        if not values:
            return None
        count, reason = 0, ""
        # NaN only travels in binary tensors (JSON numbers are finite): only then is a value
        # looked at one by one for it, and min/max (which NaN confuses) not trusted.
        present = [v for v in values if v == v] if binary else values
        nulls = len(values) - len(present)
        if self.max_null_rate is not None and nulls / len(values) > self.max_null_rate:
            count += nulls
            reason = (
                f"{nulls} of {len(values)} values are null, more than the "
                f"{self.max_null_rate:.1%} allowed"
            )
        if present and (self.low is not None or self.high is not None):
            try:
                least, most = min(present), max(present)
            except TypeError:  # text in a numeric feature
                least = most = None
            if least is None or most is None:
                count += len(present)
                reason = reason or "its values are not numbers"
            elif (self.low is not None and least < self.low) or (
                self.high is not None and most > self.high
            ):
                low = self.low if self.low is not None else float("-inf")
                high = self.high if self.high is not None else float("inf")
                outside = [v for v in present if not low <= v <= high]
                count += len(outside)
                reason = reason or f"{outside[0]!r} is outside the training range {self.bounds}"
        if present and self.categories is not None and not self.categories.issuperset(present):
            unknown = [v for v in present if v not in self.categories]
            count += len(unknown)
            shown = ", ".join(repr(c) for c in sorted(self.categories, key=str)[:10])
            reason = reason or f"{unknown[0]!r} is not an allowed category ({shown})"
        return Violation(count, reason) if count else None


class CompiledExpectations:
    """A version's expectations, ready for the request path."""

    def __init__(self, checks: list[FeatureCheck], ref: str) -> None:
        self.checks = checks
        self.ref = ref

    @classmethod
    def build(
        cls, expectations: Expectations, signature: Signature, ref: str
    ) -> CompiledExpectations:
        checks = []
        datatypes = {spec.name: spec.datatype for spec in signature.inputs}
        for feature, expected in expectations.features.items():
            where = placement(feature, signature)
            if where is None:
                continue  # registering refuses this; an old row is served without it
            categories = frozenset(expected.categories) if expected.categories else None
            low, high = expected.min, expected.max
            bounds = (
                f"[{'-inf' if low is None else format(low, 'g')}, "
                f"{'inf' if high is None else format(high, 'g')}]"
            )
            slack = NARROW_FLOATS.get(datatypes[where[0]])
            if slack is not None:  # a bound written as FP32 rounds either way of its float64
                low = None if low is None else low - abs(low) * slack
                high = None if high is None else high + abs(high) * slack
            checks.append(
                FeatureCheck(
                    feature,
                    where[0],
                    where[1],
                    low,
                    high,
                    categories,
                    expected.max_null_rate,
                    expectations.enforce if expected.enforce is None else expected.enforce,
                    bounds,
                )
            )
        return cls(checks, ref)

    def count(self, request: InferRequest) -> dict[str, Violation] | None:
        """Each feature the call's values break, with how many of them do."""
        found: dict[str, Violation] | None = None
        tensors = {t.name: t for t in request.inputs}
        for check in self.checks:
            tensor = tensors.get(check.input)
            if tensor is None:
                continue
            violation = check.violation(check.values(tensor), isinstance(tensor.data, bytes))
            if violation is not None:
                if found is None:
                    found = {}
                found[check.feature] = violation
        return found

    def enforce(self, found: dict[str, Violation]) -> None:
        """A 400 naming the first enforced feature the call breaks."""
        for check in self.checks:
            violation = found.get(check.feature)
            if check.enforce and violation is not None:
                many = "value breaks" if violation.count == 1 else "values break"
                raise BadRequest(
                    f"input {check.input!r}: feature {check.feature!r}: {violation.reason} "
                    f"({violation.count} {many} the expectations {self.ref} was registered "
                    f"with, which it enforces)",
                    param="inputs",
                )
