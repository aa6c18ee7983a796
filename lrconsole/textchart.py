"""A small text line chart for the terminal (lr-find, preview). No torch, no textual."""

from __future__ import annotations

import math
from collections.abc import Sequence


def render(
    xs: Sequence[float],
    ys: Sequence[float],
    *,
    width: int = 64,
    height: int = 14,
    logx: bool = False,
    logy: bool = False,
    marks: Sequence[float] = (),
    x_label: str = "",
) -> str:
    """Plot y against x with dots; `marks` draws vertical bars at those x values."""
    points = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
    if not points:
        return "(nothing to draw)"
    fx = (lambda v: math.log10(v)) if logx else (lambda v: v)
    fy = (lambda v: math.log10(v)) if logy else (lambda v: v)
    px = [fx(x) for x, _ in points]
    py = [fy(y) for _, y in points]
    x0, x1 = min(px), max(px)
    y0, y1 = min(py), max(py)
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else y0 + 1
    grid = [[" "] * width for _ in range(height)]
    for mark in marks:
        col = round((fx(mark) - x0) / (x1 - x0) * (width - 1))
        if 0 <= col < width:
            for cells in grid:
                cells[col] = "│"
    for x, y in zip(px, py, strict=True):
        col = round((x - x0) / (x1 - x0) * (width - 1))
        line = height - 1 - round((y - y0) / (y1 - y0) * (height - 1))
        grid[line][col] = "•"
    top = _label(max(y for _, y in points))
    bottom = _label(min(y for _, y in points))
    pad = max(len(top), len(bottom))
    lines = []
    for i, row in enumerate(grid):
        label = top if i == 0 else bottom if i == height - 1 else ""
        lines.append(f"{label:>{pad}} ┤" + "".join(row))
    lines.append(" " * pad + " └" + "─" * width)
    left, right = _label(points[0][0]), _label(points[-1][0])
    gap = max(width - len(left) - len(right) - len(x_label), 2)
    lines.append(
        " " * (pad + 2) + left + " " * (gap // 2) + x_label + " " * (gap - gap // 2) + right
    )
    return "\n".join(lines)


def _label(value: float) -> str:
    return f"{value:.3g}"
