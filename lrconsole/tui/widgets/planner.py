"""The segment planner: epochs and LR fields, Enter queues, and the editable queue."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import Key
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from lrconsole.core.plan.segment import ScheduleError
from lrconsole.tui import messages as m
from lrconsole.tui.model import describe_segment
from lrconsole.tui.validate import parse_epochs, parse_lr, parse_setting
from lrconsole.tui.widgets.history import describe_settings, setting_text

# The optional fields, collapsed under "more": (id = the segment field, label, hint).
MORE_FIELDS = (
    ("momentum", "momentum", "keep, e.g. 0.9", "SGD, RMSprop: in [0, 1)"),
    ("betas", "betas", "keep, e.g. 0.9,0.999", "Adam, AdamW: two numbers in [0, 1)"),
    ("weight_decay", "w. decay", "keep, e.g. 1e-4", "weight decay: >= 0"),
    ("clip_grad_norm", "clip", "keep; off or e.g. 1.0", "max total gradient norm, or off"),
    ("note", "note", "why this segment", "free text, at most 500 characters"),
)
MORE_LABEL = "▸ more: momentum, wd, clip…"
LESS_LABEL = "▾ less"


class NumberInput(Input):
    """A compact planner field. While it has the focus every printable key types into it:
    the console's one-letter commands act only when no field has the focus (Esc leaves it),
    and the keys that act anywhere are ctrl or F-keys (lrconsole.tui.keys)."""

    def __init__(self, value: str, **kwargs: Any) -> None:
        super().__init__(value, compact=True, **kwargs)

    def fill(self, text: str) -> None:
        """Put a value the program chose, all selected: the next key typed replaces it."""
        self.value = text
        self.select_all()


class Planner(Vertical):
    """Epochs + LR fields and a queue button; below, the queue of planned segments."""

    DEFAULT_CSS = """
    Planner {
        width: 36;
        border: round $accent 60%;
        border-title-color: $text;
        padding: 0 1;
    }
    Planner .row { height: 1; }
    Planner .row Label { width: 8; color: $text-muted; }
    Planner NumberInput { width: 1fr; }
    Planner .field-error { color: $error; height: auto; display: none; }
    Planner .field-error.-shown { display: block; }
    Planner #more-toggle { height: 1; min-width: 0; width: auto; }
    Planner #more { height: auto; display: none; }
    Planner #more.-open { display: block; }
    Planner #more .row Label { width: 9; }
    Planner #planner-buttons { height: 1; }
    Planner #planner-buttons Button { margin-right: 1; width: auto; min-width: 6; }
    Planner #queue-title { margin-top: 1; color: $text-muted; }
    Planner #queue { height: 1fr; min-height: 2; border: none; padding: 0; }
    Planner #editing { color: $warning; height: 1; }
    """

    BINDINGS = [Binding("escape", "cancel_edit", "Cancel edit", show=False)]

    def __init__(self, *, epochs: str = "30", lr: str = "0.03", id: str | None = None) -> None:
        super().__init__(id=id)
        self._epochs_default = epochs
        self._lr_default = lr
        self.editing: int | None = None  # position in the queue being edited
        self.border_title = "plan a segment"

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Label("epochs")
            yield NumberInput(
                self._epochs_default,
                id="epochs",
                tooltip="whole number of epochs, 1 to 100,000",
            )
        yield Static("", id="epochs-error", classes="field-error")
        with Horizontal(classes="row"):
            yield Label("LR")
            yield NumberInput(
                self._lr_default,
                id="lr",
                tooltip="learning rate: > 0 and at most 10, e.g. 0.03 or 3e-2",
            )
        yield Static("", id="lr-error", classes="field-error")
        # Collapsed by default: the planner keeps its size at 80x24.
        yield Button(MORE_LABEL, id="more-toggle", compact=True)
        with Vertical(id="more"):
            for name, label, hint, tooltip in MORE_FIELDS:
                with Horizontal(classes="row"):
                    yield Label(label)
                    yield NumberInput("", id=name, placeholder=hint, tooltip=tooltip)
                yield Static("", id=f"{name}-error", classes="field-error")
        with Horizontal(id="planner-buttons"):
            yield Button("Queue ⏎", id="queue-button", variant="primary", compact=True)
            yield Button("Edit", id="edit-button", compact=True)
            yield Button("Remove", id="remove-button", variant="error", compact=True)
        yield Static("", id="editing")
        yield Label("queue (not started yet)", id="queue-title")
        yield OptionList(id="queue")

    def on_mount(self) -> None:
        if self.app.is_headless:  # steady screenshots in tests
            for field in self.query(NumberInput):
                field.cursor_blink = False

    # -- fields -------------------------------------------------------------------------
    def show_error(self, field_id: str, message: str | None) -> None:
        error = self.query_one(f"#{field_id}-error", Static)
        error.update(f"⚠ {message}" if message else "")
        error.set_class(bool(message), "-shown")
        self.query_one(f"#{field_id}", NumberInput).set_class(bool(message), "-invalid")

    @on(NumberInput.Changed)
    def _field_changed(self, event: NumberInput.Changed) -> None:
        # A fix to a refused field clears its message at once.
        if event.input.id is not None:
            self.show_error(event.input.id, None)

    def set_lr(self, text: str, *, focus: bool = True) -> None:
        """Fill the LR field: a strategy's suggestion, for the operator to queue or change.

        All of it is selected and (with `focus`) the field has the focus, so typing
        replaces the suggestion instead of appending to it."""
        field = self.query_one("#lr", NumberInput)
        field.fill(text)
        if focus:
            field.focus()
            # Focusing selects the value too; after the focus, so nothing undoes it.
            self.call_after_refresh(field.select_all)

    def field_value(self, field_id: str) -> str:
        return self.query_one(f"#{field_id}", NumberInput).value

    def take_focus(self) -> None:
        """Put the cursor in the planner, unless the operator is already in it."""
        focused = self.app.focused
        if focused is None or self not in focused.ancestors_with_self:
            self.query_one("#epochs", NumberInput).focus()

    def submit(self) -> None:
        """Check both fields; post SegmentRequested, or InputRejected and show why."""
        epochs_text = self.query_one("#epochs", NumberInput).value
        lr_text = self.query_one("#lr", NumberInput).value
        epochs: int | None = None
        lr: float | None = None
        try:
            epochs = parse_epochs(epochs_text)
            self.show_error("epochs", None)
        except ScheduleError as exc:
            self.show_error("epochs", str(exc))
            self.post_message(m.InputRejected("epochs", str(exc)))
        try:
            lr = parse_lr(lr_text)
            self.show_error("lr", None)
        except ScheduleError as exc:
            self.show_error("lr", str(exc))
            self.post_message(m.InputRejected("lr", str(exc)))
        if epochs is None:
            self.query_one("#epochs", NumberInput).focus()
            return
        if lr is None:
            self.query_one("#lr", NumberInput).focus()
            return
        settings = self.settings()
        if settings is None:
            return
        self.post_message(m.SegmentRequested(epochs, lr, self.editing, settings))
        self.stop_editing()
        self.query_one("#note", NumberInput).value = ""  # a note belongs to one segment
        # The values stay, selected: the next segment is typed over them, not appended.
        for field in self.query(NumberInput):
            field.select_all()

    def settings(self) -> dict[str, Any] | None:
        """The optional fields that are filled in, as the segment's fields; None (and the
        first bad field opened, focused, with its message) when one is refused."""
        out: dict[str, Any] = {}
        for name, *_ in MORE_FIELDS:
            field = self.query_one(f"#{name}", NumberInput)
            if not field.value.strip():
                continue  # left empty: the previous segment's value goes on
            try:
                out[name] = parse_setting(name, field.value)
            except ScheduleError as exc:
                self.show_error(name, str(exc))
                self.post_message(m.InputRejected(name, str(exc)))
                self.show_more(True)
                field.focus()
                return None
        return out

    def show_more(self, open_: bool) -> None:
        self.query_one("#more").set_class(open_, "-open")
        self.query_one("#more-toggle", Button).label = LESS_LABEL if open_ else MORE_LABEL

    @on(Button.Pressed, "#more-toggle")
    def _toggle_more(self, event: Button.Pressed) -> None:
        event.stop()
        opened = not self.query_one("#more").has_class("-open")
        self.show_more(opened)
        if opened:
            self.query_one("#momentum", NumberInput).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.submit()

    @on(Button.Pressed, "#queue-button")
    def _queue_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.submit()

    # -- the queue ----------------------------------------------------------------------
    def set_queue(self, segments: list[tuple[int, dict[str, Any]]]) -> None:
        """Show the planned segments: (segment index, segment) pairs."""
        queue = self.query_one("#queue", OptionList)
        highlighted = queue.highlighted
        queue.clear_options()
        queue.add_options(
            Option(f"#{index + 1}  {describe_segment(seg)}{describe_settings(seg)}")
            for index, seg in segments
        )
        if segments:
            queue.highlighted = min(highlighted or 0, len(segments) - 1)
        if self.editing is not None and self.editing >= len(segments):
            self.stop_editing()

    def start_editing(self, position: int, segment: dict[str, Any], number: int) -> None:
        """Load queue item `position` (segment `number`, counted from 1) into the fields."""
        self.editing = position
        if segment.get("epochs") is not None:
            self.query_one("#epochs", NumberInput).fill(str(segment["epochs"]))
        self.query_one("#lr", NumberInput).fill(f"{float(segment['lr']):g}")
        shown = False
        for name, *_ in MORE_FIELDS:  # its own settings, or empty: as it was queued
            shown = shown or name in segment
            text = setting_text(segment[name]) if name in segment else ""
            self.query_one(f"#{name}", NumberInput).fill(text)
        if shown:
            self.show_more(True)
        self.query_one("#editing", Static).update(
            f"editing queued #{number}: Enter saves, Esc cancels"
        )
        self.query_one("#epochs", NumberInput).focus()

    def stop_editing(self) -> None:
        self.editing = None
        self.query_one("#editing", Static).update("")

    def action_cancel_edit(self) -> None:
        if self.editing is not None:
            self.stop_editing()
        else:
            self.screen.set_focus(None)

    def _selected(self) -> int | None:
        queue = self.query_one("#queue", OptionList)
        return queue.highlighted if queue.option_count else None

    @on(Button.Pressed, "#edit-button")
    def _edit_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        position = self._selected()
        if position is not None:
            self.post_message(m.QueueEditRequested(position, remove=False))

    @on(Button.Pressed, "#remove-button")
    def _remove_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        position = self._selected()
        if position is not None:
            self.post_message(m.QueueEditRequested(position, remove=True))

    @on(OptionList.OptionSelected, "#queue")
    def _option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.post_message(m.QueueEditRequested(event.option_index, remove=False))

    def on_key(self, event: Key) -> None:
        queue = self.query_one("#queue", OptionList)
        if queue.has_focus and event.key in ("delete", "backspace", "x"):
            position = self._selected()
            if position is not None:
                event.stop()
                self.post_message(m.QueueEditRequested(position, remove=True))
