"""The `drift:` section of gateway.yaml: what is sampled, what it is compared with, and how.

Every setting of a subject lives in one `subjects[]` entry. An entry applies to the subjects
its `prompt` and `model` match (an entry with neither applies to all), and a subject takes each
setting from the first entry that matches it and sets it, else the built-in default below, so
a last catch-all entry holds the defaults and the entries above it the exceptions. The
defaults are Evidently's (see gateway/drift/stattests.py).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.core.durations import UNIT_S

NumericalMethod = Literal["auto", "ks", "wasserstein", "jensenshannon", "psi"]
CategoricalMethod = Literal["auto", "chisquare", "z", "jensenshannon", "psi"]
TextMethod = Literal["domain_classifier", "mmd", "centroid_cosine"]
ColumnMethod = Literal["ks", "wasserstein", "chisquare", "z", "jensenshannon", "psi"]
TestName = Literal[
    "ks",
    "chisquare",
    "z",
    "wasserstein",
    "jensenshannon",
    "psi",
    "domain_classifier",
    "mmd",
    "centroid_cosine",
]

_WINDOW = re.compile(r"([0-9]+)(s|m|h|d)")


def window_seconds(text: str) -> int:
    """`30m`, `6h`, `1d` as seconds; a ValueError says what is wrong."""
    match = _WINDOW.fullmatch(text)
    if match is None or int(match[1]) == 0:
        raise ValueError(f"must look like 30s, 15m, 6h or 7d, not {text!r}")
    return int(match[1]) * UNIT_S[match[2]]


def _utc(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"must be an ISO 8601 date or time, e.g. 2026-11-01T09:30:00Z, not {text!r}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class CurrentWindow(_Strict):
    """The sliding window compared with the reference: the latest `rows` samples, only those
    younger than `window` when it is given."""

    rows: int | None = Field(default=None, ge=1, le=10_000_000)
    window: str | None = None

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            window_seconds(value)
        return value


class ReferenceSpec(_Strict):
    """Which samples make the reference: the subject's first `rows` samples (at or after
    `since`, before `until`), or those of an earlier prompt `version` called through the same
    model. A classic model version's reference is its training statistics in the registry when
    it has them. Made once, saved as binned statistics, and made again only when this changes."""

    rows: int | None = Field(default=None, ge=2, le=10_000_000)
    since: str | None = None
    until: str | None = None
    version: str | None = Field(default=None, min_length=1, max_length=64)

    @field_validator("since", "until")
    @classmethod
    def _moment(cls, value: str | None) -> str | None:
        if value is not None:
            _utc(value)
        return value

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        return (
            _utc(self.since) if self.since else None,
            _utc(self.until) if self.until else None,
        )


class DriftSubjectConfig(_Strict):
    """Settings for the subjects this entry matches (see the module docstring)."""

    prompt: str | None = Field(
        default=None, min_length=1, description="A prompt NAME, or NAME@VERSION."
    )
    model: str | None = Field(
        default=None, min_length=1, description="A model alias, or a classic model's name."
    )
    sample_rate: float | None = Field(default=None, ge=0, le=1)
    min_rows: int | None = Field(default=None, ge=2, le=10_000_000)
    current: CurrentWindow | None = None
    reference: ReferenceSpec | None = None
    numerical: NumericalMethod | None = None
    categorical: CategoricalMethod | None = None
    text: TextMethod | None = None
    columns: dict[str, ColumnMethod] | None = Field(
        default=None, description="A method per column name, over the numerical/categorical rule."
    )
    thresholds: dict[TestName, float] | None = None
    drift_share: float | None = Field(default=None, gt=0, le=1)
    small_reference_rows: int | None = Field(default=None, ge=1)
    # At most 20: a reference keeps value counts up to 20 distinct values (drift/sketch.py).
    max_categorical_values: int | None = Field(default=None, ge=1, le=20)
    embeddings: bool | None = None

    @field_validator("thresholds")
    @classmethod
    def _finite(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for name, threshold in (value or {}).items():
            if not threshold == threshold or threshold < 0:  # NaN or negative
                raise ValueError(f"{name}: a threshold is a number >= 0")
        return value

    def matches(self, prompt: str | None, version: str | None, model: str | None) -> bool:
        if self.prompt is not None:
            name, _, wanted = self.prompt.partition("@")
            if prompt != name or (wanted and wanted != version):
                return False
        return self.model is None or self.model == model


class DriftWebhook(_Strict):
    """A JSON POST on each change of a subject's verdict, signed with HMAC-SHA256 of the body
    under `secret` (`os.environ/NAME` reads it from the environment)."""

    url: str
    secret: str | None = Field(default=None, min_length=1)
    retries: int = Field(default=3, ge=0, le=10)
    timeout: float = Field(default=5.0, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise ValueError(f"must be an http:// or https:// URL, not {value!r}")
        return value


class DriftRetention(_Strict):
    """How many samples are kept: per subject the newest `rows`, and none older than `age`
    (either may be null: no such limit). The background job deletes the rest on each run;
    the history of reports older than `age` goes too, but each subject's latest report stays."""

    rows: int | None = Field(default=100_000, ge=100, le=100_000_000)
    age: str | None = "30d"

    @field_validator("age")
    @classmethod
    def _age(cls, value: str | None) -> str | None:
        if value is not None:
            window_seconds(value)
        return value

    def age_seconds(self) -> int | None:
        return window_seconds(self.age) if self.age else None


class DriftSection(_Strict):
    # Seconds between the background job's runs; 0: no background job (`gateway drift report`
    # still computes on demand, and samples are kept until a job runs).
    interval: float = Field(default=300.0, ge=0, le=86_400 * 7)
    subjects: list[DriftSubjectConfig] = Field(default_factory=list)
    webhook: DriftWebhook | None = None
    retention: DriftRetention = Field(default_factory=DriftRetention)

    @model_validator(mode="after")
    def _windows_fit_what_is_kept(self) -> DriftSection:
        """A window larger than what retention keeps would never fill."""
        kept, age = self.retention.rows, self.retention.age_seconds()
        for index, entry in enumerate(self.subjects):
            for part in ("current", "reference"):
                window = getattr(entry, part)
                rows = window.rows if window is not None else None
                if kept is not None and rows is not None and rows > kept:
                    raise ValueError(
                        f"subjects[{index}].{part}.rows: {rows} is more than the "
                        f"{kept} samples per subject retention.rows keeps; raise it or lower this"
                    )
            current = entry.current.window if entry.current is not None else None
            if age is not None and current is not None and window_seconds(current) > age:
                raise ValueError(
                    f"subjects[{index}].current.window: {current} is longer than "
                    f"retention.age ({self.retention.age}) keeps samples; raise it or shorten this"
                )
        return self

    def samples_anything(self) -> bool:
        return any((entry.sample_rate or 0) > 0 for entry in self.subjects)
