"""Sending a capped completion limit upstream (see TokenCap in metering/meter.py).

The budget was reserved for `cap` completion tokens per choice, so the upstream must be told
to stop there. A caller that set `max_tokens` or `max_completion_tokens` has those lowered
(it knows what its model takes). A caller that set neither gets the field its deployment
takes, decided at each attempt: OpenAI's reasoning models refuse `max_tokens` and take only
`max_completion_tokens`; every other OpenAI-compatible server (and litellm, for the
providers it translates) reads `max_tokens`.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.providers import Deployment

LIMIT_FIELDS = ("max_completion_tokens", "max_tokens")
# o1, o3-mini, o4-mini, gpt-5, gpt-5-mini, ... (after any "provider/" prefix).
_REASONING_MODEL = re.compile(r"(?:.*/)?(?:o[1-9]|gpt-5)(?:[^0-9].*)?", re.IGNORECASE)


def cap_callers_fields(body: dict[str, Any], cap: int) -> bool:
    """Lowers the limit fields the caller set to cap; False when it set neither."""
    capped = False
    for name in LIMIT_FIELDS:
        value = body.get(name)
        if type(value) is int:
            body[name] = min(value, cap)
            capped = True
    return capped


def cap_for_deployment(body: dict[str, Any], cap: int, deployment: Deployment) -> None:
    """Sets the limit field this deployment takes to cap, for a caller that set neither."""
    name = limit_field(deployment)
    for other in LIMIT_FIELDS:
        if other != name:
            body.pop(other, None)
    # A limit configured on the deployment (litellm_params) is lower still: keep it, since
    # the body's field would override it.
    configured = deployment.params.get(name)
    body[name] = min(cap, configured) if type(configured) is int else cap


def limit_field(deployment: Deployment) -> str:
    for name in LIMIT_FIELDS:
        if type(deployment.params.get(name)) is int:
            return name  # the one the operator configured for it
    names = (deployment.upstream_model, deployment.base_model or "")
    if any(_REASONING_MODEL.fullmatch(name) for name in names):
        return "max_completion_tokens"
    return "max_tokens"
