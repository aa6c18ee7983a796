"""Modal dialogs: quit, export and the runner error."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 72; height: auto; border: thick $primary; background: $surface; padding: 1 2;
}}
{name} .buttons {{ height: auto; margin-top: 1; }}
{name} .buttons Button {{ margin-right: 1; }}
{name} .message {{ margin-bottom: 1; }}
"""


class QuitScreen(ModalScreen[str | None]):
    """Stop and save, or detach (only with a live runner). Dismisses with the choice."""

    DEFAULT_CSS = DIALOG_CSS.format(name="QuitScreen")
    BINDINGS = [
        Binding("s", "choose('save')", "Stop and save"),
        Binding("d", "choose('detach')", "Detach"),
        Binding("escape", "choose(None)", "Cancel"),
    ]

    def __init__(self, runner_active: bool) -> None:
        super().__init__()
        self.runner_active = runner_active

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "quit"
            if self.runner_active:
                yield Static(
                    "Stop training and save a checkpoint, or detach and leave training "
                    "running (attach again with `lrconsole attach`)?",
                    classes="message",
                )
            else:
                yield Static("No runner is active. Quit the console?", classes="message")
            with Horizontal(classes="buttons"):
                if self.runner_active:
                    yield Button("Stop and save (s)", id="save", variant="primary")
                    yield Button("Detach (d)", id="detach")
                else:
                    yield Button("Quit (s)", id="save", variant="primary")
                yield Button("Cancel (Esc)", id="cancel")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.action_choose(None if event.button.id == "cancel" else event.button.id)

    def action_choose(self, choice: str | None) -> None:
        if choice == "detach" and not self.runner_active:
            return
        self.dismiss(choice)


class ExportScreen(ModalScreen[Path | None]):
    """Ask where to write the schedule YAML."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="ExportScreen")
        + """
    ExportScreen #export-error { color: $error; height: auto; }
    """
    )
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, default: Path) -> None:
        super().__init__()
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "export the schedule"
            yield Static("Write the schedule (every segment trained so far) to:", classes="message")
            yield Input(str(self.default), id="export-path")
            yield Static("", id="export-error")
            with Horizontal(classes="buttons"):
                yield Button("Export (Enter)", id="export", variant="primary")
                yield Button("Cancel (Esc)", id="cancel")

    def _accept(self) -> None:
        text = self.query_one("#export-path", Input).value.strip()
        if not text:
            self.query_one("#export-error", Static).update("⚠ enter a file path")
            return
        self.dismiss(Path(text).expanduser())

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._accept()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export":
            self._accept()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ErrorScreen(ModalScreen[bool]):
    """The runner died: show why, offer to restart from the last checkpoint (True)."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="ErrorScreen")
        + """
    ErrorScreen > Vertical { border: thick $error; }
    ErrorScreen #error-text { color: $text; max-height: 12; overflow-y: auto; }
    """
    )
    BINDINGS = [
        Binding("r", "restart", "Restart from checkpoint"),
        Binding("escape", "close", "Close"),
    ]

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "the runner stopped"
            yield Static(self.message, id="error-text", classes="message", markup=False)
            yield Static(
                "The console is still here. Restart the runner from the last "
                "checkpoint, or close this and quit (q)."
            )
            with Horizontal(classes="buttons"):
                yield Button("Restart from checkpoint (r)", id="restart", variant="primary")
                yield Button("Close (Esc)", id="close")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "restart")

    def action_restart(self) -> None:
        self.dismiss(True)

    def action_close(self) -> None:
        self.dismiss(False)
