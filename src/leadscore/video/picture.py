"""The heatmap picture: one row per viewer, one column per second, with a time axis.

Colours as video marketers use them: grey = not watched, green = once, yellow = twice, red = three
times or more. SVG is written by hand (a few rectangles per row: runs of equal counts, so an hour-long
video stays small; no plotting library gives this layout more simply); PNG is drawn with Pillow.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path

GREY, GREEN, YELLOW, RED = "#d9d9d9", "#2ca02c", "#f2c400", "#d62728"
LEGEND = ((GREY, "not watched"), (GREEN, "once"), (YELLOW, "twice"), (RED, "3+ times"))

LABEL_W = 170      # px for viewer names
ROW_H = 16
ROW_GAP = 3
TOP = 40           # title
AXIS_H = 34
MAX_PLOT_W = 900


def colour(plays: int) -> str:
    return GREY if plays <= 0 else GREEN if plays == 1 else YELLOW if plays == 2 else RED


def runs(counts: list[int]) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    for k, c in enumerate(counts):
        if out and out[-1][2] == c:
            out[-1] = (out[-1][0], k + 1, c)
        else:
            out.append((k, k + 1, c))
    return out


def _tick_step(seconds: int) -> int:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800):
        if seconds / step <= 12:
            return step
    return 3600


def _clock(s: int) -> str:
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


@dataclass
class Layout:
    n: int
    rows: int
    scale: float       # px per second

    @property
    def width(self) -> int:
        return int(LABEL_W + self.n * self.scale + 20)

    @property
    def height(self) -> int:
        return TOP + max(self.rows, 1) * (ROW_H + ROW_GAP) + AXIS_H + 24

    def x(self, sec: float) -> float:
        return LABEL_W + sec * self.scale

    def y(self, row: int) -> int:
        return TOP + row * (ROW_H + ROW_GAP)


def _layout(rows: list[tuple[str, list[int]]], seconds: int) -> Layout:
    n = max([seconds] + [len(c) for _, c in rows])
    scale = min(12.0, MAX_PLOT_W / max(n, 1))
    return Layout(n=n, rows=len(rows), scale=scale)


def render_svg(rows: list[tuple[str, list[int]]], seconds: int, title: str) -> str:
    """``rows``: (viewer label, plays per second). Returns an SVG document."""
    lay = _layout(rows, seconds)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{lay.width}" height="{lay.height}" '
           f'viewBox="0 0 {lay.width} {lay.height}" font-family="sans-serif" font-size="11">',
           '<rect width="100%" height="100%" fill="#ffffff"/>',
           f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title)}</text>']
    for i, (label, counts) in enumerate(rows):
        y = lay.y(i)
        out.append(f'<text x="{LABEL_W - 6}" y="{y + ROW_H - 4}" text-anchor="end">{escape(label[:28])}</text>')
        padded = list(counts) + [0] * (lay.n - len(counts))
        for start, end, plays in runs(padded):
            out.append(f'<rect class="s{min(plays, 3)}" x="{lay.x(start):.2f}" y="{y}" '
                       f'width="{(end - start) * lay.scale:.2f}" height="{ROW_H}" fill="{colour(plays)}">'
                       f'<title>{_clock(start)}–{_clock(end)}: {plays}×</title></rect>')
    axis_y = lay.y(len(rows)) + 4
    out.append(f'<line x1="{LABEL_W}" y1="{axis_y}" x2="{lay.x(lay.n):.2f}" y2="{axis_y}" stroke="#333"/>')
    step = _tick_step(lay.n)
    for s in range(0, lay.n + 1, step):
        x = lay.x(s)
        out.append(f'<line x1="{x:.2f}" y1="{axis_y}" x2="{x:.2f}" y2="{axis_y + 5}" stroke="#333"/>')
        out.append(f'<text x="{x:.2f}" y="{axis_y + 17}" text-anchor="middle">{_clock(s)}</text>')
    ly = axis_y + AXIS_H
    x = LABEL_W
    for fill, text in LEGEND:
        out.append(f'<rect x="{x}" y="{ly - 10}" width="12" height="12" fill="{fill}"/>')
        out.append(f'<text x="{x + 16}" y="{ly}">{text}</text>')
        x += 110
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render_png(rows: list[tuple[str, list[int]]], seconds: int, title: str, path: str | Path) -> None:
    from PIL import Image, ImageDraw

    lay = _layout(rows, seconds)
    img = Image.new("RGB", (lay.width, lay.height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 8), title, fill="black")
    for i, (label, counts) in enumerate(rows):
        y = lay.y(i)
        draw.text((6, y + 2), label[:26], fill="black")
        padded = list(counts) + [0] * (lay.n - len(counts))
        for start, end, plays in runs(padded):
            draw.rectangle([lay.x(start), y, max(lay.x(end) - 1, lay.x(start)), y + ROW_H - 1], fill=colour(plays))
    axis_y = lay.y(len(rows)) + 4
    draw.line([LABEL_W, axis_y, lay.x(lay.n), axis_y], fill="#333333")
    step = _tick_step(lay.n)
    for s in range(0, lay.n + 1, step):
        x = lay.x(s)
        draw.line([x, axis_y, x, axis_y + 5], fill="#333333")
        draw.text((x - 10, axis_y + 8), _clock(s), fill="black")
    ly = axis_y + AXIS_H
    x = LABEL_W
    for fill, text in LEGEND:
        draw.rectangle([x, ly - 10, x + 11, ly + 1], fill=fill)
        draw.text((x + 16, ly - 10), text, fill="black")
        x += 110
    img.save(str(path), format="PNG")


def write_heatmap(rows: list[tuple[str, list[int]]], seconds: int, title: str, out: str | Path) -> Path:
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".svg":
        out.write_text(render_svg(rows, seconds, title), encoding="utf-8")
    elif suffix == ".png":
        render_png(rows, seconds, title, out)
    else:
        raise ValueError(f"{out}: the picture must be .svg or .png, not {suffix or 'no extension'!r}")
    return out
