"""Which calls drift monitoring samples, and their way into the store.

On the request path: `draw` (when a chat call is admitted) is a dict lookup and, for a
subject with a rate, one `random()`; a drawn call carries a `Sample` holding references only,
and `keep` (when its row is made) appends it to a bounded deque. A classic model's call is
drawn once it has predicted (`draw_prediction`, the same lookup and draw) and a drawn one's
tensors are appended by reference (`keep_prediction`). Everything else happens in the
writer: every second it turns the queued samples into rows (signals, texts with secrets
masked; a prediction's features and outputs by name) in a worker thread and inserts them.
When the queue is full (the database cannot keep up), new samples are dropped and counted:
they are a sample, and the calls never wait.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gateway.classic.tensors import Output, Tensor
from gateway.core.background import every, stop_task
from gateway.core.drift_config import DriftSection
from gateway.drift import subjects
from gateway.drift.predictions import MAX_ROWS, prediction_rows
from gateway.drift.settings import resolve
from gateway.drift.signals import Sample, signals
from gateway.observability.redact import MASK, SECRET_VALUES

if TYPE_CHECKING:
    from gateway.drift.store import DriftStore

log = logging.getLogger("gateway.drift")

QUEUE_LIMIT = 10_000
# Predicted rows waiting for the writer, at most: a drawn call holds its tensors until then,
# so big batches count by their rows, not as one call.
PREDICTION_ROWS_LIMIT = 100_000
WRITE_INTERVAL_S = 1.0
RATE_CACHE_LIMIT = 10_000  # (alias, prompt, version) triples remembered
UNVERSIONED = "unversioned"  # a remote classic model whose answers name no version


def masked(text: str | None) -> str | None:
    return SECRET_VALUES.sub(MASK, text) if text else text


class Sampler:
    def __init__(
        self,
        section: DriftSection,
        store: DriftStore | None,
        *,
        queue_limit: int = QUEUE_LIMIT,
        interval: float = WRITE_INTERVAL_S,
    ) -> None:
        self.section = section
        self.store = store
        # False when no subject has a rate: the pipeline then skips `draw` altogether.
        self.on = section.samples_anything()
        self.interval = interval
        self.queue_limit = queue_limit
        self._draws: dict[tuple[str, str | None, str | None], tuple[float, str]] = {}
        self._model_rates: dict[tuple[str, str], tuple[float, str]] = {}
        self._queue: deque[tuple[Sample, dict[str, Any]]] = deque()
        self._features: deque[dict[str, Any]] = deque()
        self._predictions: deque[_Prediction] = deque()
        self._prediction_rows = 0
        self._random = random.random
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.written = 0

    # --- the request path -----------------------------------------------------------------

    def draw(
        self, alias: str, prompt: str | None, version: str | None, body: dict[str, Any]
    ) -> Sample | None:
        """A sample for this call, or None (most calls)."""
        key = (alias, prompt, version)
        found = self._draws.get(key)
        if found is None:
            found = self._rate(key)
        rate, subject = found
        if rate > 0.0 and self._random() < rate:
            return Sample(subject, body)
        return None

    def _rate(self, key: tuple[str, str | None, str | None]) -> tuple[float, str]:
        subject = subjects.for_call(*key)
        found = (resolve(self.section, subject).sample_rate, subject.id)
        if len(self._draws) >= RATE_CACHE_LIMIT:
            self._draws.clear()
        self._draws[key] = found
        return found

    def keep(self, sample: Sample, row: dict[str, Any]) -> None:
        """The drawn call's row, once its answer has ended."""
        if len(self._queue) < self.queue_limit:
            self._queue.append((sample, row))
        else:
            self.dropped += 1

    def draw_prediction(self, name: str, version: str | None) -> str | None:
        """For a classic model's call (the inference path), once it has predicted: the
        subject's id when this call is kept, else None. `name` is the model where it runs
        (the registry model, or the remote server's), `version` its version."""
        key = (name, version or UNVERSIONED)
        found = self._model_rates.get(key)
        if found is None:
            found = self._model_rate(key)
        rate, subject = found
        if rate > 0.0 and self._random() < rate:
            return subject
        return None

    def _model_rate(self, key: tuple[str, str]) -> tuple[float, str]:
        subject = subjects.classic(*key)
        found = (resolve(self.section, subject).sample_rate, subject.id)
        if len(self._model_rates) >= RATE_CACHE_LIMIT:
            self._model_rates.clear()
        self._model_rates[key] = found
        return found

    def draws_model(self, subject: subjects.Subject) -> bool:
        """Whether to keep this call of a classic subject (what `draw_prediction` draws)."""
        assert subject.version is not None
        return self.draw_prediction(subject.model, subject.version) is not None

    def keep_prediction(
        self,
        subject: str,
        alias: str | None,
        rows: int,
        features: Sequence[str] | None,
        inputs: Sequence[Tensor],
        outputs: Sequence[Output],
    ) -> None:
        """A drawn classic call: its tensors by reference (made rows by the writer)."""
        counted = self._prediction_rows + min(rows, MAX_ROWS)
        if len(self._predictions) < self.queue_limit and counted <= PREDICTION_ROWS_LIMIT:
            kept = _Prediction(subject, alias, datetime.now(UTC), rows, features, inputs, outputs)
            self._predictions.append(kept)
            self._prediction_rows = counted
        else:
            self.dropped += 1

    def keep_features(
        self, subject: subjects.Subject, values: dict[str, Any], at: datetime | None = None
    ) -> None:
        """A classic model's row, already by name: its features and prediction (JSON values)."""
        if len(self._features) >= self.queue_limit:
            self.dropped += 1
            return
        self._features.append(
            {
                "subject": subject.id,
                "kind": "features",
                "created_at": at or datetime.now(UTC),
                "alias": subject.model,
                "values": values,
            }
        )

    # --- off it ---------------------------------------------------------------------------

    def start(self) -> None:
        if self.store is not None:
            self._task = asyncio.create_task(self._run(), name="drift-sampler")

    async def _run(self) -> None:
        await every(self.interval, self.flush, log, "drift: writing samples failed")

    async def flush(self) -> None:
        """Writes what is queued now."""
        samples = [self._queue.popleft() for _ in range(len(self._queue))]
        features = [self._features.popleft() for _ in range(len(self._features))]
        predictions = [self._predictions.popleft() for _ in range(len(self._predictions))]
        self._prediction_rows = 0
        if samples or features or predictions:
            await asyncio.to_thread(self._write, samples, features, predictions)

    def _write(
        self,
        samples: list[tuple[Sample, dict[str, Any]]],
        features: list[dict[str, Any]],
        predictions: list[_Prediction],
    ) -> None:
        rows = features
        for kept in predictions:
            try:
                rows.extend(kept.rows())
            except Exception:  # one odd call must not cost the others their samples
                self.dropped += 1
                log.exception("drift: a sampled prediction of %s could not be read", kept.subject)
        for sample, row in samples:
            values, text_in, text_out = signals(sample, row)
            rows.append(
                {
                    "subject": sample.subject,
                    "kind": "llm",
                    "created_at": row["created_at"],
                    "prompt_name": row["prompt_name"],
                    "prompt_version": row["prompt_version"],
                    "alias": row["alias"],
                    "values": values,
                    "input_text": masked(text_in),
                    "output_text": masked(text_out),
                }
            )
        assert self.store is not None
        try:
            self.store.add_samples(rows)
        except Exception as exc:  # a sample lost in an outage is a sample; calls go on
            self.dropped += len(rows)
            log.warning("drift: %d samples not stored: %s", len(rows), exc)
            return
        self.written += len(rows)

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None
        if self.store is not None:
            await self.flush()


class _Prediction:
    """A drawn classic call, as the request path left it: references, no copies."""

    __slots__ = ("alias", "at", "features", "inputs", "outputs", "rows_predicted", "subject")

    def __init__(
        self,
        subject: str,
        alias: str | None,
        at: datetime,
        rows: int,
        features: Sequence[str] | None,
        inputs: Sequence[Tensor],
        outputs: Sequence[Output],
    ) -> None:
        self.subject = subject
        self.alias = alias
        self.at = at
        self.rows_predicted = rows
        self.features = features
        self.inputs = inputs
        self.outputs = outputs

    def rows(self) -> list[dict[str, Any]]:
        """Its drift rows: one per predicted row (the writer's work)."""
        return [
            {
                "subject": self.subject,
                "kind": "features",
                "created_at": self.at,
                "alias": self.alias,
                "values": values,
            }
            for values in prediction_rows(
                self.rows_predicted, self.features, self.inputs, self.outputs
            )
        ]
