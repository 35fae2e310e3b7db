"""The `@` data a template reads: what callers pass and what the gateway fills itself.

Dotprompt renders `{{@name}}` from the context given with a call (Genkit fills `@auth` and
`@state` there). A gateway call passes its context as `prompt.context`, declared by the
prompt in `gateway.context`; the gateway fills `@auth` from the caller's key and team. A
template reading any other `@` name would render a blank on every call, so it is refused
when the file is checked.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from gateway.prompts.schemas import CONTEXT_KEY, GATEWAY_DATA

# What `@auth` holds; `metadata` is the key's or team's own, free-form.
AUTH_SHAPE: dict[str, Any] = {
    "key": {"id": None, "name": None, "metadata": Any},
    "team": {"id": None, "metadata": Any},
}


def auth_data(
    key_id: str,
    key_name: str | None,
    key_metadata: Mapping[str, Any] | None,
    team_id: str | None,
    team_metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """`@auth` for a caller: its key (`master` for the master key) and its team, if any."""
    key = {"id": key_id, "name": key_name, "metadata": dict(key_metadata or {})}
    team = {"id": team_id, "metadata": dict(team_metadata or {})} if team_id else None
    return {"key": key, "team": team}


def data_problem(path: str, context_schema: dict[str, Any] | None) -> str | None:
    """Why `{{@path}}` would never be filled, or None."""
    head, _, rest = path.partition(".")
    if head in GATEWAY_DATA:
        return _auth_problem(rest)
    declared = sorted((context_schema or {}).get("properties") or {})
    if head in declared:
        return None
    if context_schema is not None and context_schema.get("additionalProperties") not in (
        None,
        False,
    ):
        return None  # a wildcard ((*): any) lets callers pass any name
    close = difflib.get_close_matches(head, [*declared, *sorted(GATEWAY_DATA)], n=1, cutoff=0.6)
    hint = f"; did you mean {{{{@{close[0]}}}}}?" if close else ""
    return (
        f"template reads {{{{@{path}}}}} but nothing fills @{head}: callers pass the names "
        f"declared in {CONTEXT_KEY} (as prompt.context) and the gateway fills @auth "
        f"(declare {head} in {CONTEXT_KEY}){hint}"
    )


def _auth_problem(rest: str) -> str | None:
    shape: Any = AUTH_SHAPE
    walked = "auth"
    for part in rest.split(".") if rest else []:
        if shape is Any:
            return None
        if not isinstance(shape, dict) or part not in shape:
            known = sorted(shape) if isinstance(shape, dict) else []
            close = difflib.get_close_matches(part, known, n=1, cutoff=0.6)
            hint = f"did you mean @{walked}.{close[0]}?" if close else f"it has {', '.join(known)}"
            if walked == "auth" and not close:  # Genkit's @auth.email: here, key metadata
                hint += f"; a key's own metadata is @auth.key.metadata.{part}"
            if not known:
                hint = f"@{walked} is a value"
            return f"template reads {{{{@auth.{rest}}}}}, which the gateway never fills ({hint})"
        shape, walked = shape[part], f"{walked}.{part}"
    return None
