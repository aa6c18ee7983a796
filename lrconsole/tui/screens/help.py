"""The `?` help screen: every key, wrapped to the terminal's width, scrolling when short."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.events import Resize
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from lrconsole.tui.keys import KEYS

NOTE = (
    "While a field has the focus, every printable key types into it: press Esc first for "
    "the one-letter keys. Every action is also in the command palette (ctrl+p), the main "
    "ones on the footer (click them). Training runs in its own process: closing the "
    "console never stops it unless you choose to."
)
CHROME = 6  # rows around the scrolled part: border, title, button


def keys_table() -> Table:
    table = Table(box=None, show_header=True, header_style="bold", expand=True, pad_edge=False)
    table.add_column("key", style="bold", max_width=16)
    table.add_column("does", ratio=1)  # wraps: whole descriptions at 80 columns
    for key, text in KEYS:
        table.add_row(key, text)
    return table


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: 100; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    HelpScreen VerticalScroll { height: auto; }
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
            with VerticalScroll(id="help-body"):
                yield Static(keys_table(), id="help-keys")
                yield Static(NOTE, id="help-note")
            # Outside the scrolled part: always on screen, even at 80x24.
            yield Button("Close (Esc)", id="close", compact=True)

    def on_mount(self) -> None:
        self._fit(self.app.size.height)
        self.query_one("#help-body").focus()  # arrows and PgDn scroll it

    def on_resize(self, event: Resize) -> None:
        self._fit(event.size.height)

    def _fit(self, height: int) -> None:
        self.query_one("#help-body").styles.max_height = max(3, height - CHROME)

    def on_button_pressed(self) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
