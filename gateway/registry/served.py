"""The classic registry versions a replica serves: every version of the registry models its
config names (`model: registry/NAME`), their labels and loaded artifacts, in memory.

Resolving a version on the request path is dict lookups. A poller re-reads new versions and
label moves twice a second (store/polling.py), so a promotion takes effect on every replica
within a second. Artifacts load in a worker thread of their own, off the event loop and off
the poll: a version is loaded as soon as it is the newest or carries a label, any other on
its first call. Until it has loaded, or when its artifact fails its sha256 check or does not
load, it answers 503 saying why (and its ready answer says so too).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.classic.artifacts import Artifact, ArtifactProblem, load
from gateway.classic.expectations import CompiledExpectations, Expectations
from gateway.classic.serving import ModelNotReady, ServedVersion
from gateway.classic.signature import Signature
from gateway.core.daemon_worker import DaemonWorker
from gateway.core.errors import NotFound
from gateway.core.model_refs import LATEST, VERSION
from gateway.registry.store import RegistryStore
from gateway.store.polling import Poller

log = logging.getLogger("gateway.classic")

PRODUCTION = "production"  # what a call naming no version gets
LOADING_RETRY_S = 1.0
CLOSE_WAIT_S = 10.0  # for a load under way when the app closes; a hung one is left behind

Loader = Callable[[Artifact, Signature], Any]


@dataclass
class _Model:
    versions: dict[int, ServedVersion] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)


class ServedVersions:
    def __init__(
        self,
        store: RegistryStore,
        names: Collection[str],
        loader: Loader = load,
        close_wait: float = CLOSE_WAIT_S,
    ) -> None:
        self.store = store
        self.models = {name: _Model() for name in names}
        self._load = loader
        self._close_wait = close_wait
        self._poller = Poller("classic-versions", self._refresh)
        self._loader: DaemonWorker[ServedVersion, None] | None = None

    # --- kept fresh, off the request path -----------------------------------------------------
    def _refresh(self, since: datetime) -> None:
        rows, labels = self.store.classic_changes(list(self.models), since)
        for row in rows:
            model = self.models[row.name]
            if row.version not in model.versions:
                model.versions[row.version] = _served(row)
        for row in labels:
            self.models[row.name].labels[row.label] = row.version
        for model in self.models.values():
            if model.versions:
                wanted = {*model.labels.values(), max(model.versions)}
                for number in wanted:
                    served = model.versions.get(number)
                    if served is not None and served.state == "registered":
                        self._start_loading(served)

    def _start_loading(self, served: ServedVersion) -> None:
        served.state = "loading"
        if self._loader is None:
            # A daemon thread: a load that hangs must not keep the process from exiting.
            self._loader = DaemonWorker("classic-load")
        self._loader.submit(self._load_version, served)

    def _load_version(self, served: ServedVersion) -> None:
        try:
            if served.artifact is None or served.signature is None:
                raise ArtifactProblem(
                    f"{served.ref} records no artifact to serve in process (register it with "
                    f"--artifact FILE, or serve it from a v2 server)"
                )
            served.runtime = self._load(served.artifact, served.signature)
        except ArtifactProblem as problem:
            served.problem = str(problem)
            served.state = "failed"
            log.error("classic model %s is not ready: %s", served.ref, problem)
            return
        except Exception:  # never leave a version "loading" forever
            log.exception("classic model %s failed to load", served.ref)
            served.problem = f"{served.ref} failed to load (the gateway's log has why)"
            served.state = "failed"
            return
        served.state = "ready"
        log.info("classic model %s loaded (%s)", served.ref, served.artifact.framework)

    def refresh(self) -> None:
        self._poller.refresh()

    async def start(self) -> None:
        if self.models:
            await self._poller.start()

    async def aclose(self) -> None:
        await self._poller.aclose()
        if self._loader is not None:
            loader, self._loader = self._loader, None
            # Queued loads are dropped; one under way may finish first, so no thread is left
            # writing to versions after the app that owns them has closed; but a load that
            # hangs (a stuck file system, a model that never returns) must not hang shutdown,
            # so it is awaited as a future, holding no thread of the event loop's.
            running = loader.shutdown()
            if running is not None:
                _, pending = await asyncio.wait(
                    [asyncio.wrap_future(running)], timeout=self._close_wait
                )
                if pending:
                    log.warning(
                        "a classic model still loading after %.0f s was left behind at shutdown",
                        self._close_wait,
                    )

    # --- the request path: dict lookups -------------------------------------------------------
    def versions(self, name: str) -> list[int]:
        return sorted(self.models[name].versions)

    def resolve(self, name: str, ref: str | None) -> ServedVersion:
        """The version, ready to predict; else NotFound or ModelNotReady saying why."""
        served = self.find(name, ref)
        if served.state == "ready":
            return served
        if served.state == "failed":
            raise ModelNotReady(f"{served.ref} is not ready: {served.problem}")
        if served.state == "registered":
            self._start_loading(served)
        raise ModelNotReady(
            f"{served.ref} is loading; retry in a moment",
            headers={"retry-after": str(int(LOADING_RETRY_S))},
        )

    def find(self, name: str, ref: str | None) -> ServedVersion:
        """The version a ref names, whatever its state (its metadata is known either way)."""
        model = self.models[name]
        if not model.versions:
            raise ModelNotReady(
                f"registry model {name!r} has no classic version yet (train the example: "
                f"gateway registry train-example, or register one: gateway registry register "
                f"{name} --kind classic --artifact FILE)"
            )
        number = self._number(name, model, ref)
        served = model.versions.get(number)
        if served is None:
            known = ", ".join(str(v) for v in sorted(model.versions))
            raise NotFound(f"registry model {name!r} has no version {number} (versions: {known})")
        return served

    @staticmethod
    def _number(name: str, model: _Model, ref: str | None) -> int:
        if ref is None:
            number = model.labels.get(PRODUCTION)
            if number is None:
                raise ModelNotReady(
                    f"no version of registry model {name!r} is labelled {PRODUCTION} yet "
                    f"(gateway registry promote {name}@N {PRODUCTION} --approver WHO), or name "
                    f"one in the path: /versions/N"
                )
            return number
        if ref == LATEST:
            return max(model.versions)
        if VERSION.fullmatch(ref):
            return int(ref)
        number = model.labels.get(ref)
        if number is None:
            known = ", ".join(sorted(model.labels)) or "none yet"
            raise NotFound(
                f"registry model {name!r} has no version or label {ref!r} (labels: {known})"
            )
        return number


def _served(row: Any) -> ServedVersion:
    signature = None
    if row.signature is not None:
        try:
            signature = Signature.model_validate(row.signature)
        except ValueError:
            log.error(
                "registry version %s@%s: its stored signature does not parse", row.name, row.version
            )
    artifact = None
    if row.artifact and row.artifact_sha256 and row.framework:
        artifact = Artifact(
            row.artifact,
            row.artifact_sha256,
            row.framework,
            tuple(row.trusted_types or ()),
            bool(row.trusted),
        )
    served = ServedVersion(row.name, row.version, artifact, signature)
    if row.expectations and signature is not None:
        try:
            expected = Expectations.model_validate(row.expectations)
        except ValueError:
            log.error(
                "registry version %s: its stored expectations do not parse; served unchecked",
                served.ref,
            )
        else:
            served.expectations = CompiledExpectations.build(expected, signature, served.ref)
    return served
