"""The prompts a replica serves: every stored version and label, in memory.

Resolution on the request path is a dict lookup. A background task polls the database for
new versions and label moves twice a second, so a sync or a promote reaches every replica
within a second. A version whose stored text no longer parses is skipped and logged; the
versions that do parse keep serving.
"""

from __future__ import annotations

import hashlib
import logging
import random
from datetime import datetime
from typing import Any

from gateway.core.errors import NotFound
from gateway.prompts.files import PromptError, PromptFile
from gateway.prompts.store import LATEST, PRODUCTION, PromptStore, stored_prompt
from gateway.store.polling import Poller

log = logging.getLogger("gateway.prompts")


def pick_version(target: dict[str, Any], sticky: str | None) -> str:
    """One version of a label; with weights, the same sticky key always gets the same one."""
    if "version" in target:
        return str(target["version"])
    weights = sorted(target["weights"].items())
    total = sum(w for _, w in weights)
    if sticky:
        digest = hashlib.sha256(sticky.encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64 * total
    else:
        point = random.random() * total
    for version, weight in weights:
        point -= weight
        if point < 0:
            return str(version)
    return str(weights[-1][0])


class PromptCatalog:
    def __init__(self, store: PromptStore) -> None:
        self.store = store
        self.versions: dict[str, dict[str, PromptFile]] = {}
        self.labels: dict[str, dict[str, dict[str, Any]]] = {}
        self.errors: list[str] = []  # problems of the last sync of the working tree
        self.removed: set[str] = set()  # prompts whose file the last sync did not find
        self._poller = Poller("prompt-catalog", self._load)

    def _load(self, since: datetime) -> None:
        versions, labels = self.store.changed_since(since)
        for row in versions:
            if row.version in self.versions.get(row.name, {}):
                continue
            try:
                prompt = stored_prompt(row.name, row.path, row.content, row.includes)
            except PromptError as exc:
                log.error("stored prompt %s@%s does not parse: %s", row.name, row.version, exc)
                continue
            self.versions.setdefault(row.name, {})[row.version] = prompt
        for row in labels:
            self.labels.setdefault(row.name, {})[row.label] = dict(row.target)

    def refresh(self) -> None:
        self._poller.refresh()

    async def start(self) -> None:
        await self._poller.start()

    async def aclose(self) -> None:
        await self._poller.aclose()

    def label_target(self, name: str, label: str) -> dict[str, Any] | None:
        """Where `label` of prompt `name` points, or None."""
        return self.labels.get(name, {}).get(label)

    def resolve(
        self,
        name: str,
        label: str | None = None,
        version: str | None = None,
        sticky: str | None = None,
    ) -> PromptFile:
        versions = self.versions.get(name)
        if not versions:
            raise NotFound(
                f"No prompt named {name!r} (GET /v1/prompts lists them; files are registered "
                f"by `gateway prompts sync`).",
                param="prompt.name",
            )
        if version is not None:
            prompt = versions.get(version)
            if prompt is None:
                raise NotFound(f"Prompt {name!r} has no version {version!r}.", param="prompt")
            return prompt
        label = label or PRODUCTION
        labels = self.labels.get(name, {})
        target = labels.get(label)
        if target is None:
            if label in versions:  # "name@<version>" written where a label was expected
                return versions[label]
            known = ", ".join(sorted(labels)) or "none"
            raise NotFound(
                f"Prompt {name!r} has no label {label!r} (labels: {known}).", param="prompt"
            )
        chosen = pick_version(target, f"{name}:{label}:{sticky}" if sticky else None)
        prompt = versions.get(chosen)
        if prompt is None:  # label moved before this replica saw the version: use latest
            fallback = labels.get(LATEST, {}).get("version")
            prompt = versions.get(str(fallback)) if fallback else None
            if prompt is None:
                raise NotFound(f"Prompt {name!r} version {chosen} is not loaded yet; retry.")
        return prompt
