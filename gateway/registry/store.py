"""Registered models, their versions and labels in the database.

Versions are numbered 1, 2, 3... per model and immutable. Labels move; every move is kept
with its approver, who made it, from, to, and the eval run that allowed it. Synchronous:
the server calls it from a worker thread.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, func, select
from sqlalchemy.exc import IntegrityError

from gateway.core.errors import GatewayError, NotFound
from gateway.core.model_refs import (
    EVAL_PREFIX,
    LATEST,
    NAME,
    ModelRef,
    check_label,
    check_name,
    eval_version,
    parse_ref,
)
from gateway.evals.store import EvalStore
from gateway.registry import lineage
from gateway.registry.models import (
    Descendant,
    EvalLink,
    Lineage,
    RegistryLabelMove,
    RegistryLabelSet,
    RegistryModel,
    RegistryModelSummary,
    RegistryVersion,
    RegistryVersionDetail,
)
from gateway.registry.spec import VersionSpec, check_alias
from gateway.store.rows import put_row
from gateway.store.tables import (
    registry_label_history,
    registry_labels,
    registry_models,
    registry_versions,
)

LINKED_EVALS = 20  # the latest runs shown with a version; /v1/evals/runs?version= has all


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime) -> str:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def no_model(name: str) -> NotFound:
    return NotFound(
        f"No registry model named {name!r} (register one: gateway registry register {name} "
        f"--alias ALIAS).",
        param="name",
    )


class AlreadyImported(GatewayError):
    """The provider's job already has a version: importing it again registers nothing."""

    status = 409
    type = "invalid_request_error"
    code = "already_imported"

    def __init__(self, job_id: str, ref: str) -> None:
        super().__init__(
            f"fine-tuning job {job_id} was already imported as {ref} (nothing registered; "
            f"gateway registry show {ref} shows it)",
            param="id",
        )
        self.ref = ref


class RegistryStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.evals = EvalStore(engine)  # to show the runs that tested a version

    # --- versions -------------------------------------------------------------------------
    def register(
        self, name: str, spec: VersionSpec, *, aliases: Collection[str], actor: str
    ) -> RegistryVersionDetail:
        """Stores the next version of `name`; `aliases` are the config's model names."""
        check_name(name)
        check_alias(spec.alias, aliases)
        if spec.job_id is not None:
            self.refuse_reimport(spec.job_id)
        base_name, base_version, base_external = self._base(spec.base)
        created_by = spec.created_by or actor
        self._ensure_model(name, created_by)
        try:
            number = self._insert(name, spec, base_name, base_version, base_external, created_by)
        except IntegrityError:
            if spec.job_id is not None:  # another replica imported the same job just now
                self.refuse_reimport(spec.job_id)
            raise
        return self.version(ModelRef(name, str(number)))

    def imported(self, job_id: str) -> str | None:
        """NAME@N of the version imported from a provider's job, if any."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(registry_versions.c.name, registry_versions.c.version).where(
                    registry_versions.c.job_id == job_id
                )
            ).first()
        return None if row is None else f"{row.name}@{row.version}"

    def refuse_reimport(self, job_id: str) -> None:
        ref = self.imported(job_id)
        if ref is not None:
            raise AlreadyImported(job_id, ref)

    def _insert(
        self,
        name: str,
        spec: VersionSpec,
        base_name: str | None,
        base_version: int | None,
        base_external: str | None,
        created_by: str,
    ) -> int:
        with self.engine.begin() as connection:
            stamp = self._lock(connection, name)
            latest = connection.execute(
                select(func.max(registry_versions.c.version)).where(
                    registry_versions.c.name == name
                )
            ).scalar()
            number = (latest or 0) + 1
            connection.execute(
                registry_versions.insert().values(
                    name=name,
                    version=number,
                    kind=spec.kind,
                    alias=spec.alias,
                    base_name=base_name,
                    base_version=base_version,
                    base_external=base_external,
                    dataset=spec.dataset,
                    dataset_hash=spec.dataset_hash,
                    hyperparameters=spec.hyperparameters,
                    description=spec.description,
                    tags=spec.tags,
                    metadata=spec.metadata,
                    created_at=stamp,
                    created_by=created_by,
                    artifact=spec.artifact,
                    artifact_sha256=spec.artifact_sha256,
                    framework=spec.framework,
                    signature=spec.signature.model_dump() if spec.signature else None,
                    trusted_types=spec.trusted_types or None,
                    trusted=spec.trusted or None,
                    feature_stats=spec.feature_stats,
                    job_id=spec.job_id,
                    expectations=spec.expectations.model_dump(exclude_none=True)
                    if spec.expectations
                    else None,
                )
            )
        return number

    def _base(self, text: str | None) -> tuple[str | None, int | None, str | None]:
        """(registry name, version) for `NAME@REF`, else the text as an external base."""
        if text is None:
            return None, None, None
        text = text.strip()
        explicit = text.startswith(EVAL_PREFIX)
        name, at, _ = text.removeprefix(EVAL_PREFIX).partition("@")
        if not explicit and not (at and NAME.fullmatch(name)):
            return None, None, text  # e.g. gpt-4o-mini-2024-07-18
        ref = parse_ref(text)
        try:
            # Resolved now: lineage names the version the model was built on, even if the
            # label moves later.
            return ref.name, self.resolve(ref), None
        except NotFound as exc:
            raise NotFound(
                f"base {text!r}: {exc.message} An external base is free text without '@'.",
                param="base",
            ) from None

    def _ensure_model(self, name: str, actor: str) -> None:
        with self.engine.connect() as connection:
            found = connection.execute(
                select(registry_models.c.name).where(registry_models.c.name == name)
            ).first()
        if found is not None:
            return
        stamp = now_utc()
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    registry_models.insert().values(
                        name=name, created_at=stamp, created_by=actor, updated_at=stamp
                    )
                )
        except IntegrityError:
            pass  # another replica registered the model's first version at the same moment

    @staticmethod
    def _lock(connection: Connection, name: str) -> datetime:
        """Writes first, so concurrent writers to one model queue here (a row lock on
        PostgreSQL, the write lock on SQLite) instead of reading stale numbers or labels."""
        stamp = now_utc()
        connection.execute(
            registry_models.update().where(registry_models.c.name == name).values(updated_at=stamp)
        )
        return stamp

    def resolve(self, ref: ModelRef) -> int:
        """The version number a ref points at."""
        with self.engine.connect() as connection:
            latest = connection.execute(
                select(func.max(registry_versions.c.version)).where(
                    registry_versions.c.name == ref.name
                )
            ).scalar()
            if latest is None:
                raise no_model(ref.name)
            if ref.ref == LATEST:
                return int(latest)
            if ref.version is not None:
                if ref.version > latest:
                    raise NotFound(
                        f"Registry model {ref.name!r} has no version {ref.version} "
                        f"(latest is {latest}).",
                        param="ref",
                    )
                return ref.version
            pointers = self._labels(connection, ref.name)
        if ref.ref not in pointers:
            known = ", ".join(sorted(pointers)) or "none yet"
            raise NotFound(
                f"Registry model {ref.name!r} has no label {ref.ref!r} (labels: {known}; set "
                f"one with: gateway registry promote {ref.name}@N {ref.ref} --approver WHO).",
                param="ref",
            )
        return pointers[ref.ref]

    def version(self, ref: ModelRef) -> RegistryVersionDetail:
        """One version with the labels on it and the eval runs that tested it."""
        number = self.resolve(ref)
        with self.engine.connect() as connection:
            row = self._row(connection, ref.name, number)
            pointers = self._labels(connection, ref.name)
        runs = self.evals.runs(version=eval_version(ref.name, number), limit=LINKED_EVALS)
        return RegistryVersionDetail(
            **_fields(row),
            labels=sorted(label for label, v in pointers.items() if v == number),
            evals=[
                EvalLink(
                    id=run.id,
                    suite=run.suite,
                    passed=run.passed,
                    pass_rate=run.pass_rate,
                    created_at=run.created_at,
                )
                for run in runs
            ],
        )

    @staticmethod
    def _row(connection: Connection, name: str, number: int) -> Row[Any]:
        row = connection.execute(
            select(registry_versions).where(
                registry_versions.c.name == name, registry_versions.c.version == number
            )
        ).first()
        if row is None:
            raise NotFound(f"Registry model {name!r} has no version {number}.", param="ref")
        return row

    def model(self, name: str) -> RegistryModel:
        check_name(name)
        with self.engine.connect() as connection:
            head = connection.execute(
                select(registry_models).where(registry_models.c.name == name)
            ).first()
            rows = connection.execute(
                select(registry_versions)
                .where(registry_versions.c.name == name)
                .order_by(registry_versions.c.version)
            ).all()
            pointers = self._labels(connection, name)
        if head is None or not rows:
            raise no_model(name)
        return RegistryModel(
            name=name,
            latest=rows[-1].version,
            labels=pointers,
            created_at=iso(head.created_at),
            created_by=head.created_by,
            updated_at=iso(head.updated_at),
            versions=[record(r) for r in rows],
        )

    def models(self) -> list[RegistryModelSummary]:
        with self.engine.connect() as connection:
            heads = connection.execute(
                select(registry_models).order_by(registry_models.c.name)
            ).all()
            counts = dict(
                connection.execute(
                    select(
                        registry_versions.c.name, func.max(registry_versions.c.version)
                    ).group_by(registry_versions.c.name)
                ).all()
            )
            every_label: dict[str, dict[str, int]] = {}
            for row in connection.execute(select(registry_labels)):
                every_label.setdefault(row.name, {})[row.label] = row.version
        return [
            RegistryModelSummary(
                name=head.name,
                latest=counts[head.name],
                labels=every_label.get(head.name, {}),
                updated_at=iso(head.updated_at),
            )
            for head in heads
            if head.name in counts  # a model row whose first registration failed
        ]

    def aliases(self, name: str | None = None) -> dict[tuple[str, int], str]:
        """The alias serving each version (of one model, or of all): what a key limited to
        some models may see of the registry follows from it."""
        query = select(
            registry_versions.c.name, registry_versions.c.version, registry_versions.c.alias
        )
        if name is not None:
            query = query.where(registry_versions.c.name == name)
        with self.engine.connect() as connection:
            return {(r.name, r.version): r.alias for r in connection.execute(query)}

    def lineage(self, ref: ModelRef) -> Lineage:
        number = self.resolve(ref)
        with self.engine.connect() as connection:
            row = self._row(connection, ref.name, number)
            up = lineage.ancestors(connection, row)
            down = lineage.descendants(connection, row)
        return Lineage(
            version=record(row),
            ancestors=[record(r) for r in up],
            descendants=[Descendant(**_fields(r), depth=depth) for r, depth in down],
        )

    def classic_changes(
        self, names: Collection[str], since: datetime
    ) -> tuple[list[Row[Any]], list[Row[Any]]]:
        """Classic versions registered and labels moved since `since`, of the models named:
        what a replica serving them re-reads (see registry/served.py)."""
        if not names:
            return [], []
        with self.engine.connect() as connection:
            versions = connection.execute(
                select(registry_versions).where(
                    registry_versions.c.name.in_(names),
                    registry_versions.c.kind == "classic",
                    registry_versions.c.created_at >= since,
                )
            ).all()
            labels = connection.execute(
                select(registry_labels).where(
                    registry_labels.c.name.in_(names), registry_labels.c.updated_at >= since
                )
            ).all()
        return list(versions), list(labels)

    def llm_changes(self, since: datetime) -> tuple[list[Row[Any]], list[Row[Any]]]:
        """Labels moved and LLM versions registered since `since`: what a replica routing
        `registry/NAME@REF` model strings re-reads (see registry/llm_versions.py). Labels are
        read first: every version a label read names was committed before the versions read,
        so the versions read include it."""
        with self.engine.connect() as connection:
            labels = connection.execute(
                select(registry_labels).where(registry_labels.c.updated_at >= since)
            ).all()
            versions = connection.execute(
                select(registry_versions).where(
                    registry_versions.c.kind == "llm", registry_versions.c.created_at >= since
                )
            ).all()
        return list(versions), list(labels)

    def finetune_of(self, fine_tuned_model: str) -> str | None:
        """NAME@N of the version imported as this fine-tuned model, if any: a fine-tune of a
        fine-tune names it as its base."""
        with self.engine.connect() as connection:
            versions = registry_versions.c
            rows = connection.execute(
                select(versions.name, versions.version, versions.metadata).where(
                    versions.job_id.is_not(None)
                )
            ).all()
        for row in rows:
            if (row.metadata or {}).get("fine_tuned_model") == fine_tuned_model:
                return f"{row.name}@{row.version}"
        return None

    # --- labels ---------------------------------------------------------------------------
    @staticmethod
    def _labels(connection: Connection, name: str) -> dict[str, int]:
        rows = connection.execute(select(registry_labels).where(registry_labels.c.name == name))
        return {r.label: r.version for r in rows}

    def set_label(
        self,
        name: str,
        label: str,
        number: int,
        *,
        approver: str,
        actor: str,
        reason: str | None = None,
        eval_suite: str | None = None,
        eval_run: str | None = None,
    ) -> RegistryLabelSet:
        """Points a label at a version and records the move (no record when nothing moves)."""
        check_label(label)
        self.resolve(ModelRef(name, str(number)))
        with self.engine.begin() as connection:
            stamp = self._lock(connection, name)
            old = self._labels(connection, name).get(label)
            if old != number:
                key = {"name": name, "label": label}
                pointer = {"version": number, "updated_at": stamp, "updated_by": approver}
                put_row(connection, registry_labels, key, pointer, exists=old is not None)
                connection.execute(
                    registry_label_history.insert().values(
                        **key,
                        from_version=old,
                        to_version=number,
                        approver=approver,
                        actor=actor,
                        reason=reason,
                        eval_suite=eval_suite,
                        eval_run=eval_run,
                        at=stamp,
                    )
                )
        return RegistryLabelSet(
            name=name,
            label=label,
            since=old,
            to=number,
            moved=old != number,
            approver=approver,
            eval_run=eval_run,
        )

    def history(self, name: str, label: str | None = None) -> list[RegistryLabelMove]:
        self.resolve(ModelRef(name))  # an unknown model is a 404, not an empty trail
        query = select(registry_label_history).where(registry_label_history.c.name == name)
        if label is not None:
            query = query.where(registry_label_history.c.label == label)
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(registry_label_history.c.id)).all()
        return [
            RegistryLabelMove(
                label=r.label,
                since=r.from_version,
                to=r.to_version,
                approver=r.approver,
                actor=r.actor,
                reason=r.reason,
                eval_suite=r.eval_suite,
                eval_run=r.eval_run,
                at=iso(r.at),
            )
            for r in rows
        ]


def record(row: Row[Any]) -> RegistryVersion:
    """A version as the API and CLI show it."""
    return RegistryVersion(**_fields(row))


def _fields(row: Row[Any]) -> dict[str, Any]:
    values = row._mapping
    base: dict[str, Any] | None = None
    if values["base_name"] is not None:
        base = {
            "kind": "registry",
            "name": values["base_name"],
            "version": values["base_version"],
            "ref": f"{values['base_name']}@{values['base_version']}",
        }
    elif values["base_external"] is not None:
        base = {"kind": "external", "ref": values["base_external"]}
    return {
        "name": values["name"],
        "version": values["version"],
        "ref": f"{values['name']}@{values['version']}",
        "kind": values["kind"],
        "alias": values["alias"],
        "base": base,
        "dataset": values["dataset"],
        "dataset_hash": values["dataset_hash"],
        "hyperparameters": values["hyperparameters"],
        "description": values["description"],
        "tags": values["tags"],
        "metadata": values["metadata"],
        "created_at": iso(values["created_at"]),
        "created_by": values["created_by"],
        "job_id": values["job_id"],
        "artifact": values["artifact"],
        "artifact_sha256": values["artifact_sha256"],
        "framework": values["framework"],
        "signature": values["signature"],
        "trusted_types": values["trusted_types"] or [],
        "trusted": bool(values["trusted"]),
        "feature_stats": values["feature_stats"],
        "expectations": values["expectations"],
    }
