"""A small braille line-chart renderer: series in, a Rich `Text` out.

Each terminal cell holds a 2x4 braille dot grid. Every series is decimated to one min/max
bucket per dot column (two per cell) before drawing, so the cost of a drawing depends on the
chart's size only. No Textual import here: the benchmark and the tests call it directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text

from lrconsole.tui.series import Series

# Bit of the braille dot at (dx, dy) inside a cell, dx in 0..1, dy in 0..3.
_DOT = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
LABEL_WIDTH = 8
MARKER_STYLE = "grey50"
AXIS_STYLE = "grey62"


@dataclass(frozen=True)
class Trace:
    """One line on a chart."""

    series: Series
    style: str
    label: str


def format_value(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e5 or magnitude < 1e-3:
        return f"{value:.1e}"
    return f"{value:.4g}"


def _points(
    series: Series, columns: int, log: bool
) -> tuple[list[tuple[float, float] | None], bool]:
    """Per point (or bucket): transformed (lo, hi), or None for a gap; and whether bucketed."""
    size = len(series)
    raw = series.buckets(columns)
    out: list[tuple[float, float] | None] = []
    for lo, hi in raw:
        if lo > hi:
            out.append(None)
            continue
        if log:
            if hi <= 0:
                out.append(None)
                continue
            lo = math.log10(lo) if lo > 0 else math.log10(hi)
            hi = math.log10(hi)
        out.append((lo, hi))
    return out, size > columns


def render_chart(
    traces: Sequence[Trace],
    width: int,
    height: int,
    *,
    x_first: int = 1,
    log: bool = False,
    markers: Sequence[int] = (),
    flags: Sequence[tuple[int, str]] = (),
    empty_text: str = "no data yet",
) -> Text:
    """Draw `traces` into a `width` x `height` block of text.

    `markers` are positions (0-based indices into the series) that get a dotted vertical
    line, e.g. segment boundaries; `flags` are (position, style) pairs that get a dashed
    line in that style, e.g. where a policy acted. `x_first` labels index 0 on the x axis.
    """
    text = Text(no_wrap=True, overflow="crop")
    plot_w = width - LABEL_WIDTH - 1
    plot_h = height - 1
    if plot_w < 4 or plot_h < 2:
        return text
    size = max((len(t.series) for t in traces), default=0)
    if size == 0:
        pad = " " * max(0, (width - len(empty_text)) // 2)
        for row in range(height):
            if row == height // 2:
                text.append(f"{pad}{empty_text}", style="italic grey50")
            if row < height - 1:
                text.append("\n")
        return text
    dots_x = plot_w * 2
    dots_y = plot_h * 4
    columns = dots_x

    decimated = [_points(t.series, columns, log) for t in traces]
    y_lo, y_hi = math.inf, -math.inf
    for pts, _ in decimated:
        for p in pts:
            if p is not None:
                y_lo = min(y_lo, p[0])
                y_hi = max(y_hi, p[1])
    if y_lo > y_hi:
        y_lo, y_hi = 0.0, 1.0
    if y_hi - y_lo < 1e-12 * max(1.0, abs(y_hi)):
        pad_y = max(abs(y_hi) * 0.05, 1e-9)
        y_lo, y_hi = y_lo - pad_y, y_hi + pad_y
    y_scale = (dots_y - 1) / (y_hi - y_lo)

    masks = bytearray(plot_w * plot_h)
    owner = bytearray(plot_w * plot_h)

    def ydot(v: float) -> int:
        return min(dots_y - 1, max(0, round((y_hi - v) * y_scale)))

    def plot(x: int, y: int, who: int) -> None:
        cell = (y >> 2) * plot_w + (x >> 1)
        masks[cell] |= _DOT[x & 1][y & 3]
        owner[cell] = who

    for who, (pts, bucketed) in enumerate(decimated, start=1):
        n = len(pts)
        x_step = 1.0 if bucketed else (dots_x - 1) / max(1, size - 1)
        prev: tuple[int, int, int] | None = None  # x, y_top, y_bottom
        for i, p in enumerate(pts):
            if p is None:
                prev = None
                continue
            x = min(dots_x - 1, round(i * x_step)) if n > 1 else 0
            top, bottom = ydot(p[1]), ydot(p[0])
            # The vertical span, inlined: the hot loop of a redraw.
            column, bits = x >> 1, _DOT[x & 1]
            for y in range(top, bottom + 1):
                cell = (y >> 2) * plot_w + column
                masks[cell] |= bits[y & 3]
                owner[cell] = who
            if prev is not None and x - prev[0] > 0:
                px, ptop, pbottom = prev
                # Join the previous span to this one with a straight line.
                if pbottom < top:
                    y0, y1 = pbottom, top
                elif ptop > bottom:
                    y0, y1 = ptop, bottom
                else:
                    y0 = y1 = (max(ptop, top) + min(pbottom, bottom)) // 2
                dx = x - px
                steps = max(dx, abs(y1 - y0))
                for s in range(1, steps):
                    plot(px + round(dx * s / steps), y0 + round((y1 - y0) * s / steps), who)
            prev = (x, top, bottom)

    def column_of(m: int) -> int:
        mx = round(m * (dots_x - 1) / max(1, size - 1)) if size <= columns else m * columns // size
        return min(plot_w - 1, mx >> 1)

    marker_cols = {column_of(m) for m in markers if 0 < m < size}
    flag_cols = {column_of(m): style for m, style in flags if 0 <= m < size}

    labels = {0: y_hi, plot_h - 1: y_lo}
    if plot_h >= 5:
        labels[(plot_h - 1) // 2] = y_hi - (y_hi - y_lo) * ((plot_h - 1) // 2) / (plot_h - 1)
    styles = [""] + [t.style for t in traces]
    for row in range(plot_h):
        if row in labels:
            value = 10 ** labels[row] if log else labels[row]
            text.append(format_value(value).rjust(LABEL_WIDTH)[-LABEL_WIDTH:], style=AXIS_STYLE)
            text.append("┤", style=AXIS_STYLE)
        else:
            text.append(" " * LABEL_WIDTH)
            text.append("│", style=AXIS_STYLE)
        base = row * plot_w
        run_style: str | None = None
        run: list[str] = []
        for col in range(plot_w):
            mask = masks[base + col]
            if mask:
                ch, style = chr(0x2800 + mask), styles[owner[base + col]]
            elif col in flag_cols:
                ch, style = "╎", flag_cols[col]
            elif col in marker_cols:
                ch, style = "┊", MARKER_STYLE
            else:
                ch, style = " ", ""
            if style != run_style and run:
                text.append("".join(run), style=run_style or None)
                run = []
            run_style = style
            run.append(ch)
        if run:
            text.append("".join(run), style=run_style or None)
        text.append("\n")
    # The x axis: first and last epoch, with the boundary ticks.
    axis = ["─"] * plot_w
    for col in marker_cols:
        axis[col] = "┴"
    x_last = x_first + size - 1
    first, last = str(x_first), str(x_last)
    axis_line = "".join(axis)
    if plot_w > len(first) + len(last) + 2:
        axis_line = first + axis_line[len(first) : plot_w - len(last)] + last
    text.append(" " * LABEL_WIDTH + "└", style=AXIS_STYLE)
    text.append(axis_line, style=AXIS_STYLE)
    return text
