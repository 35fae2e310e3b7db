"""Comparing subjects: the reference (saved, or made now and saved), the current window, the
statistics, the report stored in the history, the verdict's change (and its webhook call).

Sources of a subject's rows plug in here: LLM subjects read the sampled calls' signals and
texts (embedded here, once per sample); classic subjects read their sampled features and
prediction, with the training statistics a registry version carries as their reference.
Everything in this class runs in a worker thread (the job's or the CLI's), never on the
event loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.core.drift_config import DriftSection
from gateway.core.errors import GatewayError
from gateway.core.model_refs import ModelRef
from gateway.drift import subjects
from gateway.drift.columns import Column, Kind, infer_kind, prepare
from gateway.drift.compare import ColumnResult, compare, single_threaded_math, verdict
from gateway.drift.models import (
    DriftColumn,
    DriftReferenceInfo,
    DriftReport,
    DriftTest,
    DriftWindowInfo,
    State,
)
from gateway.drift.reference import REGISTRY_KEY, Reference, build_reference
from gateway.drift.settings import SubjectSettings, resolve
from gateway.drift.signals import LLM_COLUMNS, TEXT_COLUMNS
from gateway.drift.store import DriftStore, SampleRow, spec_hash
from gateway.drift.subjects import Subject
from gateway.drift.webhook import WebhookSender
from gateway.registry.store import RegistryStore

log = logging.getLogger("gateway.drift")

Embed = Callable[[list[str]], npt.NDArray[np.float32]]


@dataclass
class Evaluation:
    """One subject compared: the report, and what made it (for charts)."""

    subject: Subject
    report: DriftReport
    reference: Reference | None = None
    current: dict[str, Column] = field(default_factory=dict)
    results: list[ColumnResult] = field(default_factory=list)
    embed_seconds: float = 0.0
    compute_seconds: float = 0.0
    changed: bool = False


class DriftMonitor:
    def __init__(
        self,
        section: DriftSection,
        store: DriftStore,
        registry: RegistryStore | None = None,
        embed: Embed | None = None,
        webhook: WebhookSender | None = None,
    ) -> None:
        self.section = section
        self.store = store
        self.registry = registry
        self.embed = embed
        self.webhook = webhook

    def subjects(self) -> list[Subject]:
        found = []
        for counted in self.store.subjects():
            try:
                found.append(subjects.parse(counted.subject))
            except ValueError:
                log.warning("drift: samples under an unknown subject %r", counted.subject)
        return found

    def evaluate(self, subject: Subject) -> Evaluation:
        """Compares the subject now, stores the report and records its verdict (sending the
        webhook call when the verdict changed here)."""
        with single_threaded_math():
            evaluation = self._evaluate(subject, resolve(self.section, subject))
        report = evaluation.report.model_dump(mode="json")
        self.store.add_run(subject.id, evaluation.report.state, report)
        if evaluation.report.state != "not_enough_data":
            changed, previous = self.store.change_verdict(subject.id, evaluation.report.state)
            evaluation.changed = changed
            if changed and self.webhook is not None:
                self.webhook.send(self.webhook.event(report, previous))
        return evaluation

    def _evaluate(self, subject: Subject, settings: SubjectSettings) -> Evaluation:
        started = time.perf_counter()
        evaluation = Evaluation(subject, _empty(subject, settings, "no reference yet"))
        reference, why, after = self._reference(subject, settings, evaluation)
        if reference is None:
            evaluation.report.note = why
            return evaluation
        evaluation.reference = reference
        since = None
        if settings.current_window_s is not None:
            since = datetime.now(UTC) - timedelta(seconds=settings.current_window_s)
        rows = self.store.latest(subject.id, settings.current_rows, since, after)
        info = DriftReferenceInfo(
            source=reference.source, rows=reference.rows, made_at=_iso(reference.made_at)
        )
        window = _window(rows, settings)
        if len(rows) < settings.min_rows:
            evaluation.report = _empty(
                subject,
                settings,
                f"not enough data: {len(rows)} current samples, {settings.min_rows} needed",
                info,
                window,
            )
            return evaluation
        kinds = {name: sketch.kind for name, sketch in reference.columns.items()}
        evaluation.current = self._columns(subject, rows, settings, kinds, evaluation)
        results = compare(reference.columns, evaluation.current, settings.options)
        found = verdict(results, settings.options.drift_share)
        state: State = (
            "not_enough_data"
            if found.drifted is None
            else ("drift" if found.drifted else "no_drift")
        )
        evaluation.results = results
        evaluation.report = DriftReport(
            **_identity(subject),
            state=state,
            computed_at=_iso(datetime.now(UTC)),
            drift_share=found.share,
            drift_share_threshold=settings.options.drift_share,
            drifted_columns=found.drifted_columns,
            columns_judged=found.columns,
            note="not enough data in any column" if found.drifted is None else None,
            reference=info,
            current=window,
            columns=[_column(r) for r in results],
        )
        evaluation.compute_seconds = time.perf_counter() - started - evaluation.embed_seconds
        return evaluation

    # --- the reference ---------------------------------------------------------------------

    def _reference(
        self, subject: Subject, settings: SubjectSettings, evaluation: Evaluation
    ) -> tuple[Reference | None, str, tuple[datetime, int] | None]:
        """The reference, why there is none, and the time after which the current window
        starts (the reference's last sample, when both come from this subject's samples)."""
        if subject.kind == "classic":
            trained = self._registry_reference(subject)
            if trained is not None:
                return trained, "", None
        spec = spec_hash(settings.reference_spec())
        pinned = settings.reference_version
        source = subject.with_version(pinned) if pinned and subject.kind != "model" else subject
        saved = self.store.reference(subject.id, spec)
        if saved is None:
            saved, why = self._make_reference(subject, source, settings, evaluation)
            if saved is None:
                return None, why, None
            self.store.save_reference(subject.id, spec, saved)
        if source != subject or saved.until is None:
            return saved, "", None
        return saved, "", (saved.until, saved.last_id or 0)

    def _make_reference(
        self, subject: Subject, source: Subject, settings: SubjectSettings, evaluation: Evaluation
    ) -> tuple[Reference | None, str]:
        since, until = settings.reference_since, settings.reference_until
        rows = self.store.first(source.id, settings.reference_rows, since, until)
        closed = until is not None and until <= datetime.now(UTC)
        if len(rows) < settings.reference_rows and not (closed and len(rows) >= settings.min_rows):
            return None, (
                f"no reference yet: {len(rows)} of the {settings.reference_rows} samples of "
                f"{source.id} it is made from"
            )
        columns = self._columns(source, rows, settings, None, evaluation)
        described = f"the first {len(rows)} samples of {source.id}"
        if since or until:
            described += f" from {_iso(since) if since else 'the start'} to "
            described += _iso(until) if until else "now"
        made = build_reference(
            {name: column.values for name, column in columns.items()},
            source=described,
            kinds={name: column.kind for name, column in columns.items()},
            until=rows[-1].created_at,
            last_id=rows[-1].id,
        )
        return made, ""

    def _registry_reference(self, subject: Subject) -> Reference | None:
        if self.registry is None or subject.version is None or not subject.version.isdigit():
            return None
        try:
            version = self.registry.version(ModelRef(subject.model, subject.version))
        except GatewayError:
            return None
        body = (version.metadata or {}).get(REGISTRY_KEY)
        if body is None:
            return None
        try:
            return Reference.from_json(body)
        except ValueError as exc:
            log.warning("drift: %s's registry reference is unreadable: %s", subject.id, exc)
            return None

    # --- columns from samples --------------------------------------------------------------

    def _columns(
        self,
        subject: Subject,
        rows: list[SampleRow],
        settings: SubjectSettings,
        kinds: dict[str, Kind] | None,
        evaluation: Evaluation,
    ) -> dict[str, Column]:
        """The samples as columns: the LLM signals (and the texts' embeddings), or a classic
        model's features under the kinds its reference gives them."""
        names: dict[str, Kind | None]
        if subject.kind == "classic":
            if kinds is not None:  # the reference's columns, as the reference has them
                names = dict(kinds)
            else:
                names = dict.fromkeys(dict.fromkeys(k for row in rows for k in row.values))
        else:
            names = {n: k for n, k in LLM_COLUMNS.items() if k != "embedding"}
        columns = {}
        for name, kind in names.items():
            raw = [row.values.get(name) for row in rows]
            chosen = kind or infer_kind(raw)
            columns[name] = prepare(raw, chosen)
        if subject.kind != "classic" and settings.embeddings and self.embed is not None:
            started = time.perf_counter()
            for name in TEXT_COLUMNS:
                columns[name] = Column("embedding", self._vectors(rows, name))
            evaluation.embed_seconds += time.perf_counter() - started
        return columns

    def _vectors(self, rows: list[SampleRow], name: str) -> npt.NDArray[np.float32]:
        """The rows' embeddings of one text; those not computed yet are computed (each
        distinct text once) and saved, so a sample is embedded once."""
        assert self.embed is not None
        stored = [row.input_embedding if name == "input" else row.output_embedding for row in rows]
        texts = [row.input_text if name == "input" else row.output_text for row in rows]
        missing = [i for i, (v, t) in enumerate(zip(stored, texts, strict=True)) if v is None and t]
        if missing:
            distinct = list(dict.fromkeys(texts[i] or "" for i in missing))
            vectors = np.asarray(self.embed(distinct), dtype="<f4")
            by_text = dict(zip(distinct, vectors, strict=True))
            computed = [(rows[i].id, by_text[texts[i] or ""].tobytes()) for i in missing]
            self.store.set_embeddings(name, computed)
            for i, (_, blob) in zip(missing, computed, strict=True):
                stored[i] = blob
        present = [np.frombuffer(v, dtype="<f4") for v in stored if v is not None]
        if not present:
            return np.zeros((0, 0), dtype=np.float32)
        return np.vstack(present).astype(np.float32)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _identity(subject: Subject) -> dict[str, Any]:
    return {
        "subject": subject.id,
        "kind": subject.kind,
        "model": subject.model,
        "prompt": subject.prompt,
        "version": subject.version,
    }


def _window(rows: list[SampleRow], settings: SubjectSettings) -> DriftWindowInfo:
    return DriftWindowInfo(
        rows=len(rows),
        min_rows=settings.min_rows,
        first=_iso(rows[0].created_at) if rows else None,
        last=_iso(rows[-1].created_at) if rows else None,
    )


def _empty(
    subject: Subject,
    settings: SubjectSettings,
    note: str,
    reference: DriftReferenceInfo | None = None,
    window: DriftWindowInfo | None = None,
) -> DriftReport:
    return DriftReport(
        **_identity(subject),
        state="not_enough_data",
        computed_at=_iso(datetime.now(UTC)),
        drift_share=0.0,
        drift_share_threshold=settings.options.drift_share,
        drifted_columns=[],
        columns_judged=0,
        note=note,
        reference=reference,
        current=window
        or DriftWindowInfo(rows=0, min_rows=settings.min_rows, first=None, last=None),
        columns=[],
    )


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _column(result: ColumnResult) -> DriftColumn:
    return DriftColumn(
        column=result.column,
        kind=result.kind,
        reference_rows=result.reference_rows,
        current_rows=result.current_rows,
        drifted=result.drifted,
        note=result.note,
        tests=[
            DriftTest(
                test=t.outcome.test,
                statistic=_finite(t.outcome.statistic),
                threshold=t.outcome.threshold,
                drifted=t.outcome.drifted,
                role=t.role,
            )
            for t in result.tests
        ],
    )
