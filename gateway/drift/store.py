"""Drift's tables: samples, saved references, the history of runs and each subject's verdict.
Every method runs in a worker thread (the job's or the CLI's), never on the event loop."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import (
    Engine,
    Text,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from gateway.core.times import utc
from gateway.store.tables import drift_references, drift_runs, drift_samples, drift_states

if TYPE_CHECKING:
    from gateway.drift.reference import Reference


@dataclass(frozen=True, slots=True)
class SampleRow:
    id: int
    stamp: datetime  # as the driver gives it (naive UTC from SQLite)
    values: dict[str, Any]
    input_text: str | None
    output_text: str | None
    input_embedding: bytes | None
    output_embedding: bytes | None

    @property
    def created_at(self) -> datetime:
        return utc(self.stamp)  # for the few rows that need it, not for 100,000


@dataclass(frozen=True, slots=True)
class Pruned:
    samples: int
    runs: int


@dataclass(frozen=True, slots=True)
class SubjectCount:
    subject: str
    kind: str
    samples: int
    last: datetime


PRUNE_BATCH = 10_000  # rows deleted per statement: the sampler's writes wait for no more


def spec_hash(spec: Any) -> str:
    return hashlib.sha256(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


class DriftStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- samples --------------------------------------------------------------------------

    def add_samples(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        # One INSERT is built from the first row's keys and run for every row: an LLM call's
        # row (texts, prompt) and a classic model's (neither) written together would lose the
        # LLM row's texts, or fail the batch. Every row gets every key (NULL where it has none).
        keys = {key for row in rows for key in row}
        if any(len(row) != len(keys) for row in rows):
            rows = [dict.fromkeys(keys) | row for row in rows]
        with self.engine.begin() as connection:
            connection.execute(drift_samples.insert(), rows)

    def subjects(self) -> list[SubjectCount]:
        query = select(
            drift_samples.c.subject,
            func.min(drift_samples.c.kind),
            func.count(),
            func.max(drift_samples.c.created_at),
        ).group_by(drift_samples.c.subject)
        with self.engine.connect() as connection:
            found = connection.execute(query).all()
        return [SubjectCount(s, k, n, utc(last)) for s, k, n, last in found]

    def count(self, subject: str, since: datetime | None, until: datetime | None) -> int:
        query = select(func.count()).where(*_window(subject, since, until, None))
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def first(
        self, subject: str, rows: int, since: datetime | None, until: datetime | None
    ) -> list[SampleRow]:
        """The subject's earliest samples in [since, until)."""
        query = (
            select(*_SAMPLE_COLUMNS)
            .where(*_window(subject, since, until, None))
            .order_by(drift_samples.c.created_at, drift_samples.c.id)
            .limit(rows)
        )
        return self._rows(query)

    def latest(
        self,
        subject: str,
        rows: int,
        since: datetime | None,
        after: tuple[datetime, int] | None,
    ) -> list[SampleRow]:
        """The subject's most recent samples (at or after `since`, after the sample `after`
        names by time and id), oldest first."""
        query = (
            select(*_SAMPLE_COLUMNS)
            .where(*_window(subject, since, None, after))
            .order_by(drift_samples.c.created_at.desc(), drift_samples.c.id.desc())
            .limit(rows)
        )
        return self._rows(query)[::-1]

    def _rows(self, query: Any) -> list[SampleRow]:
        with self.engine.connect() as connection:
            found = connection.execute(query).all()
        return [SampleRow(i, at, _values(v), it, ot, ie, oe) for i, at, v, it, ot, ie, oe in found]

    def set_embeddings(self, column: str, vectors: Iterable[tuple[int, bytes]]) -> None:
        target = drift_samples.c[f"{column}_embedding"]
        statement = (
            update(drift_samples)
            .where(drift_samples.c.id == bindparam("row_id"))
            .values({target: bindparam("vector")})
        )
        rows = [{"row_id": i, "vector": v} for i, v in vectors]
        if rows:
            with self.engine.begin() as connection:
                connection.execute(statement, rows)

    def prune(self, rows: int | None, older_than: datetime | None) -> Pruned:
        """Retention: per subject, deletes the samples older than `older_than` and all but
        the newest `rows`, and the reports older than `older_than` but each subject's latest."""
        samples = runs = 0
        for counted in self.subjects():
            c = drift_samples.c
            if older_than is not None:
                samples += self._delete(c.subject == counted.subject, c.created_at < older_than)
            if rows is not None and counted.samples > rows:
                edge = self._nth_newest(counted.subject, rows)
                if edge is not None:  # it and everything older goes
                    moment, row_id = edge
                    older = or_(c.created_at < moment, and_(c.created_at == moment, c.id <= row_id))
                    samples += self._delete(c.subject == counted.subject, older)
        if older_than is not None:
            runs = self._prune_runs(older_than)
        return Pruned(samples, runs)

    def _nth_newest(self, subject: str, rows: int) -> tuple[datetime, int] | None:
        """The newest sample beyond the `rows` newest, by (time, id)."""
        c = drift_samples.c
        query = (
            select(c.created_at, c.id)
            .where(c.subject == subject)
            .order_by(c.created_at.desc(), c.id.desc())
            .offset(rows)
            .limit(1)
        )
        with self.engine.connect() as connection:
            found = connection.execute(query).first()
        return (found[0], found[1]) if found is not None else None

    def _delete(self, *where: Any) -> int:
        """Deletes the samples `where` selects, a batch per transaction."""
        deleted = 0
        while True:
            batch = select(drift_samples.c.id).where(*where).limit(PRUNE_BATCH)
            with self.engine.begin() as connection:
                ids = list(connection.execute(batch).scalars())
                if ids:
                    connection.execute(delete(drift_samples).where(drift_samples.c.id.in_(ids)))
            deleted += len(ids)
            if len(ids) < PRUNE_BATCH:
                return deleted

    def _prune_runs(self, older_than: datetime) -> int:
        c = drift_runs.c
        with self.engine.connect() as connection:
            subjects = list(connection.execute(select(c.subject).distinct()).scalars())
        deleted = 0
        for subject in subjects:
            latest = select(func.max(c.id)).where(c.subject == subject).scalar_subquery()
            with self.engine.begin() as connection:
                done = connection.execute(
                    delete(drift_runs).where(
                        c.subject == subject, c.computed_at < older_than, c.id < latest
                    )
                )
            deleted += max(done.rowcount or 0, 0)
        return deleted

    # --- references -----------------------------------------------------------------------

    def reference(self, subject: str, spec: str) -> Reference | None:
        """The subject's saved reference, if it was made with these settings."""
        query = select(drift_references.c.body).where(
            drift_references.c.subject == subject, drift_references.c.spec == spec
        )
        with self.engine.connect() as connection:
            body = connection.execute(query).scalar_one_or_none()
        if body is None:
            return None
        from gateway.drift.reference import Reference  # numpy: off the request path's imports

        return Reference.from_json(orjson.loads(body))

    def save_reference(self, subject: str, spec: str, reference: Reference) -> None:
        row = {
            "subject": subject,
            "spec": spec,
            "source": reference.source[:300],
            "rows": reference.rows,
            "made_at": reference.made_at,
            "until": reference.until,
            "body": orjson.dumps(reference.to_json()),
        }
        statement = _insert(self.engine)(drift_references).values(row)
        columns = {k: statement.excluded[k] for k in row if k != "subject"}
        upsert = statement.on_conflict_do_update(index_elements=["subject"], set_=columns)
        with self.engine.begin() as connection:
            connection.execute(upsert)

    # --- runs and verdicts ----------------------------------------------------------------

    def add_run(self, subject: str, state: str, report: dict[str, Any]) -> None:
        row = {"subject": subject, "computed_at": now(), "state": state, "report": report}
        with self.engine.begin() as connection:
            connection.execute(drift_runs.insert().values(row))

    def latest_runs(self) -> list[dict[str, Any]]:
        newest = (
            select(drift_runs.c.subject, func.max(drift_runs.c.id).label("id"))
            .group_by(drift_runs.c.subject)
            .subquery()
        )
        query = (
            select(drift_runs.c.report)
            .join(newest, drift_runs.c.id == newest.c.id)
            .order_by(drift_runs.c.subject)
        )
        with self.engine.connect() as connection:
            return [_values(r) for (r,) in connection.execute(query).all()]

    def history(self, subject: str, limit: int) -> list[dict[str, Any]]:
        query = (
            select(drift_runs.c.report)
            .where(drift_runs.c.subject == subject)
            .order_by(drift_runs.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [_values(r) for (r,) in connection.execute(query).all()]

    def change_verdict(self, subject: str, verdict: str) -> tuple[bool, str | None]:
        """Records the subject's verdict: whether it changed here, and from what. A subject's
        first verdict counts as a change only when it is drift. Compare-and-set: of several
        processes noticing the same change, one alone is told it changed."""
        at = now()
        # RETURNING, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT.
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(drift_states)
                .where(drift_states.c.subject == subject, drift_states.c.verdict != verdict)
                .values(verdict=verdict, changed_at=at)
                .returning(drift_states.c.subject)
            ).first()
            if changed is not None:
                return True, "no_drift" if verdict == "drift" else "drift"
            statement = _insert(self.engine)(drift_states).values(
                subject=subject, verdict=verdict, changed_at=at
            )
            inserted = connection.execute(
                statement.on_conflict_do_nothing(index_elements=["subject"]).returning(
                    drift_states.c.subject
                )
            ).first()
        return inserted is not None and verdict == "drift", None


def now() -> datetime:
    return datetime.now(UTC)


def _insert(engine: Engine) -> Any:
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


def _values(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str | bytes):
        loaded: dict[str, Any] = orjson.loads(raw)
        return loaded
    return dict(raw)


def _window(
    subject: str,
    since: datetime | None,
    until: datetime | None,
    after: tuple[datetime, int] | None,
) -> list[Any]:
    c = drift_samples.c
    clauses: list[Any] = [c.subject == subject]
    if since is not None:
        clauses.append(c.created_at >= since)
    if until is not None:
        clauses.append(c.created_at < until)
    if after is not None:  # in (created_at, id) order, as the samples are read
        moment, row_id = after
        clauses.append(or_(c.created_at > moment, and_(c.created_at == moment, c.id > row_id)))
    return [and_(*clauses)]


_SAMPLE_COLUMNS = (
    drift_samples.c.id,
    drift_samples.c.created_at,
    # As text, parsed with orjson: SQLAlchemy's JSON type parses with the json module, which
    # took most of the time of reading 100,000 samples.
    type_coerce(drift_samples.c["values"], Text),
    drift_samples.c.input_text,
    drift_samples.c.output_text,
    drift_samples.c.input_embedding,
    drift_samples.c.output_embedding,
)
