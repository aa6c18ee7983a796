"""The chart keys of the run screen: log scale, the lower chart (LR or gradient norm), the
epoch window (last N epochs), the robust y range and the overlay of another run.

A mixin of RunScreen (the screen module stays small). One-letter keys: they act only when
no field has the focus (a field types them).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.markup import escape
from textual.binding import Binding
from textual.screen import Screen

from lrconsole.tui.chartview import ChartView
from lrconsole.tui.model import RunModel
from lrconsole.tui.screens.overlay import Choice, OverlayScreen, load_overlay, overlay_choices
from lrconsole.tui.widgets.charts import Chart, LossChart, LrChart

if TYPE_CHECKING:
    from textual.app import App

CHART_BINDINGS = [
    Binding("l", "log_scale", "Log scale", show=False),
    Binding("g", "lower_chart", "LR / grad norm", show=False),
    Binding("plus,equals_sign", "zoom_in", "Zoom in", show=False),
    Binding("minus", "zoom_out", "Zoom out", show=False),
    Binding("0", "zoom_reset", "All epochs", show=False),
    Binding("a", "robust_range", "Robust range", show=False),
    Binding("o", "overlay", "Overlay a run", show=False),
]


class ChartActions:
    """RunScreen's chart actions; each changes the shared ChartView and repaints."""

    if TYPE_CHECKING:  # provided by RunScreen and textual's Screen
        model: RunModel
        view: ChartView
        session_dir: Path
        app: App[Any]

        def notify(self, message: str, **kwargs: Any) -> None: ...

    def loss_chart(self) -> LossChart:
        return cast("Screen[Any]", self).query_one(LossChart)

    def charts(self) -> list[Chart]:
        return [self.loss_chart(), cast("Screen[Any]", self).query_one(LrChart)]

    def repaint_charts(self) -> None:
        for chart in self.charts():
            chart.repaint()

    def action_log_scale(self) -> None:
        chart = self.loss_chart()
        chart.log_scale = not chart.log_scale
        self.notify(f"loss chart: {'log' if chart.log_scale else 'linear'} scale", timeout=1.5)

    def action_lower_chart(self) -> None:
        self.view.toggle_lower()
        self.repaint_charts()
        what = "gradient norm" if self.view.lower == "grad" else "learning rate"
        self.notify(f"lower chart: {what}", timeout=1.5)

    def action_zoom_in(self) -> None:
        if self.view.zoom_in(self.model):
            self.repaint_charts()
            self.notify(f"charts: the last {self.view.last} epochs (0: all)", timeout=1.5)
        else:
            self.notify("charts: as close as they go", timeout=1.5)

    def action_zoom_out(self) -> None:
        if self.view.zoom_out(self.model):
            self.repaint_charts()
            shown = f"the last {self.view.last} epochs" if self.view.last else "all epochs"
            self.notify(f"charts: {shown}", timeout=1.5)

    def action_zoom_reset(self) -> None:
        self.view.reset()
        self.repaint_charts()
        self.notify("charts: all epochs", timeout=1.5)

    def action_robust_range(self) -> None:
        self.view.toggle_robust()
        self.repaint_charts()
        what = "robust (far outliers clipped, marked ▲)" if self.view.robust else "full"
        self.notify(f"y range: {what}", timeout=1.5)

    def action_overlay(self) -> None:
        """Toggle: off when an overlay is drawn, else pick a run to draw."""
        if self.view.overlay is not None:
            self.view.set_overlay(None)
            self.repaint_charts()
            self.notify("overlay removed", timeout=1.5)
            return
        choices = overlay_choices(self.session_dir, self.model)
        if not choices:
            self.notify("no other session and no branch to overlay", severity="warning")
            return
        self.app.push_screen(OverlayScreen(choices), self._overlay_chosen)

    def _overlay_chosen(self, choice: Choice | None) -> None:
        if choice is None:
            return
        try:
            found = load_overlay(choice, self.model)
        except OSError as exc:
            self.notify(f"cannot read {escape(choice.label)}: {escape(str(exc))}", severity="error")
            return
        if found is None:
            self.notify(f"{escape(choice.label)}: no epochs to draw", severity="warning")
            return
        name, series = found
        self.view.set_overlay(name, series)
        self.repaint_charts()
        self.notify(f"overlaid {escape(name)} (o removes it)", timeout=2)
