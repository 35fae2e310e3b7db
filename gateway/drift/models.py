"""Drift results as the API returns them, the CLI prints them and the history stores them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.core.answers import Answer, ObjectList

State = Literal["drift", "no_drift", "not_enough_data"]


class DriftTest(Answer):
    test: str = Field(
        description="ks, chisquare, z, wasserstein, jensenshannon, psi, domain_classifier, "
        "centroid_cosine or mmd."
    )
    statistic: float | None = Field(description="A p-value for ks, chisquare and z.")
    threshold: float
    drifted: bool
    role: Literal["verdict", "reported"] = Field(
        description="The column's verdict comes from its one verdict test; reported tests are "
        "shown beside it and do not count."
    )


class DriftColumn(Answer):
    column: str
    kind: Literal["numerical", "categorical", "embedding"]
    reference_rows: int
    current_rows: int
    drifted: bool | None = Field(description="null: no verdict (see note).")
    note: str | None = None
    tests: list[DriftTest]


class DriftReferenceInfo(Answer):
    source: str = Field(description="Where its rows came from.")
    rows: int
    made_at: str


class DriftWindowInfo(Answer):
    rows: int
    min_rows: int
    first: str | None = Field(description="The oldest current sample's time.")
    last: str | None


class DriftReport(Answer):
    """One subject compared once: every test's statistic, threshold and verdict, the window
    sizes and the subject's state."""

    subject: str = Field(description="prompt:NAME@VERSION:ALIAS, model:ALIAS or classic:NAME@V.")
    kind: Literal["prompt", "model", "classic"]
    model: str
    prompt: str | None
    version: str | None
    state: State
    computed_at: str
    drift_share: float = Field(description="Share of judged columns that drifted.")
    drift_share_threshold: float
    drifted_columns: list[str]
    columns_judged: int
    note: str | None = Field(default=None, description="Why there is no verdict.")
    reference: DriftReferenceInfo | None
    current: DriftWindowInfo
    columns: list[DriftColumn]


class DriftReportList(ObjectList[DriftReport]):
    """The latest report of every subject."""


class DriftHistory(ObjectList[DriftReport]):
    """A subject's reports, newest first."""

    subject: str
