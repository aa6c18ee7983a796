"""The home screen: a new lesson session first, then the sessions in ./sessions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from lrconsole.tui.plot import format_value

NEW_KEY = "__new__"
STATE_STYLE = {
    "running": "bold green",
    "paused": "bold yellow",
    "stopped": "grey62",
    "done": "grey62",
    "broken": "bold red",
}


def shown_path(path: Path) -> str:
    """`path` relative to the working folder when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)


@dataclass
class SessionChosen(Message):
    """`name` is None for a new session on the built-in lesson task."""

    name: str | None


class HomeScreen(Screen[None]):
    DEFAULT_CSS = """
    HomeScreen { layout: vertical; }
    HomeScreen #home-title { height: 3; padding: 1 2 0 2; text-style: bold; color: $accent; }
    HomeScreen #home-hint { height: 1; padding: 0 2; color: $text-muted; }
    HomeScreen #sessions { height: 1fr; margin: 1 2; border: round $primary 50%; }
    """
    BINDINGS = [
        Binding("n", "new", "New lesson session"),
        Binding("r", "reload", "Reload"),
    ]

    def __init__(self, sessions_dir: Path) -> None:
        super().__init__()
        self.sessions_dir = sessions_dir

    def compose(self) -> ComposeResult:
        yield Static("lrconsole: steer a training run by hand", id="home-title")
        yield Static(
            f"Enter opens the highlighted line.  Sessions in {shown_path(self.sessions_dir)}",
            id="home-hint",
            markup=False,
        )
        with Vertical():
            yield DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.reset_table()
        self.query_one("#sessions", DataTable).focus()
        # The session list (YAML reading, the manifest code) comes right after the first
        # frame: a newcomer's "new session" line should not wait for it.
        self.call_after_refresh(self.add_sessions)

    def reset_table(self) -> None:
        """Columns and the "new session" line, the cursor on it."""
        table: DataTable[str | Text] = self.query_one("#sessions", DataTable)
        table.clear(columns=True)
        table.add_columns("session", "task", "epochs", "best", "state")
        table.add_row(
            Text("＋ new session on the built-in lesson task", style="bold"),
            "lesson",
            "",
            "",
            "",
            key=NEW_KEY,
        )
        table.border_title = "sessions"
        table.move_cursor(row=0)

    def add_sessions(self) -> None:
        from lrconsole.core.session.discover import list_sessions

        table: DataTable[str | Text] = self.query_one("#sessions", DataTable)
        for s in list_sessions(self.sessions_dir):
            best = f"{s.best[0]} {format_value(s.best[1])}" if s.best else "—"
            state = Text(s.state, style=STATE_STYLE.get(s.state, ""))
            table.add_row(s.name, s.task, str(s.epochs), best, state, key=s.name)

    @on(DataTable.RowSelected, "#sessions")
    def _selected(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        self.post_message(SessionChosen(None if key == NEW_KEY else key))

    def action_new(self) -> None:
        self.post_message(SessionChosen(None))

    def action_reload(self) -> None:
        self.reset_table()
        self.add_sessions()
