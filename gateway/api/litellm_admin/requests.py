"""LiteLLM's key and team fields, translated into the gateway's own (identity/models.py
validates them, and its errors are renamed back to LiteLLM's field names)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.api.litellm_admin.models import KeyRequest, LiteLLMRequest, TeamRequest
from gateway.core.errors import BadRequest
from gateway.core.validation import first_problem
from gateway.identity.keys import KeyRecord, TeamRecord
from gateway.identity.models import KeyCreate, KeyUpdate, TeamCreate, TeamUpdate

# Where LiteLLM's fields without a column here are kept: the key's or team's metadata.
LITELLM = "litellm"
# LiteLLM's words for periods (litellm_core_utils/duration_parser.py), and its units.
WORDS = {"hourly": "1h", "daily": "24h", "weekly": "7d", "monthly": "30d"}
PERIOD = re.compile(r"([0-9]+)(s|m|h|d|w|mo)")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
ALL_MODELS = {"all-proxy-models", "all-team-models"}
# The gateway's field names where LiteLLM's differ, to name LiteLLM's in errors.
LITELLM_NAMES = {"name": "key_alias", "team": "team_id", "expires_at": "duration", "id": "team_id"}
CUSTOM_KEY_MIN = 16  # LiteLLM's MINIMUM_CUSTOM_KEY_LENGTH

# Values of fields without an equivalent that mean what the gateway does anyway.
SAME_AS_HERE = {
    "rpm_limit_type": {"best_effort_throughput"},
    "tpm_limit_type": {"best_effort_throughput"},
}
WHAT_TO_DO = {
    "max_parallel_requests": "limit the key with rpm_limit or tpm_limit",
    "soft_budget": "the gateway sends no budget alerts; watch spend with GET /v1/costs",
    "model_max_budget": "give the key a max_budget, or one key per model",
    "budget_limits": "a key or team has one max_budget per budget_duration here",
    "model_rpm_limit": "set rpm on the deployment (litellm_params.rpm) or the key's rpm_limit",
    "model_tpm_limit": "set tpm on the deployment (litellm_params.tpm) or the key's tpm_limit",
    "tpd_limit": "limit the key with tpm_limit or a max_budget",
    "guardrails": "the gateway has no guardrails",
    "policies": "the gateway has no guardrail policies",
    "organization_id": "the gateway has keys and teams only",
    "project_id": "the gateway has keys and teams only",
    "budget_id": "set max_budget and budget_duration on the key or team",
    "allowed_routes": "virtual keys reach only the model routes here",
    "auto_rotate": "rotate a key with POST /v1/keys/{id}/rotate",
    "aliases": "alias models in the config's model_list",
    "model_aliases": "alias models in the config's model_list",
    "models": "restrict each of the team's keys with models",
    "blocked": "block the team's keys with /key/update {blocked: true}",
    "rpm_limit_type": "rpm_limit is best effort here",
    "tpm_limit_type": "tpm_limit is best effort here",
}


def refuse_what_is_set(request: LiteLLMRequest, route: str) -> None:
    """LiteLLM fields this gateway has no equivalent for, with a value that would matter."""
    for name, value in (request.model_extra or {}).items():
        empty = value is None or value is False or value in ("", [], {})
        if empty or (isinstance(value, str) and value in SAME_AS_HERE.get(name, ())):
            continue
        hint = WHAT_TO_DO.get(name, "the gateway does not know this field")
        raise BadRequest(
            f"'{name}' is not supported by {route} on this gateway ({hint}); leave it out.",
            param=name,
        )


def budget_period(value: str | None) -> str | None:
    """LiteLLM's budget_duration in the gateway's units: its words, and weeks as days."""
    if value is None:
        return None
    text = WORDS.get(value.strip().lower(), value)
    match = PERIOD.fullmatch(text)
    if match is not None and match[2] == "w":
        return f"{int(match[1]) * 7}d"
    return text  # the gateway's own check names what it cannot count


def expiry(value: str | None, now: datetime) -> datetime | None:
    """LiteLLM's key `duration` as the moment the key expires; None (or "-1") never."""
    if value is None or value == "-1":
        return None
    text = WORDS.get(value.strip().lower(), value)
    match = PERIOD.fullmatch(text)
    if match is None or int(match[1]) == 0:
        raise BadRequest(
            f"duration must look like 30s, 30m, 30h, 30d, 1w or 1mo (or null: never expires), "
            f"not {value!r}.",
            param="duration",
        )
    count, unit = int(match[1]), match[2]
    months = count if unit == "mo" else count * SECONDS[unit] / (30 * 86_400)
    if months > 100 * 12:
        raise BadRequest(
            f"duration {value!r} is over 100 years; send null instead.", param="duration"
        )
    if unit == "mo":
        return _months_later(now, count)
    return now + timedelta(seconds=count * SECONDS[unit])


