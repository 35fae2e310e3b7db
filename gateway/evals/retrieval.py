"""A suite's `retrieve:` step: before a case is asked, its query (a case variable, or a
template of them) is searched in one of the gateway's collections (`POST /v1/indexes/{name}/
search`: embedded and searched by the gateway), and the payloads found become a variable,
so a retrieval-augmented prompt is evaluated with what retrieval really returns."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from gateway.evals.suite import CaseSpec

VARIABLE = re.compile(r"{{\s*([A-Za-z_][A-Za-z0-9_]*)\s*}}")


class RetrieveSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collection: str = Field(min_length=1, description="A collection under indexes.collections.")
    query: str = Field(default="{{question}}", description="The text searched: {{var}} fills in.")
    limit: int = Field(default=3, ge=1, le=50)
    into: str = Field(default="context", description="The variable the payloads go into.")
    fields: list[str] = Field(
        default_factory=lambda: ["source", "text"], description="Payload fields kept."
    )


class Searcher(Protocol):
    async def search(self, collection: str, text: str, limit: int) -> list[dict[str, Any]]: ...


async def with_retrieved(spec: RetrieveSpec, case: CaseSpec, client: Searcher) -> CaseSpec:
    text = VARIABLE.sub(lambda m: str(case.vars.get(m.group(1), "")), spec.query).strip()
    found = await client.search(spec.collection, text, spec.limit) if text else []
    passages = [{f: hit["payload"].get(f) for f in spec.fields} for hit in found]
    return case.model_copy(update={"vars": {**case.vars, spec.into: passages}})
