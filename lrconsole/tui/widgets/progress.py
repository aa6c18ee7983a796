"""Progress of the current segment (epochs and batch), counters, speed, elapsed time, ETAs,
LR and last metrics; the run screen's top line.

Every epoch number here counts finished epochs, as the segments table does: "epoch 60"
on the counters line, "30/30 epochs" of a segment and an "end" of 60 in the table agree.
"""

from __future__ import annotations

import time

from rich.markup import escape
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
    """The top line: session, task, run state, a status note and TensorBoard's address."""
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
        badge = f"[b yellow]⏸ {PAUSE_TEXT.get(reason, 'paused')}[/]"
    else:
        badge = "[b red]■ stopped[/]"
    parts = [f"[b]{escape(str(name))}[/]", f"task {escape(str(task_text or '?'))}", badge]
    if note:
        parts.append(escape(note))
    if tensorboard_url:
        parts.append(f"TensorBoard {tensorboard_url}")
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


def segment_elapsed(model: RunModel, index: int) -> float | None:
    """Wall time the segment has taken: from its first epoch end to its last, plus its
    first epoch at their mean pace (the time before it may be an idle gap); None before
    its second epoch."""
    span, row = model.segment_span.get(index), model.segment_last_row.get(index)
    first = model.segment_first_epoch.get(index)
    if span is None or row is None or first is None:
        return None
    epochs = int(row["global_epoch"]) - first + 1
    if epochs < 2:
        return None
    elapsed = (span[1] - span[0]) * epochs / (epochs - 1)
    # While training, the clock runs on between epochs (a runner on this machine).
    return elapsed + max(0.0, time.time() - span[1]) if model.running else elapsed


def timing_parts(model: RunModel) -> list[str]:
    """Speed, the running segment's elapsed time and ETA, and the whole queue's ETA; the
    ones not known (paused: no speed) are left out, so the line fits 80 columns."""
    per_epoch = seconds_per_epoch(model)
    current = model.current_segment()
    parts = [] if per_epoch is None else [format_rate(per_epoch)]
    if current is not None:
        index, seg, done, _length = current
        elapsed = segment_elapsed(model, index)
        if elapsed is not None:
            parts.append(f"elapsed {format_eta(elapsed)}")
        if per_epoch is not None:
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

    def counters_text(self) -> str:
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
        return "  ·  ".join(parts)  # the tmux test reads "epoch N  ·"

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
        self.query_one("#counters", Static).update(self.counters_text())
