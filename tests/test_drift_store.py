"""Drift's store on SQLite and PostgreSQL: texts embedded once and kept (bytes), the current
window starting after the reference's last sample even when samples share a time."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from gateway.core.drift_config import DriftSection
from gateway.drift.service import Drift
from gateway.drift.subjects import for_call
from tests.drift_checks import hashed


def test_texts_are_embedded_once_and_windows_split_on_time_and_id(engine: Engine) -> None:
    calls: list[int] = []

    def embed(texts: list[str]) -> object:
        calls.append(len(texts))
        return hashed(texts)

    section = DriftSection.model_validate(
        {"subjects": [{"min_rows": 10, "reference": {"rows": 30}, "current": {"rows": 30}}]}
    )
    parts = Drift.build(section, engine, None, embed)  # type: ignore[arg-type]
    subject = for_call("gpt", None, None)
    moment = datetime(2026, 3, 1, tzinfo=UTC)  # every sample at one time: ids order them
    parts.store.add_samples(
        [
            {
                "subject": subject.id,
                "kind": "llm",
                "created_at": moment,
                "alias": "gpt",
                "values": {"output_tokens": i % 5, "error": False},
                "input_text": f"question {i % 6}",
                "output_text": f"answer {i % 6}",
            }
            for i in range(50)
        ]
    )
    first = parts.monitor.evaluate(subject).report
    assert first.reference is not None
    assert (first.reference.rows, first.current.rows) == (30, 20)
    assert first.state == "no_drift"
    assert calls == [6, 6, 6, 6]  # reference, then current: inputs and outputs, distinct texts
    again = parts.monitor.evaluate(subject).report
    assert again.state == "no_drift"
    assert calls == [6, 6, 6, 6]  # stored: nothing embedded twice
    stored = parts.store.latest(subject.id, 50, None, None)
    assert all(isinstance(row.input_embedding, bytes) for row in stored)
    assert len(stored[0].input_embedding or b"") == 16 * 4
