"""One subject's drift settings, resolved from the `drift.subjects` entries that match it (the
first entry that sets a value wins; see gateway/core/drift_config.py) over the defaults."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.core.drift_config import DriftSection, DriftSubjectConfig, window_seconds
from gateway.drift.options import Options
from gateway.drift.subjects import Subject

DEFAULTS: dict[str, Any] = {
    "sample_rate": 0.0,
    "min_rows": 100,
    "numerical": "auto",
    "categorical": "auto",
    "text": "domain_classifier",
    "columns": {},
    "thresholds": {},
    "drift_share": 0.5,
    "small_reference_rows": 1000,
    "max_categorical_values": 5,
    "embeddings": True,
}
CURRENT_ROWS = 1000
REFERENCE_ROWS = 1000


@dataclass(frozen=True)
class SubjectSettings:
    sample_rate: float
    options: Options
    embeddings: bool
    current_rows: int
    current_window_s: int | None
    reference_rows: int
    reference_since: datetime | None
    reference_until: datetime | None
    reference_version: str | None

    @property
    def min_rows(self) -> int:
        return self.options.min_rows

    def reference_spec(self) -> dict[str, Any]:
        """What chose the reference's rows and how its columns are sketched: a saved reference
        made with another spec is made again."""
        return {
            "rows": self.reference_rows,
            "since": self.reference_since.isoformat() if self.reference_since else None,
            "until": self.reference_until.isoformat() if self.reference_until else None,
            "version": self.reference_version,
            "embeddings": self.embeddings,
        }


def matching(section: DriftSection, subject: Subject) -> list[DriftSubjectConfig]:
    prompt = subject.prompt if subject.kind == "prompt" else None
    return [e for e in section.subjects if e.matches(prompt, subject.version, subject.model)]


def _first(entries: list[Any], name: str, default: Any) -> Any:
    for entry in entries:
        if entry is not None and getattr(entry, name) is not None:
            return getattr(entry, name)
    return default


def resolve(section: DriftSection, subject: Subject) -> SubjectSettings:
    entries = matching(section, subject)
    value = {name: _first(entries, name, default) for name, default in DEFAULTS.items()}
    currents = [e.current for e in entries]
    references = [e.reference for e in entries]
    window = _first(currents, "window", None)
    since = until = None
    for entry in references:
        if entry is not None and (entry.since or entry.until):
            since, until = entry.bounds()
            break
    return SubjectSettings(
        sample_rate=value["sample_rate"],
        options=Options(
            numerical=value["numerical"],
            categorical=value["categorical"],
            text=value["text"],
            columns=dict(value["columns"]),
            thresholds=dict(value["thresholds"]),
            drift_share=value["drift_share"],
            small_reference_rows=value["small_reference_rows"],
            max_categorical_values=value["max_categorical_values"],
            min_rows=value["min_rows"],
        ),
        embeddings=value["embeddings"],
        current_rows=_first(currents, "rows", CURRENT_ROWS),
        current_window_s=window_seconds(window) if window else None,
        reference_rows=_first(references, "rows", REFERENCE_ROWS),
        reference_since=since,
        reference_until=until,
        reference_version=_first(references, "version", None),
    )
