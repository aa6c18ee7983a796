"""Progress of the current segment (epoch and batch), counters, ETA, LR and last metrics;
the run screen's top line."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar, Static

from lrconsole.tui.model import RunModel
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
            f"ETA {format_eta(model.eta_seconds())}",
            f"lr {format_value(lr) if lr is not None else '—'}",
        ]
        parts += [f"{name} {format_value(v)}" for name, v in model.last_metrics.items()]
        if model.last_checkpoint_epoch is not None:
            parts.append(f"[dim]saved @ {model.last_checkpoint_epoch}[/dim]")
        return "  ·  ".join(parts)

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
            if done % spe:
                epoch_in, batch = done // spe + 1, done % spe
            else:
                epoch_in, batch = done // spe, spe if done else 0
            label.update(f"segment #{index + 1}  epoch {epoch_in}/{epochs}  batch {batch}/{spe} ")
            bar.update(total=max(1, length), progress=done)
        self.query_one("#counters", Static).update(self.counters_text())
