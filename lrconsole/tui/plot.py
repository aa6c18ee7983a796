"""A small braille line-chart renderer: series in, a Rich `Text` out.

Each terminal cell holds a 2x4 braille dot grid. Every series is decimated to one min/max
bucket per dot column (two per cell) before drawing, so the cost of a drawing depends on the
chart's size only. No Textual import here: the benchmark and the tests call it directly.

The x range is a window of series positions shared by every trace (and by the charts of one
screen), so an epoch sits at the same column whatever else is drawn; a longer trace is cut
at the window's edge. The y range can be robust: a few outliers on one side (the first
epochs' loss) are clipped at that edge and marked, instead of squashing the rest.
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
BEST_STYLE = "bold #87ff87"
CLIP_MARK = {"top": "▲", "bottom": "▼"}
ROBUST_QUANTILE = 0.95


@dataclass(frozen=True)
class Trace:
    """One line on a chart."""

    series: Series
    style: str
    label: str
    scale: bool = True  # False: drawn inside the range the others set (branches, overlays)


def format_value(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e5 or magnitude < 1e-3:
        return f"{value:.1e}"
    return f"{value:.4g}"


def _points(
    series: Series, columns: int, log: bool, start: int, stop: int
) -> list[tuple[float, float] | None]:
    """Per point (or bucket) of the window: transformed (lo, hi), or None for a gap."""
    out: list[tuple[float, float] | None] = []
    for lo, hi in series.buckets(columns, start, stop):
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
    return out


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


def robust_limits(
    points: Sequence[Sequence[tuple[float, float] | None]], clip: str | None
) -> tuple[float, float, bool]:
    """(low, high, clipped): the y range of `points`; with `clip` "top" (or "bottom") the
    values far beyond the 95th (5th) percentile are left out of it, e.g. the first epochs of
    a loss that fell from 37 to 8-10. Far means by more than the spread of the rest."""
    lows = [p[0] for pts in points for p in pts if p is not None]
    highs = [p[1] for pts in points for p in pts if p is not None]
    if not lows:
        return math.inf, -math.inf, False
    y_lo, y_hi = min(lows), max(highs)
    if clip == "top" and len(highs) >= 8:
        q = _quantile(highs, ROBUST_QUANTILE)
        cap = q + max(q - y_lo, 0.1 * (y_hi - y_lo))  # a flat line still gets room
        if y_hi > cap > y_lo:
            return y_lo, cap, True
    elif clip == "bottom" and len(lows) >= 8:
        q = _quantile(lows, 1 - ROBUST_QUANTILE)
        floor = q - max(y_hi - q, 0.1 * (y_hi - y_lo))
        if y_lo < floor < y_hi:
            return floor, y_hi, True
    return y_lo, y_hi, False


def label_rows(plot_h: int) -> list[int]:
    """Rows that carry a y label: top, bottom, and one about every 4 rows between."""
    if plot_h < 5:
        return [0, plot_h - 1]
    count = 1 + max(2, (plot_h - 1) // 4)
    return sorted({round(i * (plot_h - 1) / (count - 1)) for i in range(count)})


def render_chart(
    traces: Sequence[Trace],
    width: int,
    height: int,
    *,
    x_first: int = 1,
    x_start: int = 0,
    x_stop: int | None = None,
    log: bool = False,
    markers: Sequence[int] = (),
    flags: Sequence[tuple[int, str]] = (),
    best: int | None = None,
    robust: str | None = None,
    x_title: str = "",
    empty_text: str = "no data yet",
) -> Text:
    """Draw `traces` into a `width` x `height` block of text.

    The x range is the window [x_start, x_stop) of series positions (default: all of the
    longest trace); `x_first` labels position 0. `markers` are positions that get a dotted
    vertical line, e.g. segment boundaries; `flags` are (position, style) pairs that get a
    dashed line in that style, e.g. where a policy acted; `best` gets a mark on the x axis.
    `robust` ("top", "bottom" or None) clips far outliers on that side, marked at the edge.
    """
    text = Text(no_wrap=True, overflow="crop")
    plot_w = width - LABEL_WIDTH - 1
    plot_h = height - 1
    if plot_w < 4 or plot_h < 2:
        return text
    size = max((len(t.series) for t in traces), default=0)
    stop = size if x_stop is None else x_stop
    start = max(0, min(x_start, stop))
    window = stop - start
    if window <= 0 or size <= start:
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
    bucketed = window > columns

    decimated = [_points(t.series, columns, log, start, stop) for t in traces]
    scaling = [pts for pts, t in zip(decimated, traces, strict=True) if t.scale]
    y_lo, y_hi, clipped = robust_limits(scaling or decimated, robust)
    if y_lo > y_hi:
        y_lo, y_hi = 0.0, 1.0
    if y_hi - y_lo < 1e-12 * max(1.0, abs(y_hi)):
        pad_y = max(abs(y_hi) * 0.05, 1e-9)
        y_lo, y_hi = y_lo - pad_y, y_hi + pad_y
    y_scale = (dots_y - 1) / (y_hi - y_lo)
    span = (y_hi - y_lo) * 1e-9

    masks = bytearray(plot_w * plot_h)
    owner = bytearray(plot_w * plot_h)
    clip_cols: dict[int, int] = {}  # column -> trace with a value past the clipped edge

    def ydot(v: float) -> int:
        return min(dots_y - 1, max(0, round((y_hi - v) * y_scale)))

    def plot(x: int, y: int, who: int) -> None:
        cell = (y >> 2) * plot_w + (x >> 1)
        masks[cell] |= _DOT[x & 1][y & 3]
        owner[cell] = who

    x_step = 1.0 if bucketed else (dots_x - 1) / max(1, window - 1)
    for who, (pts, trace) in enumerate(zip(decimated, traces, strict=True), start=1):
        prev: tuple[int, int, int] | None = None  # x, y_top, y_bottom
        for i, p in enumerate(pts):
            outside = p is not None and (p[0] > y_hi + span or p[1] < y_lo - span)
            if p is None or (outside and not trace.scale):
                prev = None
                continue
            x = min(dots_x - 1, round(i * x_step))
            if trace.scale and clipped and (p[1] > y_hi + span or p[0] < y_lo - span):
                clip_cols[x >> 1] = who
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
        rel = m - start
        mx = (
            round(rel * (dots_x - 1) / max(1, window - 1))
            if not bucketed
            else rel * columns // window
        )
        return min(plot_w - 1, mx >> 1)

    def shown(m: int) -> bool:
        return start <= m < stop and m < size

    marker_cols = {column_of(m) for m in markers if start < m < stop and m < size}
    flag_cols = {column_of(m): style for m, style in flags if shown(m)}
    clip_row = (0 if robust == "top" else plot_h - 1) if clip_cols else -1

    labels = {row: y_hi - (y_hi - y_lo) * row / (plot_h - 1) for row in label_rows(plot_h)}
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
            if row == clip_row and col in clip_cols:
                ch, style = CLIP_MARK[robust or "top"], styles[clip_cols[col]]
            elif mask:
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
    best_col = column_of(best) if best is not None and shown(best) else None
    keep = marker_cols if best_col is None else marker_cols | {best_col}
    _x_axis(text, plot_w, marker_cols, keep, x_first + start, x_first + stop - 1, x_title)
    if best_col is not None:
        # The best epoch: a mark on the axis, over the boundary tick if they meet.
        at = len(text) - plot_w + best_col
        text.plain = text.plain[:at] + "◆" + text.plain[at + 1 :]
        text.stylize(BEST_STYLE, at, at + 1)
    return text


def _x_axis(
    text: Text,
    plot_w: int,
    marker_cols: set[int],
    keep: set[int],
    first: int,
    last: int,
    title: str,
) -> None:
    """The x axis: first and last epoch shown, the boundary ticks, the axis title (placed
    where it hides none of the `keep` columns: ticks, the best mark)."""
    axis = ["─"] * plot_w
    for col in marker_cols:
        axis[col] = "┴"
    left, right = str(first), str(last)
    axis_line = "".join(axis)
    if plot_w > len(left) + len(right) + 2:
        axis_line = left + axis_line[len(left) : plot_w - len(right)] + right
    label = f" {title} "
    # Centred, or the nearest place that hides no boundary tick and no end label.
    lo, hi = len(left) + 1, plot_w - len(right) - len(label) - 1
    middle = (plot_w - len(label)) // 2
    for at in sorted(range(lo, hi + 1), key=lambda a: abs(a - middle)) if title else ():
        if not any(at <= col < at + len(label) for col in keep):
            axis_line = axis_line[:at] + label + axis_line[at + len(label) :]
            break
    text.append(" " * LABEL_WIDTH + "└", style=AXIS_STYLE)
    text.append(axis_line, style=AXIS_STYLE)
