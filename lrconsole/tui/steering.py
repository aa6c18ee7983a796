"""Steering the running segment from the run screen: pause and resume, set the LR now,
end or extend the running segment, roll back, the LR range test, and the explicit accept
after a divergence.

A mixin of RunScreen (the screen module stays small); the keys are F-keys, so they act
even while the operator is typing in a planner field.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.binding import Binding

from lrconsole.core.plan.segment import ScheduleError
from lrconsole.tui.model import RunModel, segment_length
from lrconsole.tui.validate import SETTINGS, parse_lr, parse_setting, parse_settings
from lrconsole.tui.widgets.history import setting_text

if TYPE_CHECKING:
    from textual.app import App

    from lrconsole.tui.controller import Controller
    from lrconsole.tui.messages import SettingsSet
    from lrconsole.tui.widgets.planner import Planner

DIVERGED = "diverged"  # the runner's refusal code for a plain resume after a divergence
DIVERGED_NOTE = "diverged: roll back (r) or accept (F9)"

# Short footer labels. At 80 columns the footer holds space, F2, F3, F6, F8, e, q and ?:
# F4, F5 and F7 stay off it (show=False) so the one-letter keys fit. The help screen, the
# palette and the README's key table list every key.
STEER_BINDINGS = [
    Binding("f2", "set_lr_now", "Set LR", key_display="F2", tooltip="set the LR now (asks)"),
    Binding("f3", "scale_lr(0.1)", "÷10", key_display="F3", tooltip="LR ÷10 now"),
    Binding("f4", "scale_lr(0.5)", "÷2", key_display="F4", show=False),
    Binding("f5", "scale_lr(2)", "×2", key_display="F5", show=False),
    Binding(
        "f6",
        "end_segment(False)",
        "End@epoch",
        key_display="F6",
        tooltip="end the segment after this epoch",
    ),
    Binding("f7", "end_segment(True)", "End now", key_display="F7", show=False),
    Binding(
        "f8", "extend_segment", "±Epochs", key_display="F8", tooltip="extend or shorten the segment"
    ),
    Binding("f9", "accept_divergence", "Accept divergence", key_display="F9", show=False),
    # ctrl, not a letter: it must act while typing in a field. Not on the footer.
    Binding("ctrl+o", "set_settings_now", "Set settings now", key_display="^o", show=False),
]


def check_epochs_delta(text: str) -> str | None:
    """None for a whole number of epochs other than 0 (negative shortens), else why not."""
    try:
        value = int(text)
    except ValueError:
        return "a whole number of epochs, e.g. 10 or -5"
    if value == 0:
        return "0 changes nothing: 10 adds ten epochs, -5 removes five"
    if abs(value) > 100_000:
        return "at most 100,000 epochs at a time"
    return None


def check_lr(text: str) -> str | None:
    try:
        parse_lr(text)
    except ScheduleError as exc:
        return str(exc)
    return None


def check_settings(text: str) -> str | None:
    try:
        parse_settings(text)
    except ScheduleError as exc:
        return str(exc)
    return None


def running_segment(model: RunModel) -> tuple[int, int, int] | None:
    """(index, first step, length in steps) of the segment the next step belongs to."""
    segs = model.segments()
    index = int(model.plan.get("current", len(segs)) or 0)
    if index >= len(segs):
        return None
    start = model.starts()[index]
    return index, start, segment_length(segs[index], model.steps_per_epoch)


class SteeringActions:
    """RunScreen's steering actions. Each says in one line what it did."""

    if TYPE_CHECKING:  # provided by RunScreen and textual's Screen
        model: RunModel
        controller: Controller
        status_note: str
        session_dir: Path
        app: App[Any]

        async def command(self, cmd: str, **args: Any) -> dict[str, Any] | None: ...

        def notify(self, message: str, **kwargs: Any) -> None: ...

        def update_topbar(self) -> None: ...

        def focus_epochs(self) -> None: ...

        def planner(self) -> Planner: ...

    # -- pause and resume; a divergence needs an explicit choice ---------------------------
    async def action_toggle_pause(self) -> None:
        model = self.model
        if model.running:
            await self.command("pause")
        elif not model.queued() and model.state.get("reason") == "queue_empty":
            self.notify(
                "nothing queued: plan a segment first (epochs, LR, Enter)", severity="warning"
            )
            self.focus_epochs()
            return
        else:
            # A plain resume: after a divergence the runner refuses it (see command()).
            await self.command("resume")
        self.update_topbar()

    def diverged_refusal(self) -> None:
        """The runner refused a plain resume: the operator must roll back or accept."""
        self.status_note = DIVERGED_NOTE
        self.notify(DIVERGED_NOTE, title="not resumed", severity="warning", timeout=8)
        self.update_topbar()

    def action_accept_divergence(self) -> None:
        from lrconsole.tui.screens.dialogs import ConfirmScreen

        state = self.model.state
        if not (state.get("diverged") or state.get("reason") == "error"):
            self.notify("the run has not diverged: nothing to accept", severity="warning")
            return
        lr = self.model.current_lr()
        at = f" at LR {lr:g}" if lr is not None else ""
        screen = ConfirmScreen(
            "accept the divergence",
            f"Resume{at} from the weights as they are now, after the loss blew up? "
            "Rolling back (r) to the last good epoch is usually better.",
            "Accept and resume",
        )

        async def answered(yes: bool | None) -> None:
            if yes and await self.command("resume", accept=True) is not None:
                self.status_note = ""
                self.notify(f"divergence accepted: resuming{at}", timeout=4)
                self.update_topbar()

        self.app.push_screen(screen, answered)

    # -- the LR of the running segment ----------------------------------------------------
    def action_set_lr_now(self) -> None:
        from lrconsole.tui.screens.dialogs import PromptScreen

        current = self.model.current_lr()
        now = f" (now {current:g})" if current is not None else ""
        screen = PromptScreen(
            "set the LR now",
            f"The LR from the next optimizer step, for the rest of the running segment{now}:",
            self.planner().field_value("lr"),
            check_lr,
        )

        async def answered(text: str | None) -> None:
            if text is not None:
                await self.set_lr_now(parse_lr(text))

        self.app.push_screen(screen, answered)

    async def action_scale_lr(self, factor: float) -> None:
        current = self.model.current_lr()
        if current is None or not math.isfinite(current):
            self.notify("no LR yet: queue a segment first", severity="warning")
            return
        await self.set_lr_now(float(f"{current * factor:.6g}"), before=current)

    async def set_lr_now(self, lr: float, before: float | None = None) -> None:
        result = await self.command("set_lr", lr=lr)
        if result is None:
            return
        was = f"{before:g} → " if before is not None else ""
        self.notify(f"LR {was}{lr:g} from the next step", title="LR set", timeout=4)

    def action_set_settings_now(self) -> None:
        """Ask for `momentum=0.9 weight_decay=1e-4 ...` and send `set`: from the next
        optimizer step, for the rest of the running segment (as F2 for the LR)."""
        from lrconsole.tui.screens.dialogs import PromptScreen

        default = []  # the planner's optional fields that hold a good value, as a start
        for name in SETTINGS[1:]:
            with contextlib.suppress(ScheduleError):
                text = self.planner().field_value(name)
                if text.strip():
                    default.append(f"{name}={setting_text(parse_setting(name, text))}")
        screen = PromptScreen(
            "set optimizer settings now",
            "From the next optimizer step, for the rest of the running segment "
            "(name=value; momentum, betas=0.9,0.999, weight_decay, clip_grad_norm=off, lr):",
            " ".join(default),
            check_settings,
        )

        async def answered(text: str | None) -> None:
            if text is None:
                return
            settings = parse_settings(text)
            if await self.command("set", **settings) is None:
                return
            what = ", ".join(f"{k} {setting_text(v)}" for k, v in settings.items())
            self.notify(f"{what} from the next step", title="settings set", timeout=4)

        self.app.push_screen(screen, answered)

    def on_settings_set(self, message: SettingsSet) -> None:
        """`set` took effect (`lrconsole set` from another terminal too): say what, from
        when. The LR has its own toast (lr_set); the table shows the split segment."""
        said = {k: setting_text(v) for k, v in message.settings.items() if k != "lr"}
        mine = [args for cmd, args in self.controller.sent if cmd == "set"]
        if not said or (
            mine
            and {k: setting_text(v) for k, v in mine[-1].items()}
            == {k: setting_text(v) for k, v in message.settings.items()}
        ):  # nothing but the LR, or this console sent it and said so already
            return
        epoch = message.step // self.model.steps_per_epoch + 1
        what = ", ".join(f"{k} {v}" for k, v in said.items())
        self.notify(
            f"{what} from step {message.step} (epoch {epoch})", title="settings set", timeout=5
        )

    # -- the length of the running segment -------------------------------------------------
    async def action_end_segment(self, now: bool) -> None:
        result = await self.command("end_segment", now=now)
        if result is None:  # refused (nothing running, not started): the toast says why
            return
        number = int(result.get("segment", self._running_index())) + 1
        step = result.get("global_step")
        spe = self.model.steps_per_epoch
        if now:
            text = f"segment #{number} ends now, at the next batch"
        elif step is not None and int(step) % spe == 0:
            text = f"segment #{number} ends after epoch {int(step) // spe}"
        else:  # a segment in steps ends inside an epoch
            text = f"segment #{number} ends at step {step}"
        self.notify(f"{text}; the queue moves on", title="segment ends", timeout=4)

    def action_extend_segment(self) -> None:
        from lrconsole.tui.screens.dialogs import PromptScreen

        running = running_segment(self.model)
        spe = self.model.steps_per_epoch
        if running is None:
            where = "The queue ran dry: this changes the last segment."
        else:
            index, start, length = running
            where = f"Segment #{index + 1} ends at epoch {-(-(start + length) // spe)}."
        screen = PromptScreen(
            "extend or shorten the running segment",
            f"{where} Add this many epochs (negative: remove them):",
            "10",
            check_epochs_delta,
        )

        async def answered(text: str | None) -> None:
            if text is None:
                return
            epochs = int(text)
            result = await self.command("extend_segment", epochs=epochs)
            if result is None:
                return
            number = int(result.get("segment", self._running_index())) + 1
            if not result.get("changed", True):
                self.notify(f"segment #{number} is unchanged: it cannot end before this epoch")
                return
            verb = "extended" if epochs > 0 else "shortened"
            end = result.get("end_step")
            ends = f": it ends at epoch {-(-int(end) // spe)}" if end is not None else ""
            self.notify(
                f"segment #{number} {verb} by {abs(epochs)} epochs{ends}",
                title="segment changed",
                timeout=4,
            )

        self.app.push_screen(screen, answered)

    # -- going back, and a proposed LR ---------------------------------------------------
    async def action_rollback(self, reason: str = "", lower_lr: bool = False) -> None:
        points = await self.command("rollback_points")
        if points is None:
            return
        from lrconsole.tui.disk import rollback_rows
        from lrconsole.tui.screens.strategies import RollbackScreen

        rows = rollback_rows(self.session_dir, self.model.metrics)
        epochs = [int(e) for e in points.get("epochs", [])]
        pinned = [int(e) for e in points.get("pinned", [])]

        async def pin(epoch: int, on: bool) -> list[int] | None:
            result = await self.command("pin", epoch=epoch, on=on)
            return None if result is None else [int(e) for e in result.get("pinned", [])]

        monitor = self.model.monitor or ""
        screen = RollbackScreen(epochs, rows, monitor, reason, pinned, pin)

        async def picked(epoch: int | None) -> None:
            if epoch is None:
                return
            result = await self.command("rollback", epoch=epoch)
            if result is None:
                return
            planner = self.planner()
            self.status_note = ""  # a divergence note no longer applies
            self.update_topbar()
            if lower_lr:  # in the LR field, selected: typing replaces it
                planner.set_lr(f"{float(result.get('lr') or 0.01) / 10:g}")
            else:
                planner.take_focus()

        self.app.push_screen(screen, picked)

    async def action_lr_find(self) -> None:
        from lrconsole.tui.screens.strategies import LrFindScreen

        self.notify("LR range test on a copy of the model…", title="LR find", timeout=3)
        result = await self.command("lr_find", timeout=600.0)
        if result is None:
            return

        def use(lr: float | None) -> None:
            if lr is not None:
                self.planner().set_lr(f"{lr:.3g}")

        self.app.push_screen(LrFindScreen(result), use)

    # -- helpers ---------------------------------------------------------------------------
    def _running_index(self) -> int:
        running = running_segment(self.model)
        return running[0] if running else max(0, len(self.model.segments()) - 1)
