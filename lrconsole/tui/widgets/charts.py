"""Live charts: loss per epoch (linear or log) and, below it, the LR or the gradient norm
per epoch, with segment boundaries. Both take their epoch window from one `ChartView`.

A chart only marks itself stale when data arrives; the run screen's throttle timer calls
`flush()` a few times per second, which repaints stale charts. The drawing is cached as one
`Strip` per row, keyed by (data version, size, scale), so a repaint that changes nothing
costs nothing. Rows go out through the line API (`render_line`): Rich segments straight to
strips, which at full screen is about a third of the cost of Textual's general text path.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.text import Text
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from lrconsole.tui.chartview import ChartView
from lrconsole.tui.model import GRAD_FIELDS, RunModel, monitor_mode
from lrconsole.tui.plot import CLIP_MARK, Trace, format_value, render_chart

SERIES_STYLES = ("bold #5fd7ff", "bold #ff87d7", "bold #d7ff5f", "bold #ffaf5f")
LR_STYLE = "bold #ffd75f"
PLANNED_STYLE = "#8a7a3a"  # the queued LR, drawn after the history
BRANCH_STYLE = "grey42"  # abandoned paths, under the live curves
OVERLAY_STYLE = "#8787af"  # another run or a branch chosen with `o`, dimmed
GRAD_STYLE = "bold #87d7af"
GRAD_MAX_STYLE = "#5f8787"
BEST_MARKUP = "[bold #87ff87]◆[/]"
POLICY_STYLES = {"plateau": "bold #ffaf00", "early_stop": "bold #ff5f5f"}
POLICY_NAMES = {"plateau": "plateau", "early_stop": "early stop"}


class Chart(Widget):
    """Base chart: subclasses say which traces to draw."""

    DEFAULT_CSS = """
    Chart {
        height: 1fr;
        min-height: 5;
        border: round $primary 50%;
        border-title-color: $text;
        padding: 0 1 0 0;
    }
    """

    log_scale: reactive[bool] = reactive(False)

    def __init__(
        self, model: RunModel, view: ChartView | None = None, *, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.model = model
        self.view = view if view is not None else ChartView()
        self._stale = True
        self._cache_key: tuple[object, ...] | None = None
        self._cache = Text()
        self._strips: list[Strip] = []
        self.redraws = 0  # how many times the text was rebuilt (tests, benchmarks)

    def traces(self) -> list[Trace]:
        raise NotImplementedError

    def title(self) -> str:
        raise NotImplementedError

    def subtitle(self) -> str:
        """Below the chart: the window, a clipped range, the best epoch, policy marks."""
        parts = []
        if self.view.last is not None:
            parts.append(f"last {self.view.last} epochs")
        if self.clipped():
            parts.append("outliers clipped")
        return "  ".join(parts) + self.flags_legend()

    def robust(self) -> str | None:
        """The side whose far outliers are clipped, when the robust range is on."""
        return None

    def best(self) -> int | None:
        return None

    def empty_text(self) -> str:
        return "no data yet"

    def clipped(self) -> bool:
        plain = self.chart_text().plain
        return any(mark in plain for mark in CLIP_MARK.values())

    def flags(self) -> list[tuple[int, str]]:
        """Where a policy acted, as a dashed line in its colour: a plateau at the boundary
        where its lower LR starts, early stopping at the epoch whose weights it restored."""
        first = self.model.first_epoch
        return [
            (epoch - first + (policy == "plateau"), POLICY_STYLES.get(policy, "bold"))
            for epoch, policy in self.model.policy_marks
        ]

    def flags_legend(self) -> str:
        kinds = dict.fromkeys(policy for _, policy in self.model.policy_marks)
        return "".join(
            f"  [{POLICY_STYLES.get(k, 'bold')}]╎ {POLICY_NAMES.get(k, k)}[/]" for k in kinds
        )

    def mark_stale(self) -> None:
        self._stale = True

    def flush(self) -> None:
        """Repaint if new data arrived since the last repaint (called by the throttle)."""
        if self._stale:
            self._stale = False
            self.repaint()

    def repaint(self) -> None:
        self.border_title = self.title()
        self.border_subtitle = self.subtitle() if self.is_mounted else ""
        self.refresh()

    def watch_log_scale(self) -> None:
        self.repaint()

    def on_resize(self) -> None:
        self.repaint()  # the subtitle depends on the size (what fits, what was clipped)

    def _key(self) -> tuple[object, ...]:
        size = self.content_size
        return (
            self.model.version,
            id(self.model.lr),
            id(self.model.plan),
            len(self.model.branches),
            size.width,
            size.height,
            self.log_scale,
            tuple(self.model.boundary_indices()[-64:]),
            self.view.key(),
        )

    def chart_text(self) -> Text:
        """The drawing at the current size, rebuilt only when its inputs changed."""
        key = self._key()
        if key != self._cache_key:
            self._cache_key = key
            size = self.content_size
            start, stop = self.view.window(self.model)
            self._cache = render_chart(
                self.traces(),
                size.width,
                size.height,
                x_first=self.model.first_epoch,
                x_start=start,
                x_stop=stop,
                log=self.log_scale,
                markers=self.model.boundary_indices(),
                flags=self.flags(),
                best=self.best(),
                robust=self.robust() if self.view.robust else None,
                x_title="epoch",
                empty_text=self.empty_text(),
            )
            base = self.rich_style
            lines = Segment.split_lines(self._cache.render(self.app.console))
            self._strips = [
                Strip(Segment.simplify(line)).extend_cell_length(size.width).apply_style(base)
                for line in lines
            ]
            self._strips += [Strip.blank(size.width, base)] * (size.height - len(self._strips))
            self.redraws += 1
        return self._cache

    def render_line(self, y: int) -> Strip:
        self.chart_text()
        return self._strips[y] if y < len(self._strips) else Strip.blank(self.size.width)


class LossChart(Chart):
    """Every metric the task reports (train and test loss), per epoch; abandoned branches
    and an overlaid run dimmed, inside the current path's range."""

    def metric_names(self) -> list[str]:
        return [n for n in self.model.metrics if n in self.model.series and n not in GRAD_FIELDS]

    def traces(self) -> list[Trace]:
        model = self.model
        out = [Trace(s, BRANCH_STYLE, name, scale=False) for name, s in model.branches.items()]
        if self.view.overlay is not None:
            out.append(Trace(self.view.overlay_series, OVERLAY_STYLE, self.view.overlay, False))
        return out + [
            Trace(model.series[name], SERIES_STYLES[i % len(SERIES_STYLES)], name)
            for i, name in enumerate(self.metric_names())
        ]

    def y_title(self) -> str:
        """The quantity on the y axis: the metrics' shared last word (mse, loss), or "loss"."""
        words = {name.rsplit("_", 1)[-1] for name in self.metric_names()}
        return words.pop() if len(words) == 1 else "loss"

    def title(self) -> str:
        # The legend names every series: short, so that it fits 80 columns.
        parts = [
            f"[{SERIES_STYLES[i % len(SERIES_STYLES)]}]━ {name}[/]"
            for i, name in enumerate(self.metric_names())
        ]
        if self.model.branches:
            parts.append(f"[{BRANCH_STYLE}]━ branches[/]")
        if self.view.overlay is not None:
            parts.append(f"[{OVERLAY_STYLE}]━ {self.view.overlay}[/]")
        scale = " (log)" if self.log_scale else ""
        return f"{self.y_title()}{scale} " + " ".join(parts)

    def robust(self) -> str | None:
        mode = self.model.session.get("monitor_mode") or monitor_mode(self.model.monitor or "")
        return "bottom" if mode == "max" else "top"

    def best(self) -> int | None:
        return self.model.best[0] if self.model.best else None

    def subtitle(self) -> str:
        best, model = self.model.best, self.model
        if best is None:
            return super().subtitle()
        epoch = model.first_epoch + best[0]
        rest = super().subtitle()
        for name in (f" {model.monitor}", ""):  # the metric's name where it fits
            mark = f"{BEST_MARKUP} best{name} {format_value(best[1])} @ {epoch}"
            line = f"{rest}  {mark}".strip()
            if len(Text.from_markup(line)) <= self.size.width - 4:
                break
        return line


