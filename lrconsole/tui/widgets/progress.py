"""Progress of the current segment (epochs and batch), counters, speed, training time, ETAs,
LR and last metrics; the run screen's top line.

Every epoch number here counts finished epochs, as the segments table does: "epoch 60"
on the counters line, "30/30 epochs" of a segment and an "end" of 60 in the table agree.
"""

from __future__ import annotations

import time

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar, Static

from lrconsole.tui.model import RunModel, segment_length
from lrconsole.tui.plot import format_value

PAUSE_TEXT = {
    "operator": "paused: space resumes",
    "queue_empty": "waiting for a segment: epochs, LR, Enter",
    "stop": "stopped at a checkpoint: space resumes",
    "error": "paused after an error",
}


def topbar_markup(
    model: RunModel, folder_name: str, connected: bool, note: str, tensorboard_url: str | None
) -> str:
    """The top line: session, run state, a status note, TensorBoard's address, task."""
    name = model.session.get("name") or folder_name
    task = model.session.get("task")
    task_text = task.get("spec") if isinstance(task, dict) else task
    state = model.state.get("state", "…")
    if not connected and state != "stopped":
        badge = "[b]… connecting[/]"
    elif state == "running":
        badge = "[b green]● running[/]"
    elif state == "paused":
        reason = model.state.get("reason") or "operator"
        # A note (diverged: roll back or accept) says what to do: the badge just "paused".
        text = "paused" if note else PAUSE_TEXT.get(reason, "paused")
        badge = f"[b yellow]⏸ {text}[/]"
    else:
        badge = "[b red]■ stopped[/]"
    # The task last: at 80 columns the line is cut at the right, and the state and a
    # note (diverged: roll back or accept) matter more than the task.
    parts = [f"[b]{escape(str(name))}[/]", badge]
    if note:
        parts.append(escape(note))
    if tensorboard_url:
        parts.append(f"TensorBoard {tensorboard_url}")
    parts.append(f"task {escape(str(task_text or '?'))}")
    return "  │  ".join(parts)


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def seconds_per_epoch(model: RunModel) -> float | None:
    """From the recent live epochs while training; None when unknown or paused."""
    times = model.epoch_times
    if not model.running or len(times) < 2 or times[-1] <= times[0]:
        return None
    return (times[-1] - times[0]) / (len(times) - 1)


def format_rate(per_epoch: float) -> str:
    rate = 1.0 / per_epoch
    return f"{rate:.3g} ep/s" if rate >= 1 else f"{per_epoch:.3g} s/ep"


def timing_parts(model: RunModel) -> list[str]:
    """Speed, the run's training time so far (pauses and restarts left out), the running
    segment's ETA and the whole queue's; the ones not known (paused: no speed) are left
    out, so the line fits 80 columns."""
    per_epoch = seconds_per_epoch(model)
    current = model.current_segment()
    parts = [] if per_epoch is None else [format_rate(per_epoch)]
    # While training, the clock runs on between epochs (a runner on this machine).
    elapsed = model.clock.elapsed(time.time() if model.running else None)
    if elapsed is not None:
        parts.append(f"elapsed {format_eta(elapsed)}")
    if current is not None and per_epoch is not None:
        _index, seg, done, _length = current
        left = max(0, segment_length(seg, model.steps_per_epoch) - done)
        parts.append(f"ETA segment {format_eta(per_epoch * left / model.steps_per_epoch)}")
    if per_epoch is not None:
        parts.append(f"queue {format_eta(model.eta_seconds())}")
    return parts


class RunProgress(Vertical):
    """Two lines: a bar for the running segment, then the counters."""

    DEFAULT_CSS = """
    RunProgress { height: 2; padding: 0 1; }
    RunProgress Horizontal { height: 1; }
    RunProgress #segment-label { width: auto; min-width: 30; }
    RunProgress ProgressBar { width: 1fr; }
    RunProgress ProgressBar Bar { width: 1fr; }
    RunProgress #counters { height: 1; color: $text; }
    """

    def __init__(self, model: RunModel, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = model

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Static("no segment yet", id="segment-label")
            yield ProgressBar(total=1, show_eta=False, show_percentage=True, id="segment-bar")
        yield Static("", id="counters")

    def counters_text(self, width: int = 0) -> str:
        """The counters line; with a `width`, only the parts that fit whole."""
        model = self.model
        lr = model.current_lr()
        parts = [
            f"[b]epoch {model.global_epoch}[/b]",
            *timing_parts(model),
            f"lr {format_value(lr) if lr is not None else '—'}",
        ]
        parts += [f"{name} {format_value(v)}" for name, v in model.last_metrics.items()]
        if model.last_checkpoint_epoch is not None:
            parts.append(f"[dim]saved @ {model.last_checkpoint_epoch}[/dim]")
        # Whole parts only: at 80 columns a metric is left out, never cut after its name.
        shown = parts[:1]
        for part in parts[1:]:
            if width and Text.from_markup("  ·  ".join([*shown, part])).cell_len > width:
                break
            shown.append(part)
        return "  ·  ".join(shown)  # the tmux test reads "epoch N  ·"

    def on_resize(self) -> None:
        self.update_view()

    def update_view(self) -> None:
        model = self.model
        label = self.query_one("#segment-label", Static)
        bar = self.query_one("#segment-bar", ProgressBar)
        current = model.current_segment()
        if current is None:
            label.update("no segment yet ")
            bar.update(total=1, progress=0)
        else:
            index, _seg, done, length = current
            spe = model.steps_per_epoch
            epochs = -(-length // spe)
            # Finished epochs, like the counters and the table; the batch is of the next.
            label.update(
                f"segment #{index + 1}  {done // spe}/{epochs} epochs  batch {done % spe}/{spe} "
            )
            bar.update(total=max(1, length), progress=done)
        counters = self.query_one("#counters", Static)
        counters.update(self.counters_text(counters.size.width))
