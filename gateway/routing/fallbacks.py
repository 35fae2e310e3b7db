"""Fallbacks, resolved at start: for each name, the names (model groups, aliases, names a
wildcard serves, or deployment ids) tried after it, for upstream faults (`fallbacks`,
`default_fallbacks`), for a prompt too long for its context window
(`context_window_fallbacks`) and for a content filter's refusal (`content_policy_fallbacks`).

As in LiteLLM, a fallback's own fallbacks are tried after it (depth first), "*" stands for
every name without an entry of its own, and a call tries at most `max_fallbacks` of them. A
model_group_alias without an entry of its own takes its model group's. A name no list
mentions (one a wildcard serves) takes the "*" entry: one list shared by all such names, so
nothing is computed per call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gateway.core.config import Fallbacks, RouterSettings
from gateway.core.errors import GatewayError, is_retryable
from gateway.routing.failures import is_content_policy, is_context_window

GENERIC = "*"
Table = dict[str, list[str]]


def _table(rules: Fallbacks, default: list[str] | None, group_aliases: Mapping[str, str]) -> Table:
    table: Table = {}
    for rule in rules:
        for source, targets in rule.items():
            table.setdefault(source, []).extend(targets)
    if default:
        table.setdefault(GENERIC, []).extend(default)
    for alias, group in group_aliases.items():
        # The requested name's fallbacks first, else its model group's.
        if alias not in table and group in table:
            table[alias] = table[group]
    return table


def _expand(start: str | None, table: Table, limit: int) -> list[str]:
    """What `start` (None: a name the table does not mention) falls back to, depth first,
    each name once, at most `limit` names."""
    generic = table.get(GENERIC, [])
    order: list[str] = []
    seen = {start} if start is not None else set()
    stack = [iter(table.get(start, generic) if start is not None else generic)]
    while stack and len(order) < limit:
        name = next(stack[-1], None)
        if name is None:
            stack.pop()
            continue
        if name in seen:
            continue
        seen.add(name)
        order.append(name)
        stack.append(iter(table.get(name, generic)))
    return order


class Plans:
    """One kind of fallbacks: per name, what is tried after it, in order."""

    def __init__(self, table: Table, names: Iterable[str], limit: int) -> None:
        self.by_name = {name: _expand(name, table, limit) for name in names}
        self.default = _expand(None, table, limit)

    def get(self, name: str) -> list[str]:
        found = self.by_name.get(name)
        return self.default if found is None else found


class FallbackPlan:
    def __init__(
        self,
        settings: RouterSettings,
        names: Iterable[str],
        group_aliases: Mapping[str, str] | None = None,
    ) -> None:
        """`names`: those a call may start from or reach (model groups, aliases, deployment
        ids); the names the lists mention are added."""
        limit = settings.max_fallbacks
        self.max_fallbacks = limit
        aliases = group_aliases or {}
        regular = _table(settings.fallbacks, settings.default_fallbacks, aliases)
        context = _table(settings.context_window_fallbacks, None, aliases)
        policy = _table(settings.content_policy_fallbacks, None, aliases)
        known = dict.fromkeys(names)
        for table in (regular, context, policy):
            for source, targets in table.items():
                known.update(dict.fromkeys([source, *targets]))
        known.pop(GENERIC, None)
        self.regular = Plans(regular, known, limit)
        # None when unset: then those failures take the regular fallbacks, as in LiteLLM.
        self.context_window = Plans(context, known, limit) if context else None
        self.content_policy = Plans(policy, known, limit) if policy else None
        kinds = [p for p in (self.regular, self.context_window, self.content_policy) if p]
        # Every name a call to each name may reach, whatever fails on the way.
        self.reachable = {name: _reachable(name, kinds) for name in known}
        self.reachable_default = _reachable(None, kinds)

    def reachable_from(self, name: str) -> list[str]:
        found = self.reachable.get(name)
        return self.reachable_default if found is None else found

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
            return special.get(name)
        return plan


def _reachable(start: str | None, kinds: list[Plans]) -> list[str]:
    reached: dict[str, None] = {}
    first = [n for plans in kinds for n in (plans.default if start is None else plans.get(start))]
    pending = list(reversed(first))
    while pending:
        current = pending.pop()
        if current == start or current in reached:
            continue
        reached[current] = None
        for plans in kinds:
            pending.extend(reversed(plans.get(current)))
    return list(reached)
