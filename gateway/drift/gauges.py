"""Prometheus gauges of the latest drift report of every subject, read at each scrape from
what the drift job last computed or loaded (so every worker shows every subject):

    gateway_drift_detected{subject}                 1 drift, 0 no drift (absent: no verdict)
    gateway_drift_enough_data{subject}              1 when the subject had a verdict
    gateway_drift_share{subject}                    share of judged columns that drifted
    gateway_drift_rows{subject, window}             reference / current rows
    gateway_drift_statistic{subject, column, test}  each test's statistic (p-value, distance)
    gateway_drift_threshold{subject, column, test}
    gateway_drift_test_drifted{subject, column, test}  1 when that test found drift
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class DriftGauges(Collector):
    def __init__(self) -> None:
        self.reports: dict[str, dict[str, Any]] = {}

    def update(self, reports: list[dict[str, Any]]) -> None:
        self.reports = {**self.reports, **{r["subject"]: r for r in reports}}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        detected = GaugeMetricFamily(
            "gateway_drift_detected", "1 when the subject drifted, 0 when not.", labels=["subject"]
        )
        enough = GaugeMetricFamily(
            "gateway_drift_enough_data",
            "1 when the subject's last comparison had enough data for a verdict.",
            labels=["subject"],
        )
        share = GaugeMetricFamily(
            "gateway_drift_share", "Share of judged columns that drifted.", labels=["subject"]
        )
        rows = GaugeMetricFamily(
            "gateway_drift_rows",
            "Rows in the reference and current windows.",
            labels=["subject", "window"],
        )
        test_labels = ["subject", "column", "test"]
        statistic = GaugeMetricFamily(
            "gateway_drift_statistic",
            "Each test's statistic (a p-value for ks, chisquare and z; else a distance).",
            labels=test_labels,
        )
        threshold = GaugeMetricFamily(
            "gateway_drift_threshold", "Each test's threshold.", labels=test_labels
        )
        drifted = GaugeMetricFamily(
            "gateway_drift_test_drifted", "1 when the test found drift.", labels=test_labels
        )
        for subject, report in sorted(self.reports.items()):
            judged = report["state"] != "not_enough_data"
            enough.add_metric([subject], 1.0 if judged else 0.0)
            if judged:
                detected.add_metric([subject], 1.0 if report["state"] == "drift" else 0.0)
                share.add_metric([subject], report["drift_share"])
            reference = report.get("reference") or {}
            rows.add_metric([subject, "reference"], float(reference.get("rows", 0)))
            rows.add_metric([subject, "current"], float(report["current"]["rows"]))
            for column in report["columns"]:
                for test in column["tests"]:
                    labels = [subject, column["column"], test["test"]]
                    if test["statistic"] is not None:
                        statistic.add_metric(labels, test["statistic"])
                    threshold.add_metric(labels, test["threshold"])
                    drifted.add_metric(labels, 1.0 if test["drifted"] else 0.0)
        yield from (detected, enough, share, rows, statistic, threshold, drifted)
