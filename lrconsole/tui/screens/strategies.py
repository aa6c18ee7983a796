"""Modals for the strategies: the rollback picker and the LR range test result."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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
    """Pick a kept checkpoint epoch to go back to; dismisses with the epoch or None.
    `p` pins the highlighted one (pruning keeps it for good) or unpins it."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="RollbackScreen")
        + """
    RollbackScreen OptionList { height: auto; max-height: 14; }
    """
    )
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("p", "toggle_pin", "Pin / unpin"),
    ]

    def __init__(
        self,
        epochs: list[int],
        history: list[dict[str, Any]],
        monitor: str,
        reason: str = "",
        pinned: list[int] | None = None,
        pin: Callable[[int, bool], Awaitable[list[int] | None]] | None = None,
    ) -> None:
        super().__init__()
        self.epochs = sorted(epochs, reverse=True)
        self.rows = {int(r["global_epoch"]): r for r in history}
        self.monitor = monitor
        self.reason = reason
        self.pinned = set(pinned or ())
        self.pin = pin  # sends the pin command; the pinned epochs after, None if refused

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "roll back"
            text = self.reason + "\n" if self.reason else ""
            text += (
                "Go back to a kept checkpoint. The epochs after it stay as a branch; "
                "the queue is emptied so you can plan anew. Only these epochs can be "
                "restored; p pins one so that pruning keeps it."
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
        mark = "  (pinned)" if epoch in self.pinned else ""  # not [..]: that is markup
        return f"epoch {epoch}{metric}{lr}{mark}"

    async def action_toggle_pin(self) -> None:
        options = self.query(OptionList)
        if self.pin is None or not options or options.first().highlighted_option is None:
            return
        option_list = options.first()
        option = option_list.highlighted_option
        assert option is not None and option.id is not None
        epoch = int(option.id)
        pinned = await self.pin(epoch, epoch not in self.pinned)
        if pinned is not None:
            self.pinned = set(pinned)
            option_list.replace_option_prompt(option.id, self._label(epoch))

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
