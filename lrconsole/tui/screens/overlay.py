"""Overlay another run on the loss chart: a picker of the other sessions in the sessions
folder and of this session's abandoned branches, and the reader that places the chosen
run's metric at its epochs. The files are read by the torch-free readers of core.session.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from lrconsole.core.session.discover import read_metrics
from lrconsole.core.session.layout import MANIFEST
from lrconsole.tui.model import RunModel
from lrconsole.tui.series import Series

MAX_CHOICES = 50  # the sessions folder can be large: the first few by name are enough


@dataclass(frozen=True)
class Choice:
    """A run to overlay: another session's folder, or a branch of this session."""

    label: str
    folder: Path | None = None  # another session
    branch: str | None = None  # a key of RunModel.branches


def overlay_choices(session_dir: Path, model: RunModel) -> list[Choice]:
    """This session's branches first (newest last, as kept), then the other sessions."""
    out = [Choice(f"branch {name}", branch=name) for name in model.branches]
    try:
        folders = sorted(p for p in session_dir.parent.iterdir() if (p / MANIFEST).is_file())
    except OSError:
        folders = []
    here = session_dir.resolve()
    out += [
        Choice(f"session {p.name}", folder=p) for p in folders[:MAX_CHOICES] if p.resolve() != here
    ]
    return out


def session_series(folder: Path, model: RunModel) -> tuple[str, Series] | None:
    """(metric, values) of another session: the metric this chart monitors (else the first
    one both have), each value at its epoch's position in this chart; None if none."""
    rows = read_metrics(folder)
    if not rows:
        return None
    names = [model.monitor or "", *model.metrics]
    metric = next((name for name in names if name and name in rows[0]), None)
    if metric is None:
        return None
    values: list[float] = []
    for row in rows:
        try:
            index = int(row["global_epoch"]) - model.first_epoch
            value = float(row[metric]) if row.get(metric) else math.nan
        except (KeyError, ValueError):
            continue  # a line the readers keep but cannot be drawn
        if index < 0:
            continue
        values += [math.nan] * (index - len(values))
        if index == len(values):
            values.append(value)
    return metric, Series(values)


def load_overlay(choice: Choice, model: RunModel) -> tuple[str, Series] | None:
    """The legend name and the series of `choice`; None when there is nothing to draw."""
    if choice.branch is not None:
        series = model.branches.get(choice.branch)
        return (choice.branch, series) if series is not None else None
    if choice.folder is None:
        return None
    found = session_series(choice.folder, model)
    if found is None:
        return None
    metric, series = found
    return f"{choice.folder.name} {metric}", series


class OverlayScreen(ModalScreen[Choice | None]):
    """Pick a run to draw dimmed on the loss chart; Esc cancels."""

    DEFAULT_CSS = """
    OverlayScreen { align: center middle; }
    OverlayScreen > Vertical {
        width: 60; max-width: 100%; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    OverlayScreen OptionList { height: auto; max-height: 16; }
    OverlayScreen .hint { color: $text-muted; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, choices: list[Choice]) -> None:
        super().__init__()
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "overlay a run on the loss chart"
            yield OptionList(
                *(Option(escape(c.label), id=str(i)) for i, c in enumerate(self.choices)),
                id="overlay-choices",
            )
            yield Static("Enter draws it dimmed; o again removes it; Esc cancels", classes="hint")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[int(event.option.id or 0)])

    def action_cancel(self) -> None:
        self.dismiss(None)
