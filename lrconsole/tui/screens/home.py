"""The home screen: a new lesson session first, then the sessions in ./sessions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from lrconsole.errors import UserError
from lrconsole.tui.plot import format_value

NEW_KEY = "__new__"
NEVER_TRAINED = "never trained"
NAME_WIDTH = 24  # longer names are cut in the middle: the state column stays on screen
STATE_STYLE = {
    NEVER_TRAINED: "italic cyan",
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


def short_name(name: str, width: int = NAME_WIDTH) -> str:
    """`name` in at most `width` columns, cut in the middle (both ends tell sessions apart)."""
    if len(name) <= width:
        return name
    keep = width - 1
    return f"{name[: keep - keep // 2]}…{name[len(name) - keep // 2 :]}"


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
    # No text field here: one-letter keys are safe. `s` shows the order it would switch
    # *from* in the footer ("Sort: recent" while sorted by recent activity).
    BINDINGS = [
        Binding("n", "new", "New"),
        Binding("r", "reload", "Reload", show=False),  # the footer is full at 80 columns
        Binding("s", "sort('name')", "Sort: recent", tooltip="sorted by recent activity"),
        Binding("s", "sort('recent')", "Sort: name", tooltip="sorted by name"),
        Binding("d,delete", "delete", "Delete", key_display="d"),
        Binding("f2", "rename", "Rename", key_display="F2"),
    ]

    def __init__(self, sessions_dir: Path) -> None:
        super().__init__()
        self.sessions_dir = sessions_dir
        self.order = "recent"  # or "name"

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

    def table(self) -> DataTable[str | Text]:
        return self.query_one("#sessions", DataTable)

    def reset_table(self) -> None:
        """Columns and the "new session" line, the cursor on it."""
        table = self.table()
        table.clear(columns=True)
        # The state right after the name: never off screen, whatever the width.
        table.add_columns("session", "state", "epochs", "best", "task")
        new = Text("＋ new lesson session", style="bold")
        table.add_row(new, "", "", "", "lesson", key=NEW_KEY)
        order = "most recent first" if self.order == "recent" else "by name"
        table.border_title = f"sessions, {order}"
        table.move_cursor(row=0)

    def add_sessions(self, select: str | None = None) -> None:
        from lrconsole.core.session.admin import last_activity
        from lrconsole.core.session.discover import list_sessions
        from lrconsole.core.session.manifest import Manifest

        def activity(folder: Path) -> float:
            try:
                updated = Manifest.read(folder).updated
            except UserError:
                updated = ""
            return last_activity(folder, updated)

        sessions = list_sessions(self.sessions_dir)  # by name
        if self.order == "recent":  # newest first; equal times keep the name order
            sessions.sort(key=lambda s: -activity(s.dir))
        table = self.table()
        for s in sessions:
            best = f"{s.best[0]} {format_value(s.best[1])}" if s.best else "—"
            state = s.state
            if state == "stopped" and s.epochs == 0 and not s.last:
                state = NEVER_TRAINED
            cell = Text(state, style=STATE_STYLE.get(state, ""))
            name = short_name(s.name)
            table.add_row(name, cell, str(s.epochs), best, s.task, key=s.name)
        if select is not None and select in table.rows:
            table.move_cursor(row=table.get_row_index(select))

    def reload(self, select: str | None = None) -> None:
        self.reset_table()
        self.add_sessions(select)

    def highlighted(self) -> str | None:
        """The highlighted session's name; None on the "new session" line."""
        table = self.table()
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return None if key in (None, NEW_KEY) else key

    @on(DataTable.RowSelected, "#sessions")
    def _selected(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        self.post_message(SessionChosen(None if key == NEW_KEY else key))

    def action_new(self) -> None:
        self.post_message(SessionChosen(None))

    def action_reload(self) -> None:
        self.reload(self.highlighted())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "sort":  # one of the two `s` bindings shows: the order now
            return parameters[0] != self.order
        return True

    def action_sort(self, order: str) -> None:
        if order == self.order:
            raise SkipAction()  # the other `s` binding's turn
        self.order = order
        self.reload(self.highlighted())
        self.refresh_bindings()

    # -- delete and rename: refused while a runner holds the session ---------------------
    def _target(self, doing: str) -> Path | None:
        from lrconsole.core.session.holder import lock_holder

        name = self.highlighted()
        if name is None:
            self.notify(f"highlight a session to {doing} first", severity="warning")
            return None
        folder = self.sessions_dir / name
        holder = lock_holder(folder)
        if holder is not None:
            self.notify(
                f"cannot {doing} {name!r}: a runner holds it ({holder.describe()}); "
                f"stop it first (open it and quit with s, or `lrconsole stop {name}`)",
                title=f"not {doing}d",
                severity="error",
                timeout=8,
            )
            return None
        return folder

    def action_delete(self) -> None:
        from lrconsole.core.session.admin import folder_size, format_size
        from lrconsole.tui.screens.dialogs import ConfirmScreen

        folder = self._target("delete")
        if folder is None:
            return
        name = folder.name
        size = format_size(folder_size(folder))
        screen = ConfirmScreen(
            f"delete session {name!r}",
            f"Delete session {name!r} ({size} in {shown_path(folder)}) and all its "
            "files: metrics, checkpoints, branches, TensorBoard logs? This cannot be undone.",
            f"Delete {short_name(name, 20)}",
        )

        row = self.table().cursor_row

        def answered(yes: bool | None) -> None:
            if yes:
                self._apply(lambda: self._delete(folder), None)
                table = self.table()  # the cursor stays where the deleted line was
                table.move_cursor(row=min(row, table.row_count - 1))

        self.app.push_screen(screen, answered)

    def _delete(self, folder: Path) -> None:
        from lrconsole.core.session.admin import delete_session

        delete_session(folder)
        self.notify(f"deleted session {folder.name!r}", timeout=4)

    def action_rename(self) -> None:
        from lrconsole.core.session.admin import check_name
        from lrconsole.tui.screens.dialogs import PromptScreen

        folder = self._target("rename")
        if folder is None:
            return
        name = folder.name

        def check(text: str) -> str | None:
            if text == name:
                return "that is its name now"
            if (self.sessions_dir / text).exists():
                return f"{text!r} already exists in {shown_path(self.sessions_dir)}"
            return check_name(text)

        screen = PromptScreen(
            f"rename session {name!r}", f"A new name for session {name!r}:", name, check
        )

        def answered(text: str | None) -> None:
            if text is not None:
                self._apply(lambda: self._rename(folder, text), text)

        self.app.push_screen(screen, answered)

    def _rename(self, folder: Path, new: str) -> None:
        from lrconsole.core.session.admin import rename_session

        rename_session(folder, new)
        self.notify(f"renamed session {folder.name!r} to {new!r}", timeout=4)

    def _apply(self, act: Any, select: str | None) -> None:
        """Run a delete or rename; a refusal (a runner took the session meanwhile, the
        name was taken) is a toast. The list is read again either way."""
        try:
            act()
        except UserError as exc:
            self.notify(str(exc), title="refused", severity="error", timeout=8)
        self.reload(select)
