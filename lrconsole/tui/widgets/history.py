"""The segment history table: each segment's LR, its end metrics and their change."""

from __future__ import annotations

import math
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from lrconsole.tui.model import RunModel
from lrconsole.tui.plot import format_value

# The optimizer settings a segment may set (the rest of a segment's fields are its length,
# LR and shape), with the short names the queue and the table show.
SETTING_NAMES = {"momentum": "m", "betas": "β", "weight_decay": "wd", "clip_grad_norm": "clip"}
NOTE_WIDTH = 40  # the table shows a note's start; `lrconsole show` prints all of it


def setting_text(value: Any) -> str:
    """A setting's value as typed in the planner: 0.9, 0.9,0.999, off."""
    if value is None:
        return "off"
    if isinstance(value, list):
        return ",".join(f"{float(v):g}" for v in value)
    if isinstance(value, str):
        return value
    return f"{float(value):g}"


def describe_settings(segment: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    """ " m 0.95 wd 0.0001 ✎": the settings `segment` sets that differ from `before` (what
    the segments before it left in force; None: unknown, show all it sets), a pen for a
    note. Empty when it changes nothing."""
    parts = [
        f"{short} {setting_text(segment[name])}"
        for name, short in SETTING_NAMES.items()
        if name in segment and (before is None or before.get(name, object()) != segment[name])
    ]
    if segment.get("note"):
        parts.append("✎")
    return "".join(f" {part}" for part in parts)


def short_note(note: str) -> str:
    note = " ".join(note.split())
    return note if len(note) <= NOTE_WIDTH else note[: NOTE_WIDTH - 1] + "…"


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
        self._extra = (False, False)  # the settings and note columns are shown
        self.border_title = "segments"

    def extras(self) -> list[tuple[str, str]]:
        """Per segment: (the settings it changes, the start of its note)."""
        out = []
        carried: dict[str, Any] = {}
        for seg in self.model.segments():
            out.append(
                (
                    describe_settings(seg, carried).replace(" ✎", "").strip(),
                    short_note(str(seg.get("note") or "")),
                )
            )
            carried.update({k: seg[k] for k in SETTING_NAMES if k in seg})
        return out

    def update_view(self) -> None:
        model = self.model
        rows = model.segment_rows()
        extras = self.extras()
        shown = [extras[r.index] if r.index < len(extras) else ("", "") for r in rows]
        # The two columns only once a segment has settings or a note: most runs have none.
        columns = (any(e[0] for e in shown), any(e[1] for e in shown))
        key = (tuple(model.metrics), tuple((r.index, r.end_epoch) for r in rows), tuple(shown))
        if key == self._shown:
            return
        self._shown = key
        if list(model.metrics) != self._metrics or not self.columns or columns != self._extra:
            self._metrics = list(model.metrics)
            self._extra = columns
            self.clear(columns=True)
            self.add_columns("#", "epochs", "LR", "end")
            if columns[0]:
                self.add_column("settings")
            for name in self._metrics:
                self.add_column(name)
                self.add_column(f"Δ {name}")
            if columns[1]:
                self.add_column("note")
        else:
            self.clear()
        for row, (settings, note) in zip(rows, shown, strict=True):
            cells: list[str | Text] = [
                str(row.index + 1),
                row.epochs,
                format_value(row.lr),
                str(row.end_epoch),
            ]
            if columns[0]:
                cells.append(settings)
            for name in self._metrics:
                value = row.metrics.get(name)
                cells.append(format_value(value) if value is not None else "—")
                cells.append(format_change(row.change.get(name)))
            if columns[1]:
                cells.append(Text(note, style="italic"))
            self.add_row(*cells)
        if rows:
            self.move_cursor(row=len(rows) - 1, animate=False)
