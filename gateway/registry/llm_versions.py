"""`registry/NAME@REF` as the model of a chat or embeddings call: the registry version it
names, and the alias that serves it, from memory.

`registry/NAME@3` is version 3, `registry/NAME@staging` the version labelled staging,
`registry/NAME@latest` the newest, and `registry/NAME` the version labelled production (what
the Open Inference Protocol's `/v2/models/NAME` serves too). Every LLM version's alias and
every label are held in memory; a poller re-reads new versions and label moves twice a second
(store/polling.py), so a label move changes what answers within a second on every replica,
and resolving a name is dict lookups.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.core.errors import BadRequest, ModelNotFound
from gateway.core.model_refs import LABEL, LATEST, NAME, VERSION
from gateway.registry.store import RegistryStore
from gateway.store.polling import Poller

PREFIX = "registry/"
PRODUCTION = "production"  # what `registry/NAME` names


@dataclass(frozen=True, slots=True)
class LlmVersion:
    name: str
    version: int
    alias: str  # the config model_name that serves it

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def is_registry_ref(model: str) -> bool:
    return model.startswith(PREFIX)


class LlmVersions:
    def __init__(self, store: RegistryStore) -> None:
        self.store = store
        self._versions: dict[str, dict[int, LlmVersion]] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._poller = Poller("llm-versions", self._refresh)

    # --- kept fresh, off the request path -----------------------------------------------------
    def _refresh(self, since: datetime) -> None:
        versions, labels = self.store.llm_changes(since)
        for row in versions:
            served = self._versions.setdefault(row.name, {})
            served[row.version] = LlmVersion(row.name, row.version, row.alias)
        for row in labels:
            self._labels.setdefault(row.name, {})[row.label] = row.version

    def refresh(self) -> None:
        """Re-reads now (after a change this replica made, so it serves it at once)."""
        self._poller.refresh()

    async def start(self) -> None:
        await self._poller.start()

    async def aclose(self) -> None:
        await self._poller.aclose()

    # --- the request path: dict lookups -------------------------------------------------------
    def knows(self, name: str) -> bool:
        """Whether `name` has an LLM version here (a classic model's label moves are not ours)."""
        return name in self._versions

    def resolve(self, model: str) -> LlmVersion:
        """The version `registry/NAME[@REF]` names; a 404 naming what is missing."""
        name, at, ref = model.removeprefix(PREFIX).partition("@")
        if not NAME.fullmatch(name) or (
            at and not (ref == LATEST or VERSION.fullmatch(ref) or LABEL.fullmatch(ref))
        ):
            raise BadRequest(
                f"model {model!r}: a registry model is named registry/NAME (its production "
                f"version), registry/NAME@N (version N) or registry/NAME@LABEL",
                param="model",
            )
        versions = self._versions.get(name)
        if not versions:
            raise ModelNotFound(
                f"The model {model!r} does not exist: the registry has no LLM model named "
                f"{name!r} (gateway registry list shows the registered ones; a fine-tune is "
                f"added with gateway registry finetune import JOB.json).",
                param="model",
            )
        labels = self._labels.get(name, {})
        if not at:
            ref = PRODUCTION
        if ref == LATEST:
            return versions[max(versions)]
        if VERSION.fullmatch(ref):
            found = versions.get(int(ref))
            if found is None:
                known = ", ".join(str(v) for v in sorted(versions))
                raise ModelNotFound(
                    f"The model {model!r} does not exist: registry model {name!r} has no "
                    f"version {ref} (versions: {known}).",
                    param="model",
                )
            return found
        number = labels.get(ref)
        if number is None or number not in versions:
            known = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none yet"
            how = f"gateway registry promote {name}@N {ref} --approver WHO"
            raise ModelNotFound(
                f"The model {model!r} does not exist: registry model {name!r} has no version "
                f"labelled {ref!r} (labels: {known}; set it with: {how}, or name a version: "
                f"registry/{name}@N).",
                param="model",
            )
        return versions[number]
