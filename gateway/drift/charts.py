"""Charts of a reference against a current window, as inline SVG (no script, no CDN: the
report opens offline): bars of each window's share per bin or category, and for embeddings
both windows' vectors projected on the reference's first two principal components."""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.drift.columns import Column, distinct
from gateway.drift.sketch import CategoricalSketch, EmbeddingSketch, NumericSketch, Sketch

WIDTH, HEIGHT, PAD = 560, 200, 34
REFERENCE, CURRENT = "#7a8699", "#e8743b"
BINS = 30
TOP_CATEGORIES = 12
POINTS = 400  # per window, in a projection


def chart(sketch: Sketch, column: Column) -> str:
    if isinstance(sketch, EmbeddingSketch):
        return projection(sketch.vectors, column.values)
    if isinstance(sketch, NumericSketch) and sketch.distinct is None:
        return numeric_bars(sketch, column.values)
    return category_bars(sketch, column.values)


def _frame(body: str, labels: list[str], legend: bool = True) -> str:
    texts = "".join(
        f'<text x="{x}" y="{HEIGHT - 8}" font-size="11" text-anchor="{anchor}">'
        f"{escape(text)}</text>"
        for text, x, anchor in zip(
            labels, (PAD, WIDTH // 2, WIDTH - 6), ("start", "middle", "end"), strict=False
        )
    )
    key = (
        f'<rect x="{WIDTH - 170}" y="6" width="10" height="10" fill="{REFERENCE}"/>'
        f'<text x="{WIDTH - 156}" y="15" font-size="11">reference</text>'
        f'<rect x="{WIDTH - 90}" y="6" width="10" height="10" fill="{CURRENT}"/>'
        f'<text x="{WIDTH - 76}" y="15" font-size="11">current</text>'
        if legend
        else ""
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img">'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD + 10}" x2="{WIDTH - 6}" y2="{HEIGHT - PAD + 10}" '
        f'stroke="#999"/>{body}{texts}{key}</svg>'
    )


def _bars(reference: npt.NDArray[Any], current: npt.NDArray[Any]) -> str:
    """Paired bars of two windows' shares, one pair per bin."""
    top = max(float(reference.max(initial=0)), float(current.max(initial=0)), 1e-12)
    slot = (WIDTH - PAD - 6) / len(reference)
    height = HEIGHT - PAD - 14
    bars = []
    for i, (ref, cur) in enumerate(zip(reference, current, strict=True)):
        for offset, share, colour in ((0.1, ref, REFERENCE), (0.5, cur, CURRENT)):
            tall = height * float(share) / top
            x = PAD + slot * (i + offset)
            y = HEIGHT - PAD + 10 - tall
            bars.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.4:.1f}" height="{tall:.1f}" '
                f'fill="{colour}"><title>{share:.3f}</title></rect>'
            )
    return "".join(bars)


def numeric_bars(sketch: NumericSketch, values: npt.NDArray[np.float64]) -> str:
    low = min(sketch.minimum, float(values.min()))
    high = max(sketch.maximum, float(values.max()))
    edges = np.linspace(low, high if high > low else low + 1, BINS + 1)
    reference = sketch.histogram(edges) / sketch.count
    current = np.histogram(values, edges)[0] / len(values)
    labels = [f"{low:.4g}", "share of rows per bin", f"{high:.4g}"]
    return _frame(_bars(reference, current), labels)


def category_bars(sketch: Sketch, values: npt.NDArray[Any]) -> str:
    counts: dict[Any, int] = {}
    if isinstance(sketch, CategoricalSketch):
        counts = dict(sketch.counts)
    elif isinstance(sketch, NumericSketch) and sketch.distinct is not None:
        counts = dict(sketch.distinct)
    keys, found = distinct(values)
    mine = dict(zip(keys.tolist(), found.tolist(), strict=True))
    total_ref, total_cur = max(sum(counts.values()), 1), max(len(values), 1)
    union = sorted(
        set(counts) | set(mine),
        key=lambda k: -(counts.get(k, 0) / total_ref + mine.get(k, 0) / total_cur),
    )[:TOP_CATEGORIES]
    reference = np.array([counts.get(k, 0) / total_ref for k in union])
    current = np.array([mine.get(k, 0) / total_cur for k in union])
    slot = (WIDTH - PAD - 6) / max(len(union), 1)
    names = "".join(
        f'<text x="{PAD + slot * (i + 0.5):.1f}" y="{HEIGHT - PAD + 22}" font-size="10" '
        f'text-anchor="middle">{escape(str(k)[:14])}</text>'
        for i, k in enumerate(union)
    )
    return _frame(_bars(reference, current) + names, ["", "share of rows per value", ""])


def projection(reference: npt.NDArray[np.float32], current: npt.NDArray[np.float32]) -> str:
    """Both windows on the reference's first two principal components."""
    rng = np.random.default_rng(0)
    ref = reference[rng.permutation(len(reference))[:POINTS]].astype(np.float64)
    cur = current[rng.permutation(len(current))[:POINTS]].astype(np.float64)
    centre = ref.mean(axis=0)
    _, _, axes = np.linalg.svd(ref - centre, full_matrices=False)
    components = axes[:2].T
    points = [(ref - centre) @ components, (cur - centre) @ components]
    every = np.vstack(points)
    low, high = every.min(axis=0), every.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    dots = []
    for projected, colour in zip(points, (REFERENCE, CURRENT), strict=True):
        scaled = (projected - low) / span
        for x, y in scaled:
            cx = PAD + x * (WIDTH - PAD - 16)
            cy = 22 + (1 - y) * (HEIGHT - PAD - 30)
            dots.append(
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.2" fill="{colour}" fill-opacity="0.6"/>'
            )
    return _frame("".join(dots), ["", "first two principal components of the reference", ""])