def _months_later(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    for day in (moment.day, 30, 29, 28):  # the same day, else the month's last
        try:
            return moment.replace(year=year, month=month + 1, day=day)
        except ValueError:
            continue
    raise AssertionError("every month has a 28th")


def key_models(models: list[str] | None) -> list[str]:
    if not models or ALL_MODELS & set(models):
        return []
    if "no-default-models" in models:
        raise BadRequest(
            "models: a key that may call no model is not supported; give it models, or "
            "block it with blocked: true.",
            param="models",
        )
    return list(models)


def _with_extras(
    metadata: dict[str, Any], extras: dict[str, Any], tags: list[str] | None, given: set[str]
) -> dict[str, Any]:
    if LITELLM in metadata:
        raise BadRequest(
            f"metadata.{LITELLM} is where the gateway keeps LiteLLM's fields it has no column "
            f"for (user_id, team_alias, ...): give those fields instead.",
            param=f"metadata.{LITELLM}",
        )
    shown = dict(metadata)
    if "tags" in given:
        if tags:
            shown["tags"] = list(tags)
        else:
            shown.pop("tags", None)
    if extras:
        shown[LITELLM] = extras
    return shown


def key_fields(request: KeyRequest, now: datetime, existing: KeyRecord | None) -> dict[str, Any]:
    """The gateway's fields for /key/generate (existing None) or /key/update: only those
    given change, as in LiteLLM (an explicit null clears; `metadata` replaces as a whole)."""
    refuse_what_is_set(request, "/key/update" if existing else "/key/generate")
    if request.spend not in (None, 0):
        raise BadRequest(
            "spend cannot be set: the gateway counts it from the request log.", param="spend"
        )
    given = set(request.model_fields_set)
    fields: dict[str, Any] = {}
    if "key_alias" in given:
        fields["name"] = request.key_alias
    if "team_id" in given and not (existing and request.team_id == ""):
        fields["team"] = request.team_id or None
    if "models" in given:
        fields["models"] = key_models(request.models)
    for name in ("max_budget", "rpm_limit", "tpm_limit", "prompts"):
        if name in given:
            fields[name] = getattr(request, name)
    if "budget_duration" in given:
        fields["budget_duration"] = budget_period(request.budget_duration)
    if "duration" in given:
        fields["expires_at"] = expiry(request.duration, now)
    if given & {"metadata", "tags", "user_id"}:
        kept = dict(existing.metadata) if existing else {}
        extras = dict(kept.pop(LITELLM, None) or {})
        if "user_id" in given:
            extras.pop("user_id", None)
            if request.user_id:
                extras["user_id"] = request.user_id
        metadata = (request.metadata or {}) if "metadata" in given else kept
        fields["metadata"] = _with_extras(metadata, extras, request.tags, given)
    return _checked(KeyUpdate if existing else KeyCreate, fields)


def custom_key(value: str) -> str:
    """A key brought from LiteLLM: its rules (sk-, 16 characters or more)."""
    if not value.startswith("sk-") or len(value) < CUSTOM_KEY_MIN:
        raise BadRequest(
            f"key must start with 'sk-' and be at least {CUSTOM_KEY_MIN} characters long, "
            f"as LiteLLM's; leave it out to have one drawn.",
            param="key",
        )
    return value


def team_fields(request: TeamRequest) -> tuple[str, dict[str, Any]]:
    """The team's id (drawn when not given) and the gateway's fields for it."""
    refuse_what_is_set(request, "/team/new")
    team_id = request.team_id or str(uuid.uuid4())
    extras: dict[str, Any] = {}
    if request.team_alias:
        extras["team_alias"] = request.team_alias
    if request.members_with_roles:
        extras["members_with_roles"] = [m.model_dump() for m in request.members_with_roles]
    for name in ("members", "admins"):
        if value := getattr(request, name):
            extras[name] = list(value)
    fields = {
        "id": team_id,
        "max_budget": request.max_budget,
        "budget_duration": budget_period(request.budget_duration),
        "rpm_limit": request.rpm_limit,
        "tpm_limit": request.tpm_limit,
        "metadata": _with_extras(
            request.metadata or {}, extras, request.tags, set(request.model_fields_set)
        ),
    }
    checked = _checked(TeamCreate, fields)
    return checked.pop("id"), checked


def team_update_fields(request: TeamRequest, existing: TeamRecord) -> dict[str, Any]:
    """The gateway's fields for /team/update: only those given change, as in LiteLLM (an
    explicit null clears; `metadata` replaces as a whole, the LiteLLM fields kept apart)."""
    refuse_what_is_set(request, "/team/update")
    given = set(request.model_fields_set)
    fields: dict[str, Any] = {}
    for name in ("max_budget", "rpm_limit", "tpm_limit"):
        if name in given:
            fields[name] = getattr(request, name)
    if "budget_duration" in given:
        fields["budget_duration"] = budget_period(request.budget_duration)
    named = given & {"team_alias", "members_with_roles", "members", "admins"}
    if named or given & {"metadata", "tags"}:
        kept = dict(existing.metadata)
        extras = dict(kept.pop(LITELLM, None) or {})
        for name in named:
            value = getattr(request, name)
            if name == "members_with_roles" and value:
                value = [m.model_dump() for m in value]
            if value:
                extras[name] = value
            else:
                extras.pop(name, None)
        metadata = (request.metadata or {}) if "metadata" in given else kept
        fields["metadata"] = _with_extras(metadata, extras, request.tags, given)
    return _checked(TeamUpdate, fields)


def _checked(model: type[BaseModel], fields: dict[str, Any]) -> dict[str, Any]:
    try:
        valid = model.model_validate(fields)
    except ValidationError as exc:
        loc, message = first_problem(exc)
        ours = str(loc[0]) if loc else ""
        name = LITELLM_NAMES.get(ours, ours)
        raise BadRequest(f"{name}: {message}", param=name or None) from None
    return valid.model_dump(exclude_unset=True)
