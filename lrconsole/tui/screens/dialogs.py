"""Modal dialogs: quit, export, the runner error, a one-number prompt and a confirmation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.markup import escape
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
    """Ask where to write the schedule YAML. `write(path)` writes it and returns None, or
    the reason it failed: then the dialog stays open with the reason under the path, so a
    one-character mistake is fixed, not retyped."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="ExportScreen")
        + """
    ExportScreen #export-error { color: $error; height: auto; }
    """
    )
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, default: Path, write: Callable[[Path], str | None]) -> None:
        super().__init__()
        self.default = default
        self.write = write

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
        path = Path(text).expanduser()
        error = self.write(path)
        if error is not None:
            self.query_one("#export-error", Static).update(f"⚠ {escape(error)}")
            self.query_one("#export-path", Input).focus()
            return
        self.dismiss(path)

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

    def __init__(self, message: str, *, held: bool = False) -> None:
        super().__init__()
        self.message = message
        self.held = held  # a live process holds the session: a restart cannot work, a retry can

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            if self.held:
                box.border_title = "the runner is not answering"
                advice = (
                    "Another process holds the session and does not answer: resume it "
                    "(`fg`, or `kill -CONT PID`), then try again; or close this and quit (q)."
                )
                label = "Try again (r)"
            else:
                box.border_title = "the runner stopped"
                advice = (
                    "The console is still here. Restart the runner from the last "
                    "checkpoint, or close this and quit (q)."
                )
                label = "Restart from checkpoint (r)"
            yield Static(self.message, id="error-text", classes="message", markup=False)
            yield Static(advice)
            with Horizontal(classes="buttons"):
                yield Button(label, id="restart", variant="primary")
                yield Button("Close (Esc)", id="close")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "restart")

    def action_restart(self) -> None:
        self.dismiss(True)

    def action_close(self) -> None:
        self.dismiss(False)


class PromptScreen(ModalScreen[str | None]):
    """Ask for one value; `check(text)` returns None when it is good, else why not.
    The default is selected, so typing replaces it. Dismisses with the text, or None."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="PromptScreen")
        + """
    PromptScreen #prompt-error { color: $error; height: auto; }
    """
    )
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self, title: str, text: str, default: str, check: Callable[[str], str | None]
    ) -> None:
        super().__init__()
        self.title_text = title
        self.text = text
        self.default = default
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            yield Static(self.text, classes="message", markup=False)
            yield Input(self.default, id="prompt-value")
            yield Static("", id="prompt-error")
            with Horizontal(classes="buttons"):
                yield Button("OK (Enter)", id="ok", variant="primary")
                yield Button("Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#prompt-value", Input).focus()

    def _accept(self) -> None:
        text = self.query_one("#prompt-value", Input).value.strip()
        error = self.check(text)
        if error is not None:
            self.query_one("#prompt-error", Static).update(f"⚠ {escape(error)}")
            return
        self.dismiss(text)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._accept()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._accept()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question: y or the button confirms, n or Esc cancels."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmScreen")
    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, title: str, text: str, yes: str) -> None:
        super().__init__()
        self.title_text = title
        self.text = text
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            yield Static(self.text, classes="message", markup=False)
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} (y)", id="yes", variant="warning")
                yield Button("Cancel (Esc)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # Enter on a reflex does not accept

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
