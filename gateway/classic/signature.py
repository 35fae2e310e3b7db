"""A classic model's signature: the tensors it takes and gives (name, datatype, shape, -1 for a
variable dimension), recorded with its registry version and checked before it runs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.classic.tensors import DATATYPES, MAX_RANK, InferRequest, Tensor
from gateway.core.errors import BadRequest
from gateway.core.validation import dotted, first_problem


class TensorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    datatype: str
    shape: list[int] = Field(max_length=MAX_RANK, description="-1: a variable dimension.")

    @field_validator("datatype")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in DATATYPES:
            raise ValueError(f"must be one of {', '.join(DATATYPES)}")
        return value

    @field_validator("shape")
    @classmethod
    def _dims(cls, value: list[int]) -> list[int]:
        if any(d < -1 for d in value):
            raise ValueError("dimensions are sizes, or -1 for a variable one")
        return value

    def describe(self) -> str:
        return f"{self.name} ({self.datatype} {self.shape})"

    def fits(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.shape) and all(
            want in (-1, got) for want, got in zip(self.shape, shape, strict=True)
        )


class Signature(BaseModel):
    """What the model takes and gives. `features` names the columns of a 2-D input (the
    training data's), for feature statistics and drift."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)
    features: list[str] | None = None

    @classmethod
    def parse(cls, value: Any, where: str = "signature") -> Signature:
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            loc, message = first_problem(exc)
            raise BadRequest(f"{where}.{dotted(loc)}: {message}", param=where) from None

    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]

    def check(self, request: InferRequest) -> None:
        """Names, datatypes and shapes of the inputs, and the outputs asked for: a 400 naming
        the tensor, what was expected and what came."""
        expected = {spec.name: spec for spec in self.inputs}
        for tensor in request.inputs:
            spec = expected.get(tensor.name)
            if spec is None:
                takes = ", ".join(s.describe() for s in self.inputs)
                raise BadRequest(
                    f"unknown input {tensor.name!r}: the model takes {takes}", param="inputs"
                )
            _check_tensor(spec, tensor)
        if len(request.inputs) != len(expected):
            given = {t.name for t in request.inputs}
            missing = ", ".join(s.describe() for s in self.inputs if s.name not in given)
            raise BadRequest(f"missing input: {missing}", param="inputs")
        if request.outputs is not None:
            gives = self.output_names()
            for output in request.outputs:
                if output.name not in gives:
                    raise BadRequest(
                        f"unknown output {output.name!r}: the model gives {', '.join(gives)}",
                        param="outputs",
                    )


def _check_tensor(spec: TensorSpec, tensor: Tensor) -> None:
    if tensor.datatype != spec.datatype:
        raise BadRequest(
            f"input {tensor.name!r}: expected datatype {spec.datatype}, got {tensor.datatype}",
            param="inputs",
        )
    if not spec.fits(tensor.shape):
        raise BadRequest(
            f"input {tensor.name!r}: expected shape {spec.shape} (-1: any size), got "
            f"{list(tensor.shape)}",
            param="inputs",
        )
    if 0 in tensor.shape:  # what a model would refuse in words of its own library
        raise BadRequest(
            f"input {tensor.name!r} holds no values (shape {list(tensor.shape)}): send at "
            f"least one row",
            param="inputs",
        )
