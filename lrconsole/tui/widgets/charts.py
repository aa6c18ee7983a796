"""Live charts: loss per epoch (linear or log) and LR per epoch, with segment boundaries.

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

from lrconsole.tui.model import RunModel
from lrconsole.tui.plot import Trace, render_chart

SERIES_STYLES = ("bold #5fd7ff", "bold #ff87d7", "bold #d7ff5f", "bold #ffaf5f")
LR_STYLE = "bold #ffd75f"
PLANNED_STYLE = "#8a7a3a"  # the queued LR, drawn after the history
BRANCH_STYLE = "grey42"  # abandoned paths, under the live curves
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

    def __init__(self, model: RunModel, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = model
        self._stale = True
        self._cache_key: tuple[object, ...] | None = None
        self._cache = Text()
        self._strips: list[Strip] = []
        self.redraws = 0  # how many times the text was rebuilt (tests, benchmarks)

    def traces(self) -> list[Trace]:
        raise NotImplementedError

    def title(self) -> str:
        raise NotImplementedError

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
            self.border_title = self.title()
            self.refresh()

    def watch_log_scale(self) -> None:
        self.border_title = self.title()
        self.refresh()

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
        )

    def chart_text(self) -> Text:
        """The drawing at the current size, rebuilt only when its inputs changed."""
        key = self._key()
        if key != self._cache_key:
            self._cache_key = key
            size = self.content_size
            self._cache = render_chart(
                self.traces(),
                size.width,
                size.height,
                x_first=self.model.first_epoch,
                log=self.log_scale,
                markers=self.model.boundary_indices(),
                flags=self.flags(),
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
    """Every metric the task reports (train and test loss), per epoch."""

    def traces(self) -> list[Trace]:
        branches = [Trace(s, BRANCH_STYLE, name) for name, s in self.model.branches.items()]
        return branches + [
            Trace(self.model.series[name], SERIES_STYLES[i % len(SERIES_STYLES)], name)
            for i, name in enumerate(self.model.metrics)
            if name in self.model.series
        ]

    def title(self) -> str:
        parts = [
            f"[{SERIES_STYLES[i % len(SERIES_STYLES)]}]━ {name}[/]"
            for i, name in enumerate(self.model.metrics)
        ]
        if self.model.branches:
            parts.append(f"[{BRANCH_STYLE}]━ branches[/]")
        scale = "log" if self.log_scale else "linear"
        return f"loss ({scale}, l toggles)  " + "  ".join(parts) + self.flags_legend()


class LrChart(Chart):
    """The LR of each epoch."""

    DEFAULT_CSS = """
    LrChart { height: 8; }
    """

    log_scale: reactive[bool] = reactive(False)

    def traces(self) -> list[Trace]:
        planned = self.model.planned_lr()
        actual = Trace(self.model.lr, LR_STYLE, "lr")
        return [actual] if planned is None else [Trace(planned, PLANNED_STYLE, "planned"), actual]

    def title(self) -> str:
        plan = f"  [{PLANNED_STYLE}]━ planned[/]" if self.model.planned_lr() is not None else ""
        return f"[{LR_STYLE}]━ learning rate[/] per epoch{plan}{self.flags_legend()}"
