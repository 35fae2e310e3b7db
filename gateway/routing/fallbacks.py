"""Fallbacks, resolved at start: for each alias, the aliases (or deployment ids) tried after
it, for upstream faults (`fallbacks`, `default_fallbacks`), for a prompt too long for its
context window (`context_window_fallbacks`) and for a content filter's refusal
(`content_policy_fallbacks`).

As in LiteLLM, a fallback's own fallbacks are tried after it (depth first), "*" stands for
every alias without an entry of its own, and a call tries at most `max_fallbacks` of them.
"""

from __future__ import annotations

from gateway.core.config import Fallbacks, RouterSettings
from gateway.core.errors import GatewayError, is_retryable
from gateway.routing.failures import is_content_policy, is_context_window

GENERIC = "*"


def _table(rules: Fallbacks, default: list[str] | None = None) -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}
    for rule in rules:
        for source, targets in rule.items():
            table.setdefault(source, []).extend(targets)
    if default:
        table.setdefault(GENERIC, []).extend(default)
    return table


def _expand(start: str, table: dict[str, list[str]], limit: int) -> list[str]:
    """What `start` falls back to, depth first, each name once, at most `limit` names."""
    order: list[str] = []
    seen = {start}
    stack = [iter(table.get(start, table.get(GENERIC, [])))]
    while stack and len(order) < limit:
        name = next(stack[-1], None)
        if name is None:
            stack.pop()
            continue
        if name in seen:
            continue
        seen.add(name)
        order.append(name)
        stack.append(iter(table.get(name, table.get(GENERIC, []))))
    return order


class FallbackPlan:
    def __init__(self, settings: RouterSettings, names: list[str]) -> None:
        limit = settings.max_fallbacks
        self.max_fallbacks = limit
        regular = _table(settings.fallbacks, settings.default_fallbacks)
        context = _table(settings.context_window_fallbacks)
        policy = _table(settings.content_policy_fallbacks)
        self.regular = {name: _expand(name, regular, limit) for name in names}
        # None when unset: then those failures take the regular fallbacks, as in LiteLLM.
        self.context_window = (
            {name: _expand(name, context, limit) for name in names} if context else None
        )
        self.content_policy = (
            {name: _expand(name, policy, limit) for name in names} if policy else None
        )
        # Every name a call to each alias may reach, whatever fails on the way.
        self.reachable: dict[str, list[str]] = {}
        for name in names:
            reached: dict[str, None] = {}
            pending = [name]
            while pending:
                current = pending.pop()
                for table in (self.regular, self.context_window, self.content_policy):
                    for target in (table or {}).get(current, []):
                        if target != name and target not in reached:
                            reached[target] = None
                            pending.append(target)
            self.reachable[name] = list(reached)

    def after(self, name: str, error: GatewayError, plan: list[str]) -> list[str] | None:
        """What to try after `name` failed with `error` while following `plan`: the plan
        itself, the context-window or content-policy fallbacks of `name`, or None when the
        failure is the caller's and no fallback can help."""
        special = None
        if is_context_window(error):
            special = self.context_window
        elif is_content_policy(error):
            special = self.content_policy
        elif not is_retryable(error):
            return None
        if special is not None:
            return special.get(name, [])
        return plan
