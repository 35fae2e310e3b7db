"""`gateway drift report --html FILE`: one self-contained page (inline SVG and CSS, nothing
fetched), a section per subject: its state and windows, a chart of reference against current
for each drifted column (texts as a 2-D projection of their embeddings), and every test's
statistic, threshold and verdict."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from gateway.drift.charts import chart
from gateway.drift.models import DriftColumn, DriftReport
from gateway.drift.monitor import Evaluation

STATES = {"drift": "drift", "no_drift": "no drift", "not_enough_data": "not enough data"}
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; } h3 { font-size: 1em; }
.state { padding: 2px 8px; border-radius: 4px; color: #fff; font-weight: 600; }
.drift { background: #c0392b; } .no_drift { background: #2e8b57; }
.not_enough_data { background: #888; }
table { border-collapse: collapse; margin: .5em 0; } td, th { padding: 3px 8px;
border-bottom: 1px solid #ddd; text-align: left; font-size: 13px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } .yes { color: #c0392b;
font-weight: 600; } .muted { color: #777; } figure { margin: .5em 0 1.5em; }
"""


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _tests(columns: list[DriftColumn]) -> str:
    rows = []
    for column in columns:
        if not column.tests:
            rows.append(
                f"<tr><td>{escape(column.column)}</td><td colspan=5 class=muted>"
                f"{escape(column.note or '')}</td></tr>"
            )
        for test in column.tests:
            verdict = "drift" if test.drifted else "no drift"
            rows.append(
                f"<tr><td>{escape(column.column)}</td><td>{escape(test.test)}"
                f"{' (reported)' if test.role == 'reported' else ''}</td>"
                f"<td class=num>{_number(test.statistic)}</td>"
                f"<td class=num>{_number(test.threshold)}</td>"
                f"<td class='{'yes' if test.drifted else ''}'>{verdict}</td>"
                f"<td class=num>{column.reference_rows} / {column.current_rows}</td></tr>"
            )
    head = (
        "<tr><th>column</th><th>test</th><th>statistic</th><th>threshold</th><th>verdict</th>"
        "<th>rows (reference / current)</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _summary(report: DriftReport) -> str:
    reference = report.reference
    source = (
        f"{escape(reference.source)} ({reference.rows} rows, made {escape(reference.made_at)})"
        if reference
        else "none yet"
    )
    share = (
        f"{len(report.drifted_columns)} of {report.columns_judged} columns drifted "
        f"(share {report.drift_share:.2f}, drift at {report.drift_share_threshold:.2f})"
    )
    note = f"<p class=muted>{escape(report.note)}</p>" if report.note else ""
    return (
        f"<p><span class='state {report.state}'>{STATES[report.state]}</span> {share}</p>"
        f"<p>Reference: {source}<br>Current: {report.current.rows} rows "
        f"({escape(report.current.first or '-')} to {escape(report.current.last or '-')}), "
        f"at least {report.current.min_rows} needed</p>{note}"
    )


def _section(evaluation: Evaluation) -> str:
    report = evaluation.report
    figures = []
    reference = evaluation.reference
    for result in evaluation.results:
        if not result.drifted or reference is None:
            continue
        sketch, column = reference.columns[result.column], evaluation.current[result.column]
        figures.append(f"<figure><h3>{escape(result.column)}</h3>{chart(sketch, column)}</figure>")
    return (
        f"<section><h2>{escape(report.subject)}</h2>{_summary(report)}{''.join(figures)}"
        f"{_tests(report.columns)}</section>"
    )


def render(evaluations: list[Evaluation]) -> str:
    drifted = sum(e.report.state == "drift" for e in evaluations)
    made = datetime.now(UTC).isoformat(timespec="seconds")
    body = "".join(_section(e) for e in evaluations) or "<p>No subject has samples yet.</p>"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<title>Drift report</title>"
        f"<style>{STYLE}</style></head><body><h1>Drift report</h1>"
        f"<p>{len(evaluations)} subjects, {drifted} drifted. Made {made}.</p>{body}"
        "</body></html>\n"
    )
