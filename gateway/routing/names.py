"""Which deployments a requested model name reaches, as LiteLLM's router resolves it:

1. `router_settings.model_group_alias` renames it (once: an alias of an alias is not followed);
2. a `model_name` equal to it wins;
3. else the most specific wildcard `model_name` that matches it, or, for a name whose
   provider the price map knows (`gpt-4o`: openai), that matches it with the provider's
   prefix (`openai/gpt-4o`). The wildcard's deployments are copied with the captured text
   put into their `model` (`openai/*` asked for `openai/gpt-4o-mini` calls `gpt-4o-mini`).

An exact name is one dict lookup. Wildcards are tried only on a miss, and what a name
resolved to (a miss included) is kept in a bounded table, so each name is matched once. A
wildcard's copies keep the deployment's id (its limits, transport and x-gateway-model are
the deployment's), but their health is their own: one model failing does not cool down the
others a wildcard serves. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Generic, TypeVar

from gateway.core.wildcards import (
    WildcardName,
    first_match,
    is_wildcard,
    most_specific_first,
    upstream_model,
)
from gateway.providers import Deployment, split_model
from gateway.providers.catalogue import ModelCatalogue

S = TypeVar("S")
# Distinct names a wildcard may be asked for are unbounded (any text matches `*`): the table
# of resolved ones forgets the oldest beyond this.
MAX_RESOLVED = 2048


class ModelNames(Generic[S]):
    """Requested names -> the states (`make_state(deployment)`) of the deployments serving them."""

    def __init__(
        self,
        deployments: Iterable[Deployment],
        make_state: Callable[[Deployment], S],
        group_aliases: Mapping[str, str] | None = None,
        hidden: Iterable[str] = (),
        catalogue: ModelCatalogue | None = None,
    ) -> None:
        self._make_state = make_state
        self.exact: dict[str, list[S]] = {}
        self._templates: dict[str, list[Deployment]] = {}
        for deployment in deployments:
            if is_wildcard(deployment.alias):
                self._templates.setdefault(deployment.alias, []).append(deployment)
            else:
                self.exact.setdefault(deployment.alias, []).append(make_state(deployment))
        self.patterns = most_specific_first(self._templates)
        self.group_aliases = dict(group_aliases or {})
        self.hidden = frozenset(hidden)
        self.catalogue = catalogue
        self._resolved: dict[str, list[S] | None] = {}
        self._listed = self._list()

    def target(self, name: str) -> str:
        """The model group a name is routed as: its model_group_alias target, or itself."""
        return self.group_aliases.get(name, name)

    def find(self, name: str) -> list[S] | None:
        if self.group_aliases:
            name = self.group_aliases.get(name, name)
        states = self.exact.get(name)
        if states is not None or not self.patterns:
            return states
        resolved = self._resolved
        if name in resolved:
            return resolved[name]
        states = self._by_wildcard(name)
        if len(resolved) >= MAX_RESOLVED:
            del resolved[next(iter(resolved))]
        resolved[name] = states
        return states

    def _by_wildcard(self, name: str) -> list[S] | None:
        if is_wildcard(name):  # a pattern is not a model to call
            return None
        matched = name
        found = first_match(self.patterns, name)
        if found is None and self.catalogue is not None:
            provider = self.catalogue.provider_of(name)
            if provider is not None and not name.startswith(f"{provider}/"):
                matched = f"{provider}/{name}"
                found = first_match(self.patterns, matched)
        if found is None:
            return None
        pattern, captured = found
        return [
            self._make_state(
                self._copy(template, upstream_model(captured, matched, template.model), name)
            )
            for template in self._templates[pattern.name]
        ]

    def _copy(self, template: Deployment, model: str, name: str) -> Deployment:
        if "/" not in model and self.catalogue is not None:
            # `model: "*"` passes the name on: LiteLLM infers the provider of a name it knows
            # (claude-sonnet-4-5: anthropic), where a bare name is otherwise OpenAI's.
            provider = self.catalogue.provider_of(model)
            if provider is not None:
                model = f"{provider}/{model}"
        provider, upstream = split_model(model)
        return replace(
            template, alias=name, model=model, provider=provider, upstream_model=upstream
        )

    def listed(self) -> list[str]:
        """What GET /v1/models shows: the model_names, the aliases not hidden, and for each
        provider wildcard (`openai/*`) the names of the provider's models in the price map
        that it serves, as LiteLLM lists them (never the `*` itself)."""
        return list(self._listed)

    def _list(self) -> list[str]:
        names = dict.fromkeys(self.exact)
        names.update(dict.fromkeys(a for a in self.group_aliases if a not in self.hidden))
        for pattern in self.patterns:
            for template in self._templates[pattern.name]:
                names.update(dict.fromkeys(self._expansions(pattern, template)))
        return list(names)

    def known(self) -> list[str]:
        """Every name worth a metrics series of its own: the listed ones and hidden aliases."""
        return [*self.listed(), *self.hidden]

    def _expansions(self, pattern: WildcardName, template: Deployment) -> list[str]:
        """The price map's models of the template's provider, named as this pattern serves
        them. A catch-all `model: "*"` names no provider, and a pattern or model with several
        `*`s cannot be inverted: those list nothing (they still route)."""
        if self.catalogue is None or pattern.name.count("*") != 1:
            return []
        if template.model.count("*") != 1 or "/" not in template.model.partition("*")[0]:
            return []
        provider = template.model.partition("/")[0]
        head, _, tail = template.model.partition("*")
        asked_head, _, asked_tail = pattern.name.partition("*")
        modes = {"chat", "embedding"} if template.mode == "chat" else {template.mode}
        names = []
        for known in self.catalogue.models_of(provider):
            if known.mode not in modes:
                continue
            model = known.name
            if not model.startswith(f"{provider}/"):
                model = f"{provider}/{model}"
            middle = len(model) - len(head) - len(tail)
            if middle > 0 and model.startswith(head) and model.endswith(tail):
                captured = model[len(head) : len(head) + middle]
                names.append(f"{asked_head}{captured}{asked_tail}")
        return sorted(names)
