"""The Textual app and `make_app`, the factory the CLI and the tests share."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from lrconsole.tui.screens.home import HomeScreen, SessionChosen

# The run screen, its controller and the help screen load on first use: the home screen's
# first frame should not wait for them (about 0.1 s of imports).
if TYPE_CHECKING:
    from lrconsole.tui.controller import Connector

ConnectorFactory = Callable[[Path, "dict[str, Any] | None", bool], "Connector"]


def default_connector_factory(
    session_dir: Path, create: dict[str, Any] | None, attach: bool
) -> Connector:
    from lrconsole.tui.controller import runner_connector

    return runner_connector(session_dir, create=create, attach=attach)


@dataclass
class Start:
    """What the console opens first: the home screen, or one session's run screen."""

    session_dir: Path | None = None
    create: dict[str, Any] | None = None  # {"task": ..., "seed": ...} for a new session
    attach: bool = False


class ConsoleApp(App[int]):
    TITLE = "lrconsole"
    CSS = """
    Screen { background: $background; }
    Footer { background: $panel; }
    /* Toasts at the top left, over the loss chart: never over the segments table at the
       bottom (the rack ends above it and scrolls) nor the planner's fields at the right. */
    ToastRack { dock: top; align: left top; margin-top: 1; margin-bottom: 0; max-height: 60%; }
    ToastHolder { align-horizontal: left; }
    """
    BINDINGS = [
        Binding("q", "quit_console", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("ctrl+c", "quit_console", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        sessions_dir: Path,
        start: Start,
        *,
        connector_factory: ConnectorFactory = default_connector_factory,
    ) -> None:
        super().__init__()
        self.sessions_dir = sessions_dir
        self.start = start
        self.connector_factory = connector_factory
        self.theme = "textual-dark"

    def on_mount(self) -> None:
        if self.start.session_dir is None:
            self.push_screen(HomeScreen(self.sessions_dir))
        else:
            self.open_session(self.start.session_dir, self.start.create, self.start.attach)

    def open_session(
        self, session_dir: Path, create: dict[str, Any] | None = None, attach: bool = False
    ) -> None:
        from lrconsole.tui.screens.run import RunScreen

        connector = self.connector_factory(session_dir, create, attach)
        self.push_screen(RunScreen(session_dir, connector))

    def on_session_chosen(self, message: SessionChosen) -> None:
        from lrconsole.core.session.discover import new_session_name

        if message.name is None:
            name = new_session_name(self.sessions_dir)
            self.open_session(self.sessions_dir / name, {"task": "lesson", "seed": 0})
        else:
            self.open_session(self.sessions_dir / message.name)

    # -- app-wide actions ---------------------------------------------------------------
    def action_help(self) -> None:
        from lrconsole.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_quit_console(self) -> None:
        from lrconsole.tui.screens.run import RunScreen

        screen = self.screen
        if isinstance(screen, RunScreen):
            screen.request_quit()
        elif isinstance(screen, HomeScreen):
            self.exit(0)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        from lrconsole.tui.screens.run import RunScreen

        yield from super().get_system_commands(screen)
        yield SystemCommand("Help", "Show the keys (?)", self.action_help)
        yield SystemCommand(
            "Quit lrconsole", "Stop and save, or detach (q)", self.action_quit_console
        )
        if isinstance(screen, RunScreen):
            yield SystemCommand("Pause or resume training", "space", screen.action_toggle_pause)
            yield SystemCommand("Export the schedule to YAML", "e", screen.action_export)
            yield SystemCommand("Start TensorBoard", "t", screen.action_tensorboard)
            yield SystemCommand("Toggle log scale", "l", screen.action_log_scale)
            yield SystemCommand("Lower chart: LR or gradient norm", "g", screen.action_lower_chart)
            yield SystemCommand("Charts: zoom in to the last epochs", "+", screen.action_zoom_in)
            yield SystemCommand("Charts: zoom out", "-", screen.action_zoom_out)
            yield SystemCommand("Charts: all epochs", "0", screen.action_zoom_reset)
            yield SystemCommand("Robust or full y range", "a", screen.action_robust_range)
            yield SystemCommand("Overlay another run (or remove it)", "o", screen.action_overlay)
            yield SystemCommand("Roll back to a checkpoint", "r", screen.action_rollback)
            yield SystemCommand("LR range test", "f", screen.action_lr_find)
            yield SystemCommand("Set the LR now", "F2", screen.action_set_lr_now)
            yield SystemCommand(
                "End the running segment after this epoch",
                "F6",
                lambda: screen.run_action("end_segment(False)"),
            )
            yield SystemCommand(
                "End the running segment now", "F7", lambda: screen.run_action("end_segment(True)")
            )
            yield SystemCommand(
                "Extend or shorten the running segment", "F8", screen.action_extend_segment
            )
            yield SystemCommand(
                "Accept a divergence and resume", "F9", screen.action_accept_divergence
            )


def make_app(
    sessions_dir: Path,
    *,
    session_dir: Path | None = None,
    create: dict[str, Any] | None = None,
    attach: bool = False,
    connector_factory: ConnectorFactory = default_connector_factory,
) -> ConsoleApp:
    """The console app: the home screen when `session_dir` is None, else that session."""
    return ConsoleApp(
        Path(sessions_dir),
        Start(session_dir, create, attach),
        connector_factory=connector_factory,
    )
