"""The segment history table: each segment's LR, its end metrics and their change."""

from __future__ import annotations

import math

from rich.text import Text
from textual.widgets import DataTable

from lrconsole.tui.model import RunModel
from lrconsole.tui.plot import format_value


def format_change(value: float | None) -> Text:
    if value is None or math.isnan(value):
        return Text("—", style="grey50")
    style = "green" if value < 0 else "red" if value > 0 else ""
    return Text(f"{value:+.3g}", style=style)


class SegmentTable(DataTable[str | Text]):
    """One row per segment that has run at least one epoch."""

    DEFAULT_CSS = """
    SegmentTable { height: 7; border: round $primary 50%; border-title-color: $text; }
    """

    def __init__(self, model: RunModel, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.model = model
        self._metrics: list[str] = []
        self._shown: object = None
        self.border_title = "segments"

    def update_view(self) -> None:
        model = self.model
        rows = model.segment_rows()
        key = (tuple(model.metrics), tuple((r.index, r.end_epoch) for r in rows))
        if key == self._shown:
            return
        self._shown = key
        if list(model.metrics) != self._metrics or not self.columns:
            self._metrics = list(model.metrics)
            self.clear(columns=True)
            self.add_columns("#", "epochs", "LR", "end")
            for name in self._metrics:
                self.add_column(name)
                self.add_column(f"Δ {name}")
        else:
            self.clear()
        for row in rows:
            cells: list[str | Text] = [
                str(row.index + 1),
                row.epochs,
                format_value(row.lr),
                str(row.end_epoch),
            ]
            for name in self._metrics:
                value = row.metrics.get(name)
                cells.append(format_value(value) if value is not None else "—")
                cells.append(format_change(row.change.get(name)))
            self.add_row(*cells)
        if rows:
            self.move_cursor(row=len(rows) - 1, animate=False)
