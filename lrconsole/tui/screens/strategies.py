"""Modals for the strategies: the rollback picker and the LR range test result."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, OptionList, Static
from textual.widgets.option_list import Option

from lrconsole import textchart
from lrconsole.tui.screens.dialogs import DIALOG_CSS


class RollbackScreen(ModalScreen[int | None]):
    """Pick a kept checkpoint epoch to go back to; dismisses with the epoch or None."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="RollbackScreen")
        + """
    RollbackScreen OptionList { height: auto; max-height: 14; }
    """
    )
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        epochs: list[int],
        history: list[dict[str, Any]],
        monitor: str,
        reason: str = "",
    ) -> None:
        super().__init__()
        self.epochs = sorted(epochs, reverse=True)
        self.rows = {int(r["global_epoch"]): r for r in history}
        self.monitor = monitor
        self.reason = reason

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "roll back"
            text = self.reason + "\n" if self.reason else ""
            text += (
                "Go back to a kept checkpoint. The epochs after it stay as a branch; "
                "the queue is emptied so you can plan anew."
            )
            yield Static(text, classes="message")
            options = [Option(self._label(e), id=str(e)) for e in self.epochs]
            if options:
                yield OptionList(*options, id="epochs")
            else:
                yield Static("No checkpoint is kept yet.", classes="message")
            with Horizontal(classes="buttons"):
                yield Button("Cancel (Esc)", id="cancel")

    def _label(self, epoch: int) -> str:
        row = self.rows.get(epoch)
        value = (row or {}).get("metrics", {}).get(self.monitor)
        metric = f"  {self.monitor} {value:.5g}" if isinstance(value, float) else ""
        lr = f"  lr {row['lr']:g}" if row else ""
        return f"epoch {epoch}{metric}{lr}"

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(event.option.id or 0))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class LrFindScreen(ModalScreen[float | None]):
    """The LR range test's curve and proposal; dismisses with the LR to use, or None."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="LrFindScreen")
        + """
    LrFindScreen > Vertical { width: 90; }
    LrFindScreen #curve { height: auto; }
    """
    )
    BINDINGS = [
        Binding("enter", "use", "Use it", priority=True),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__()
        self.result = result

    def compose(self) -> ComposeResult:
        r = self.result
        with Vertical() as box:
            box.border_title = "LR range test"
            chart = textchart.render(
                r["lrs"],
                r["losses"],
                width=72,
                height=12,
                logx=True,
                logy=True,
                marks=[r["suggestion"]],
                x_label="lr (log)",
            )
            yield Static(chart, id="curve", markup=False)
            early = " The sweep stopped early: the loss diverged." if r["stopped_early"] else ""
            yield Static(
                f"Proposed lr {r['suggestion']:.3g} (valley); steepest descent at "
                f"{r['steepest']:.3g}; lowest loss at {r['minimum']:.3g}.{early} "
                "The run itself was not touched.",
                classes="message",
            )
            with Horizontal(classes="buttons"):
                yield Button(f"Use {r['suggestion']:.3g} (Enter)", id="use", variant="primary")
                yield Button("Cancel (Esc)", id="cancel")

    @on(Button.Pressed, "#use")
    def action_use(self) -> None:
        self.dismiss(float(self.result["suggestion"]))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
