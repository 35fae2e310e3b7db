"""A collection's health check as one self-contained HTML page: the checks as a table, and
recall and latency per `hnsw_ef` as an inline SVG chart (no script, nothing fetched, so it
opens offline and can be attached to a ticket)."""

from __future__ import annotations

import math
from html import escape

from gateway.indexes.models import CollectionHealth, EfPoint

WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 64, 20, 44
COLOURS = {"ok": "#1a7f37", "warn": "#9a6700", "critical": "#cf222e", "not available": "#6e7781"}
RECALL, LATENCY = "#0969da", "#bf3989"


def _x(ef: int, low: int, high: int) -> float:
    span = math.log2(high) - math.log2(low) or 1.0
    return LEFT + (math.log2(ef) - math.log2(low)) / span * (WIDTH - LEFT - RIGHT)


def _y(value: float, top: float) -> float:
    return TOP + (1 - value / top) * (HEIGHT - TOP - BOTTOM) if top else HEIGHT - BOTTOM


def chart(curve: list[EfPoint]) -> str:
    """Recall (left axis, 0 to 1) and p95 latency (right axis, ms) against hnsw_ef (log)."""
    if not curve:
        return "<p>No recall curve: too few queries, or the collection could not be searched.</p>"
    low, high = curve[0].hnsw_ef, curve[-1].hnsw_ef
    slowest = max(p.p95_ms for p in curve) * 1.1 or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="recall and p95 latency per hnsw_ef">',
        f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
        f'height="{HEIGHT - TOP - BOTTOM}" fill="none" stroke="#d0d7de"/>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = _y(tick, 1.0)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eaeef2"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="{RECALL}">{tick:.2f}</text>'
            f'<text x="{WIDTH - RIGHT + 6}" y="{y + 4:.1f}" font-size="11" fill="{LATENCY}">'
            f"{tick * slowest:.2f}</text>"
        )
    for point in curve:
        x = _x(point.hnsw_ef, low, high)
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" '
            f'font-size="11">{point.hnsw_ef}</text>'
        )
    for colour, values, top in (
        (RECALL, [p.recall for p in curve], 1.0),
        (LATENCY, [p.p95_ms for p in curve], slowest),
    ):
        xy = [(_x(p.hnsw_ef, low, high), _y(v, top)) for p, v in zip(curve, values, strict=True)]
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in xy]
    parts.append(
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 8}" text-anchor="middle" '
        f'font-size="12">hnsw_ef</text>'
        f'<text x="14" y="{TOP + 10}" font-size="12" fill="{RECALL}">recall</text>'
        f'<text x="{WIDTH - 8}" y="{TOP + 10}" text-anchor="end" font-size="12" '
        f'fill="{LATENCY}">p95 ms</text></svg>'
    )
    return "".join(parts)


def _value(value: float | None, unit: str | None) -> str:
    if value is None:
        return ""
    shown = f"{value:.4g}"
    return escape(f"{shown} {unit}" if unit else shown)


def html_page(health: CollectionHealth) -> str:
    rows = "".join(
        f"<tr><td>{escape(c.name)}</td>"
        f'<td style="color:{COLOURS[c.status]};font-weight:600">{escape(c.status)}</td>'
        f"<td>{_value(c.value, c.unit)}</td><td>{escape(c.reason or c.summary)}</td></tr>"
        for c in health.checks
    )
    curve = "".join(
        f"<tr><td>{p.hnsw_ef}</td><td>{p.recall:.3f}</td><td>{p.p50_ms:.3f}</td>"
        f"<td>{p.p95_ms:.3f}</td></tr>"
        for p in health.ef_curve
    )
    title = f"Index health: {health.name}"
    status = health.status
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>
body{{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1f2328;max-width:72rem}}
table{{border-collapse:collapse;margin:1rem 0}}
td,th{{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;vertical-align:top}}
th{{background:#f6f8fa}}
</style></head><body>
<h1>{escape(title)}</h1>
<p><strong style="color:{COLOURS[status]}">{escape(status)}</strong> ·
{escape(health.engine)} at <code>{escape(health.location)}</code> · model
<code>{escape(health.model)}</code> · {health.points if health.points is not None else "?"}
points · checked {escape(health.checked_at)} in {health.seconds:.1f} s</p>
<h2>Checks</h2>
<table><tr><th>check</th><th>status</th><th>value</th><th>measured</th></tr>{rows}</table>
<h2>Recall and latency per hnsw_ef</h2>
{chart(health.ef_curve)}
<table><tr><th>hnsw_ef</th><th>recall</th><th>p50 ms</th><th>p95 ms</th></tr>{curve}</table>
</body></html>
"""
