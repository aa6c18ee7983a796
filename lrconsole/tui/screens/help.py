"""The `?` help screen."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Static

from lrconsole.tui.keys import KEYS


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: 90; max-width: 100%; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    HelpScreen DataTable { height: auto; }
    HelpScreen #help-note { color: $text-muted; margin: 1 0 0 0; }
    HelpScreen Button { margin-top: 1; }
    """
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "lrconsole keys"
            table: DataTable[str] = DataTable(show_cursor=False, zebra_stripes=True)
            table.add_columns("key", "does")
            for key, text in KEYS:
                table.add_row(key, text)
            yield table
            yield Static(
                "Every action is also in the command palette (ctrl+p) and on the footer "
                "(click it). Training runs in its own process: closing the console never "
                "stops it unless you choose to.",
                id="help-note",
            )
            yield Button("Close (Esc)", id="close", compact=True)

    def on_button_pressed(self) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
