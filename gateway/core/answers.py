"""What every answer model shares: the base class and the OpenAI-style list envelope.

Answers are the shapes the API returns and the CLI prints, declared once per domain (in
`<domain>/models.py`) and built by the stores. A field the model does not declare is an
error rather than silently dropped, so a store cannot drift from what /openapi.json says.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class Answer(BaseModel):
    # Fields named after Python keywords ("from") are declared with an alias; the JSON uses
    # the alias, code uses either.
    model_config = ConfigDict(extra="forbid", serialize_by_alias=True, validate_by_name=True)


class ObjectList(Answer, Generic[T]):
    """`{"object": "list", "data": [...]}`, as OpenAI's lists are."""

    object: Literal["list"] = "list"
    data: list[T]
