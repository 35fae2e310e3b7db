"""What a key limited to some prompts or models may read of eval runs and the registry.

A thing the key may not use is answered as if it did not exist (404), as prompts are; lists
leave it out. The master key and unrestricted keys see everything, without any lookup.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from gateway.core.errors import NotFound
from gateway.core.model_refs import EVAL_PREFIX, VERSION
from gateway.evals.models import RunSummary
from gateway.identity.auth import Caller
from gateway.identity.keys import KeyRecord
from gateway.registry.models import RegistryModel, RegistryModelSummary
from gateway.registry.store import RegistryStore, no_model

Shown = TypeVar("Shown", RegistryModel, RegistryModelSummary)


class Visibility:
    """Answers for one request (call it from a worker thread: registry checks read the
    database once)."""

    def __init__(self, caller: Caller, registry: RegistryStore, aliases: Iterable[str]) -> None:
        self.key: KeyRecord | None = caller.key
        self.registry = registry
        self.configured = set(aliases)
        self._served_by: dict[tuple[str, int], str] | None = None

    @property
    def everything(self) -> bool:
        return self.key is None or not (self.key.models or self.key.prompts)

    def prompt(self, name: str) -> bool:
        return self.key is None or self.key.allows_prompt(name)

    def model(self, alias: str) -> bool:
        return self.key is None or self.key.allows_model(alias)

    def registry_version(self, name: str, number: int) -> bool:
        if self.key is None or not self.key.models:
            return True
        if self._served_by is None:
            self._served_by = self.registry.aliases()
        alias = self._served_by.get((name, number))
        return alias is not None and self.model(alias)

    def tested(self, version: str) -> bool:
        """An eval run's version: registry:NAME@N, a prompt's NAME@VERSION, or a model alias."""
        if self.everything:
            return True
        if version.startswith(EVAL_PREFIX):
            name, _, number = version.removeprefix(EVAL_PREFIX).partition("@")
            return VERSION.fullmatch(number) is not None and self.registry_version(
                name, int(number)
            )
        if version in self.configured or "@" not in version:
            return self.model(version)
        return self.prompt(version.partition("@")[0])  # prompt names have no '@'

    def run(self, summary: RunSummary) -> bool:
        baseline = summary.baseline_version
        return self.tested(summary.version) and (baseline is None or self.tested(baseline))

    # --- the registry ----------------------------------------------------------------------
    def versions(self, name: str) -> set[int] | None:
        """The versions of a model this key may see; None means all of them."""
        if self.key is None or not self.key.models:
            return None
        if self._served_by is None:
            self._served_by = self.registry.aliases()
        return {
            number
            for (model, number), alias in self._served_by.items()
            if model == name and self.model(alias)
        }

    def model_shown(self, model: Shown) -> Shown | None:
        """A model as GET /v1/registry/models[/{name}] shows it, cut to what the key may see."""
        seen = self.versions(model.name)
        if seen is None:
            return model
        if not seen:
            return None
        cut: dict[str, Any] = {
            "latest": max(seen),
            "labels": {k: v for k, v in model.labels.items() if v in seen},
        }
        if isinstance(model, RegistryModel):
            cut["versions"] = [v for v in model.versions if v.version in seen]
        return model.model_copy(update=cut)

    def require_version(self, name: str, number: int) -> None:
        seen = self.versions(name)
        if seen is None or number in seen:
            return
        if not seen:
            raise no_model(name)
        raise NotFound(f"Registry model {name!r} has no version {number}.", param="ref")
