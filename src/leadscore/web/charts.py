"""Charts for the dashboard, drawn by the server as inline SVG.

Why by hand and not a charting library: the pictures are few and simple (a sparkline, a step line,
heat strips, bars), the machines have no internet (no CDN), and inline SVG needs no JavaScript, so
the pages render complete on first load and tests can read the drawn values from the markup. Every
piece of text that reaches a chart (titles, causes, event names) goes through ``escape``.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable, Sequence

from markupsafe import Markup, escape

# Heatmap colours as video marketers use them: not watched, once, twice, three times or more.
HEAT_COLOURS = ("#d4d7dd", "#2e9e44", "#f0c419", "#d63c33")
HEAT_LABELS = ("not watched", "watched once", "watched twice", "watched 3+ times")
CAUSE_COLOURS = {"event": "#2563eb", "time": "#9ca3af", "model": "#9333ea"}
TIER_COLOURS = {"cold": "#60a5fa", "warm": "#f59e0b", "hot": "#ef4444"}
_FALLBACK = ("#64748b", "#0ea5e9", "#a855f7", "#14b8a6", "#f97316")


def tier_colour(name: str, index: int = 0) -> str:
    return TIER_COLOURS.get(name, _FALLBACK[index % len(_FALLBACK)])


def heat_level(plays: int) -> int:
    return 0 if plays <= 0 else min(int(plays), 3)


def _f(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".") if x == x else "0"


def mmss(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}"


def sparkline(values: Sequence[float], width: int = 96, height: int = 22) -> Markup:
    """The last scores of a lead as a small line (latest value dotted)."""
    vals = [float(v) for v in values]
    if not vals:
        return Markup(f'<svg class="spark" width="{width}" height="{height}" aria-label="no history"></svg>')
    if len(vals) == 1:
        vals = vals * 2
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or 1.0
    pad = 2
    xs = [pad + i * (width - 2 * pad) / (len(vals) - 1) for i in range(len(vals))]
    ys = [height - pad - (v - lo) / span * (height - 2 * pad) for v in vals]
    pts = " ".join(f"{_f(x)},{_f(y)}" for x, y in zip(xs, ys))
    trend = "up" if vals[-1] > vals[0] else "down" if vals[-1] < vals[0] else "flat"
    label = escape(f"score trend: {', '.join(_f(v) for v in values)}")
    return Markup(
        f'<svg class="spark spark-{trend}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{label}"><title>{label}</title>'
        f'<polyline fill="none" stroke-width="1.5" points="{pts}"/>'
        f'<circle cx="{_f(xs[-1])}" cy="{_f(ys[-1])}" r="2"/></svg>')


def runs(counts: Sequence[int]) -> list[tuple[int, int, int]]:
    """Per-second counts → [(start, end, heat level)] runs of equal colour."""
    out: list[tuple[int, int, int]] = []
    for k, c in enumerate(counts):
        level = heat_level(c)
        if out and out[-1][2] == level and out[-1][1] == k:
            out[-1] = (out[-1][0], k + 1, level)
        else:
            out.append((k, k + 1, level))
    return out


def heatmap_strip(counts: Sequence[int], ctas: Iterable[dict[str, Any]] = (), width: int = 720,
                  height: int = 22, axis: bool = True, label: str = "") -> Markup:
    """One viewer's watch counts per second: a strip of grey/green/yellow/red cells, CTA moments as
    dark ticks with a diamond on top. Each run is a <rect> carrying data-start/data-end/data-level."""
    n = max(len(counts), 1)
    top = 8
    h = top + height
    scale = width / n
    # preserveAspectRatio="none" stretches the strip to the page width, so text would be distorted:
    # the time axis is HTML below the SVG.
    parts = [f'<div class="heatwrap"><svg class="heatstrip" width="100%" viewBox="0 0 {width} {h}" preserveAspectRatio="none" '
             f'data-seconds="{len(counts)}" role="img" aria-label="{escape(label or "video heatmap")}">']
    for start, end, level in runs(counts):
        tip = escape(f"{mmss(start)}–{mmss(end)}: {HEAT_LABELS[level]}")
        parts.append(f'<rect class="heat heat-{level}" data-start="{start}" data-end="{end}" data-level="{level}" '
                     f'x="{_f(start * scale)}" y="{top}" width="{_f((end - start) * scale)}" height="{height}" '
                     f'fill="{HEAT_COLOURS[level]}"><title>{tip}</title></rect>')
    for cta in ctas:
        pos = cta.get("position")
        if pos is None:
            continue
        x = min(max(float(pos), 0.0), n) * scale
        tip = escape(f"CTA {cta.get('cta_type') or 'click'} at {mmss(float(pos))}")
        parts.append(f'<g class="cta" data-position="{_f(float(pos))}"><title>{tip}</title>'
                     f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{top - 2}" y2="{top + height}" stroke="#111827" stroke-width="2"/>'
                     f'<path d="M{_f(x - 3)},{top - 4} L{_f(x)},{top} L{_f(x + 3)},{top - 4} L{_f(x)},{top - 8} Z" fill="#111827"/></g>')
    parts.append("</svg>")
    if axis:
        parts.append('<div class="heat-axis">' + "".join(
            f"<span>{mmss(frac * len(counts))}</span>" for frac in (0, 0.25, 0.5, 0.75, 1)) + "</div>")
    parts.append("</div>")
    return Markup("".join(parts))


def _value_runs(values: Sequence[int]) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    for k, v in enumerate(values):
        if out and out[-1][2] == v:
            out[-1] = (out[-1][0], k + 1, v)
        else:
            out.append((k, k + 1, v))
    return out


def _time_x(ts: datetime, t0: datetime, t1: datetime, x0: float, x1: float) -> float:
    span = (t1 - t0).total_seconds() or 1.0
    return x0 + (ts - t0).total_seconds() / span * (x1 - x0)


def _nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k at least ``raw`` (axis ticks at round numbers)."""
    import math
    if raw <= 0:
        return 1.0
    base = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * base >= raw:
            return m * base
    return 10 * base


