"""What the run screen's charts show, shared by both: the epoch window, the y range rule,
the lower chart's quantity and an overlaid run. Pure Python, no Textual.

Both charts take their x range from one `ChartView`, so an epoch (a segment boundary) sits
at the same column in the loss chart and the LR chart. The range follows the current path
(and a bounded look ahead at the queued LR); abandoned branches and overlays are drawn
inside it, never widening it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lrconsole.tui.model import RunModel
from lrconsole.tui.series import Series

ZOOM_MIN = 10  # epochs: the narrowest "last N" window
AHEAD_MIN = 10  # epochs of the queued plan always shown ahead of a short history
LOWER_CHARTS = ("lr", "grad")


@dataclass
class ChartView:
    last: int | None = None  # show only the last N epochs of the current path
    robust: bool = True  # far outliers (the first epochs' loss) clipped at the edge
    lower: str = "lr"  # the lower chart: "lr" or "grad" (gradient norm)
    overlay: str | None = None  # the name of the run drawn dimmed on the loss chart
    overlay_series: Series = field(default_factory=Series)
    version: int = 0  # bumps on every change: part of the charts' cache key

    def window(self, model: RunModel) -> tuple[int, int]:
        """[start, stop) of the series positions both charts draw."""
        done = len(model.lr)
        if self.last is not None and done:
            return max(0, done - self.last), done
        planned = model.planned_lr()
        ahead = len(planned) - done if planned is not None else 0
        if done == 0:
            return 0, ahead
        # The queued plan takes at most half the width: a mistaken 5,000 epochs queued
        # must not squash what has trained.
        return 0, done + min(ahead, max(done, AHEAD_MIN))

    def zoom_in(self, model: RunModel) -> bool:
        """Halve the window to the last epochs; False when it is as narrow as it goes."""
        done = len(model.lr)
        shown = done if self.last is None else min(self.last, done)
        narrower = max(ZOOM_MIN, shown // 2)
        if narrower >= shown:
            return False
        self.last = narrower
        self.version += 1
        return True

    def zoom_out(self, model: RunModel) -> bool:
        if self.last is None:
            return False
        self.last *= 2
        if self.last >= len(model.lr):
            self.last = None
        self.version += 1
        return True

    def reset(self) -> None:
        self.last = None
        self.version += 1

    def toggle_robust(self) -> None:
        self.robust = not self.robust
        self.version += 1

    def toggle_lower(self) -> None:
        self.lower = LOWER_CHARTS[(LOWER_CHARTS.index(self.lower) + 1) % len(LOWER_CHARTS)]
        self.version += 1

    def set_overlay(self, name: str | None, series: Series | None = None) -> None:
        self.overlay = name
        self.overlay_series = series if series is not None else Series()
        self.version += 1

    def key(self) -> tuple[object, ...]:
        return (self.version, self.last, self.robust, self.lower, self.overlay)
