"""A Redis that answers but refuses the gateway: no password given when one is required, a
wrong one, a disabled ACL user, or an ACL user without a permission metering needs.

Not an outage: waiting does not fix it, the operator must. Both Redis clients (redis-py and
gateway/transport/resp.py) raise redis-py's types for it, which this module puts in words for
callers, readiness and the operator's log.
"""

from __future__ import annotations

from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

# Where the gateway's Redis credentials come from (gateway/state.py).
WHERE = "GATEWAY_REDIS_URL (or router_settings.redis_password)"

LOGIN = f"Redis refuses the gateway's login: the password or user in {WHERE} is missing or wrong"
PERMISSION = (
    "Redis refuses a command the gateway needs: the ACL user in "
    f"{WHERE} lacks a permission (see the README's Operations for the commands and keys)"
)

# Error replies (their first word) that are Redis refusing the client, as redis-py maps them.
_REPLY_TYPES: dict[str, type[AuthenticationError] | type[NoPermissionError]] = {
    "NOAUTH": AuthenticationError,
    "WRONGPASS": AuthenticationError,
    "NOPERM": NoPermissionError,
}
# A command inside a Lua script that the ACL user may not run, or a key it may not touch:
# Redis 7.0 answers these with a plain ERR (later versions with NOPERM).
_SCRIPT_DENIED = "The user executing the script can't"


def refusal_of_reply(
    reply: str, context: str = ""
) -> AuthenticationError | NoPermissionError | None:
    """The redis-py exception for an error reply that refuses the client (its message the
    context, then the reply); None for other replies."""
    kind = _REPLY_TYPES.get(reply.split(" ", 1)[0])
    if kind is None and _SCRIPT_DENIED in reply:
        kind = NoPermissionError
    return kind(context + reply) if kind is not None else None


def refusal(exc: BaseException) -> str | None:
    """What Redis refuses, in words naming the setting to fix; None when exc is not a
    refusal (unreachable, timed out, another error)."""
    if isinstance(exc, AuthenticationError):
        return LOGIN
    if isinstance(exc, NoPermissionError):
        return PERMISSION
    if isinstance(exc, ResponseError) and _SCRIPT_DENIED in str(exc):  # from redis-py
        return PERMISSION
    return None