def history_chart(points: Sequence[dict[str, Any]], tiers: Sequence[dict[str, Any]], until: datetime,
                  width: int = 760, height: int = 230) -> Markup:
    """The score over time as a step line; each change a dot coloured by its cause (event, time,
    model) with the cause in its tooltip; dashed lines at the tier thresholds.

    ``points``: history oldest first, each {"at": datetime, "score", "cause", "cause_ref", "tier"}."""
    if not points:
        return Markup('<p class="muted">No score changes recorded yet.</p>')
    left, right, top, bottom = 44, 12, 10, 26
    x0, x1, y0, y1 = left, width - right, height - bottom, top
    t0 = points[0]["at"]
    t1 = max(until, points[-1]["at"])
    lo = min(0.0, min(float(p["score"]) for p in points))
    thresholds = [float(t["min"]) for t in tiers if t.get("min") is not None]
    top = max([float(p["score"]) for p in points] + thresholds) * 1.05
    step = _nice_step((top - lo) / 4)
    hi = lo + 4 * step

    def y(v: float) -> float:
        return y0 - (v - lo) / ((hi - lo) or 1) * (y0 - y1)

    def x(ts: datetime) -> float:
        return _time_x(ts, t0, t1, x0, x1) if t1 > t0 else (x0 + x1) / 2

    parts = [f'<svg class="chart history" viewBox="0 0 {width} {height}" width="100%" role="img" '
             f'aria-label="score history">']
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(f'<line class="grid" x1="{x0}" x2="{x1}" y1="{_f(y(v))}" y2="{_f(y(v))}"/>'
                     f'<text class="axis" x="{x0 - 6}" y="{_f(y(v) + 4)}" text-anchor="end">{_f(v)}</text>')
    for i, t in enumerate(tiers):
        if t.get("min") is None:
            continue
        yy = y(float(t["min"]))
        parts.append(f'<line class="threshold" x1="{x0}" x2="{x1}" y1="{_f(yy)}" y2="{_f(yy)}" '
                     f'stroke="{tier_colour(t["name"], i)}"/>'
                     f'<text class="axis" x="{x1}" y="{_f(yy - 3)}" text-anchor="end">{escape(t["name"])} ≥ {_f(float(t["min"]))}</text>')
    path = []
    for i, p in enumerate(points):
        px, py = x(p["at"]), y(float(p["score"]))
        if i == 0:
            path.append(f"M{_f(px)},{_f(py)}")
        else:
            path.append(f"H{_f(px)} V{_f(py)}")
    path.append(f"H{_f(x(t1))}")
    parts.append(f'<path class="line" d="{" ".join(path)}" fill="none"/>')
    for p in points:
        cause = str(p.get("cause") or "")
        ref = p.get("cause_ref") or ""
        tip = f"{p['at']:%Y-%m-%d %H:%M} · score {_f(float(p['score']))} · {p.get('tier')} · cause: {cause}"
        if ref:
            tip += f" ({ref})"
        parts.append(f'<circle class="mark cause-{escape(cause)}" data-cause="{escape(cause)}" cx="{_f(x(p["at"]))}" '
                     f'cy="{_f(y(float(p["score"])))}" r="4" fill="{CAUSE_COLOURS.get(cause, "#111827")}">'
                     f'<title>{escape(tip)}</title></circle>')
    parts.append(f'<text class="axis" x="{x0}" y="{height - 6}">{t0:%Y-%m-%d}</text>'
                 f'<text class="axis" x="{x1}" y="{height - 6}" text-anchor="end">{t1:%Y-%m-%d}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def engagement_graph(retention: Sequence[float], rewatches: Sequence[int], viewers: int,
                     width: int = 1100, height: int = 240) -> Markup:
    """Share of viewers still watching at each second (area, 0–100 %) and rewatches per second
    (bars, own scale). The series are also in ``data-series`` for people and tests to read."""
    n = len(retention)
    series = json.dumps({"retention": [round(v, 6) for v in retention], "rewatches": list(map(int, rewatches)),
                         "viewers": viewers}, separators=(",", ":"))
    if n == 0:
        return Markup(f'<svg class="chart engagement" data-series="{escape(series)}"></svg>'
                      '<p class="muted">Nobody has watched this video yet.</p>')
    left, right, top, bottom = 40, 40, 10, 26
    x0, x1, y0, y1 = left, width - right, height - bottom, top
    step = (x1 - x0) / n
    rmax = max(max(rewatches, default=0), 1)
    parts = [f'<svg class="chart engagement" viewBox="0 0 {width} {height}" width="100%" role="img" '
             f'aria-label="engagement graph" data-series="{escape(series)}">']
    for k in range(5):
        v = k * 25
        yy = y0 - v / 100 * (y0 - y1)
        parts.append(f'<line class="grid" x1="{x0}" x2="{x1}" y1="{_f(yy)}" y2="{_f(yy)}"/>'
                     f'<text class="axis" x="{x0 - 6}" y="{_f(yy + 4)}" text-anchor="end">{v}%</text>')
    for start, end, r in _value_runs(rewatches):
        if r <= 0:
            continue
        bh = r / rmax * (y0 - y1)
        parts.append(f'<rect class="rewatch" data-start="{start}" data-end="{end}" data-rewatches="{int(r)}" '
                     f'x="{_f(x0 + start * step)}" y="{_f(y0 - bh)}" width="{_f((end - start) * step)}" height="{_f(bh)}"/>')
    pts = [f"{_f(x0 + (k + 0.5) * step)},{_f(y0 - v * (y0 - y1))}" for k, v in enumerate(retention)]
    parts.append(f'<polygon class="retention-area" points="{_f(x0 + 0.5 * step)},{y0} {" ".join(pts)} '
                 f'{_f(x0 + (n - 0.5) * step)},{y0}"/>')
    parts.append(f'<polyline class="retention" fill="none" points="{" ".join(pts)}"/>')
    parts.append(f'<text class="axis" x="{x1 + 6}" y="{y1 + 8}">{rmax}</text>'
                 f'<text class="axis" x="{x1 + 6}" y="{y0}">0</text>')
    for frac in (0, 0.25, 0.5, 0.75, 1):
        xx = x0 + frac * (x1 - x0)
        anchor = "start" if frac == 0 else "end" if frac == 1 else "middle"
        parts.append(f'<text class="axis" x="{_f(xx)}" y="{height - 6}" text-anchor="{anchor}">{mmss(frac * n)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def bars(items: Sequence[tuple[str, float]], colours: Sequence[str] | None = None, width: int = 360,
         unit: str = "", css: str = "bars") -> Markup:
    """Horizontal bars with their label and value (tier counts, what-if results)."""
    if not items:
        return Markup('<p class="muted">Nothing to show.</p>')
    row, label_w, value_w = 24, 90, 70
    top = max((v for _, v in items), default=0) or 1
    h = row * len(items)
    parts = [f'<svg class="chart {css}" viewBox="0 0 {width} {h}" width="100%" role="img">']
    for i, (name, value) in enumerate(items):
        colour = colours[i] if colours else "#3b82f6"
        bw = value / top * (width - label_w - value_w)
        yy = i * row
        parts.append(f'<g class="bar" data-label="{escape(name)}" data-value="{_f(float(value))}">'
                     f'<text class="axis" x="{label_w - 6}" y="{yy + 16}" text-anchor="end">{escape(name)}</text>'
                     f'<rect x="{label_w}" y="{yy + 4}" width="{_f(bw)}" height="{row - 8}" rx="3" fill="{colour}"/>'
                     f'<text class="value" x="{_f(label_w + bw + 6)}" y="{yy + 16}">{_f(float(value))}{escape(unit)}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))


def histogram(bins: Sequence[dict[str, Any]], marks: Sequence[tuple[str, float, str]] = (), width: int = 560,
              height: int = 180) -> Markup:
    """Lead counts per score band (vertical bars) with the tier thresholds as vertical lines."""
    if not bins:
        return Markup('<p class="muted">No scores yet.</p>')
    left, right, top, bottom = 40, 10, 10, 24
    x0, x1, y0, y1 = left, width - right, height - bottom, top
    lo = min(b["from"] for b in bins)
    hi = max(b["to"] for b in bins)
    top_n = max(b["leads"] for b in bins) or 1

    def x(v: float) -> float:
        return x0 + (v - lo) / ((hi - lo) or 1) * (x1 - x0)

    parts = [f'<svg class="chart histogram" viewBox="0 0 {width} {height}" width="100%" role="img">',
             f'<text class="axis" x="{x0 - 6}" y="{y1 + 8}" text-anchor="end">{top_n}</text>'
             f'<text class="axis" x="{x0 - 6}" y="{y0}" text-anchor="end">0</text>']
    for b in bins:
        bh = b["leads"] / top_n * (y0 - y1)
        parts.append(f'<rect class="bin" data-from="{b["from"]}" data-leads="{b["leads"]}" x="{_f(x(b["from"]) + 0.5)}" '
                     f'y="{_f(y0 - bh)}" width="{_f(max(x(b["to"]) - x(b["from"]) - 1, 0.5))}" height="{_f(bh)}">'
                     f'<title>{escape(str(b["from"]) + "–" + str(b["to"]) + ": " + str(b["leads"]) + " leads")}</title></rect>')
    for name, value, colour in marks:
        if lo <= value <= hi:
            parts.append(f'<line class="threshold" x1="{_f(x(value))}" x2="{_f(x(value))}" y1="{y1}" y2="{y0}" stroke="{colour}"/>'
                         f'<text class="axis" x="{_f(x(value) + 3)}" y="{y1 + 10}">{escape(name)}</text>')
    for v in (lo, (lo + hi) / 2, hi):
        parts.append(f'<text class="axis" x="{_f(x(v))}" y="{height - 6}" text-anchor="middle">{_f(v)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