class LrChart(Chart):
    """The lower chart: the LR of each epoch (and the queued plan), or with `g` the
    gradient norm (mean and max before clipping) of each epoch."""

    DEFAULT_CSS = """
    LrChart { height: 8; }
    """

    log_scale: reactive[bool] = reactive(False)

    def traces(self) -> list[Trace]:
        model = self.model
        if self.view.lower == "grad":
            if not model.has_grad_norm:
                return []
            return [
                Trace(model.grad_norm_max, GRAD_MAX_STYLE, "max"),
                Trace(model.grad_norm, GRAD_STYLE, "mean"),
            ]
        planned = model.planned_lr()
        actual = Trace(model.lr, LR_STYLE, "lr")
        return [actual] if planned is None else [Trace(planned, PLANNED_STYLE, "planned"), actual]

    def robust(self) -> str | None:
        return "top" if self.view.lower == "grad" else None

    def empty_text(self) -> str:
        if self.view.lower == "grad":
            return "no gradient norms recorded"
        return "no data yet"

    def title(self) -> str:
        if self.view.lower == "grad":
            return f"grad norm [{GRAD_STYLE}]━ mean[/] [{GRAD_MAX_STYLE}]━ max[/]"
        plan = f" [{PLANNED_STYLE}]━ planned[/]" if self.model.planned_lr() is not None else ""
        return f"lr [{LR_STYLE}]━ used[/]{plan}"
