"""The run screen: charts, planner, progress, segment history; owns the runner connection."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerState

from lrconsole.core.session.layout import SCHEDULE_EXPORT, TB_DIR
from lrconsole.tui import messages as m
from lrconsole.tui.chartkeys import CHART_BINDINGS, ChartActions
from lrconsole.tui.chartview import ChartView
from lrconsole.tui.controller import Connector, Controller, NotConnected
from lrconsole.tui.disk import load_branches, snapshot_from_disk
from lrconsole.tui.screens.dialogs import ErrorScreen, ExportScreen, QuitScreen
from lrconsole.tui.steering import DIVERGED, DIVERGED_NOTE, STEER_BINDINGS, SteeringActions
from lrconsole.tui.tensorboard import TensorBoard
from lrconsole.tui.widgets.charts import LossChart, LrChart
from lrconsole.tui.widgets.history import SegmentTable
from lrconsole.tui.widgets.planner import NumberInput, Planner
from lrconsole.tui.widgets.progress import RunProgress, topbar_markup

REDRAW_INTERVAL = 0.25  # seconds: at most 4 chart redraws per second
RUNNER_GROUP = "runner"


class RunScreen(ChartActions, SteeringActions, Screen[None]):
    DEFAULT_CSS = """
    RunScreen { layout: vertical; }
    RunScreen #topbar { height: 1; padding: 0 1; background: $panel; }
    RunScreen #main { height: 3fr; min-height: 14; }
    RunScreen #charts { width: 1fr; }
    RunScreen LossChart { height: 2fr; }
    RunScreen LrChart { height: 1fr; min-height: 5; max-height: 9; }
    RunScreen SegmentTable { height: 1fr; min-height: 5; max-height: 16; }
    """

    AUTO_FOCUS = ""  # a closed dialog leaves no field focused by itself ("*" if None)
    # One-letter keys act only when no field has the focus (a field types them); the
    # F-keys of STEER_BINDINGS and ctrl+r act anywhere. Not all fit the footer: the help
    # screen and the palette list every one.
    BINDINGS = [
        Binding("space", "toggle_pause", "Pause"),
        *STEER_BINDINGS,
        Binding("e", "export", "Export"),
        Binding("r,ctrl+r", "rollback", "Roll back", show=False),
        Binding("t", "tensorboard", "TensorBoard", show=False),
        *CHART_BINDINGS,
        Binding("f", "lr_find", "LR find", show=False),
    ]

    def __init__(self, session_dir: Path, connector: Connector) -> None:
        super().__init__()
        self.session_dir = session_dir
        self.controller = Controller(session_dir, connector)
        self.model = self.controller.model
        self.view = ChartView()  # the charts' shared epoch window, range and overlay
        self.tensorboard = TensorBoard(session_dir / TB_DIR)
        self._dirty = True
        self._plan_dirty = True
        self._lr_proposed = False
        self.status_note = "connecting to the runner…"

    # -- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("", id="topbar")
        with Horizontal(id="main"):
            with Vertical(id="charts"):
                yield LossChart(self.model, self.view, id="loss-chart")
                yield LrChart(self.model, self.view, id="lr-chart")
            yield Planner(id="planner")
        yield RunProgress(self.model, id="progress")
        yield SegmentTable(self.model, id="segments")
        yield Footer(compact=True, show_command_palette=False)  # ctrl+p: in the help

    def on_mount(self) -> None:
        self.set_interval(REDRAW_INTERVAL, self.flush, name="redraw throttle")
        self.show_files()
        self.update_topbar()
        self.query_one("#epochs", NumberInput).focus()
        self.connect()

    def on_unmount(self) -> None:
        self.tensorboard.stop()

    def show_files(self) -> None:
        """Draw the history from the session's files while the runner starts (seconds)."""
        snapshot = snapshot_from_disk(self.session_dir)
        if snapshot is None:
            return
        self.model.load_snapshot(snapshot)
        self.model.branches = load_branches(self.session_dir, self.model)
        self.flush()
        self.propose_last_lr()

    # -- the connection: one declared worker, failures in one handler -------------------
    @work(
        exclusive=True,
        exit_on_error=False,
        group=RUNNER_GROUP,
        description="connection to the runner",
    )
    async def connect(self) -> None:
        await self.controller.serve(self.post_message)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != RUNNER_GROUP or self.controller.closing or not self.is_attached:
            return
        if event.state not in (WorkerState.ERROR, WorkerState.SUCCESS):
            return
        from lrconsole.errors import NotAnswering

        error = event.worker.error
        held = isinstance(error, NotAnswering)  # suspended or wedged: say so, at once
        detail = (
            str(error)
            if held
            else self.model.last_error
            or (f"{type(error).__name__}: {error}" if error is not None else "the runner went away")
        )
        self.status_note = detail if held else "disconnected: the runner stopped"
        self.model.state = {**self.model.state, "state": "stopped"}
        self.update_topbar()
        self.app.push_screen(ErrorScreen(detail, held=held), self._after_error)

    async def _after_error(self, restart: bool | None) -> None:
        if restart:
            self.status_note = "connecting to the runner…"
            self.model.last_error = None
            self.update_topbar()
            self.connect()

    # -- runner messages ----------------------------------------------------------------
    def on_connected(self, message: m.Connected) -> None:
        self.model.branches = load_branches(self.session_dir, self.model)
        # A session that diverged past its checkpoint waits for a choice, reopened or not.
        self.status_note = DIVERGED_NOTE if self.model.state.get("diverged") else ""
        self._dirty = self._plan_dirty = True
        self.query_one(LossChart).mark_stale()
        self.query_one(LrChart).mark_stale()
        self.flush()
        self.propose_last_lr()
        if self.model.state.get("state") == "paused" and self.app.focused is not None:
            self.query_one(Planner).take_focus()  # not after Esc: the keys act then

    def propose_last_lr(self) -> None:
        """A reopened session's planner proposes the LR it trained at last. Once: later
        snapshots (after a rollback) must not overwrite what the operator or a strategy put."""
        lr = self.model.last_trained_lr()
        if self._lr_proposed:
            return
        self._lr_proposed = self.controller.connected or math.isfinite(lr)
        if math.isfinite(lr):
            self.query_one("#lr", NumberInput).fill(f"{lr:.6g}")

    def on_history_grew(self, message: m.HistoryGrew) -> None:
        self._dirty = True
        self.query_one(LossChart).mark_stale()
        self.query_one(LrChart).mark_stale()

    def on_batch_progress(self, message: m.BatchProgress) -> None:
        self._dirty = True

    def on_plan_changed(self, message: m.PlanChanged) -> None:
        self._dirty = self._plan_dirty = True
        for chart in (self.query_one(LossChart), self.query_one(LrChart)):
            chart.mark_stale()  # the planned curve and the shared x range follow the queue

    def on_segment_started(self, message: m.SegmentStarted) -> None:
        self._dirty = self._plan_dirty = True

    def on_run_state_changed(self, message: m.RunStateChanged) -> None:
        self._dirty = True
        if message.state == "running" and self.status_note == DIVERGED_NOTE:
            self.status_note = ""
        self.update_topbar()
        if message.state == "paused" and message.reason == "queue_empty":
            self.query_one(Planner).take_focus()

    def on_checkpoint_saved(self, message: m.CheckpointSaved) -> None:
        self.model.last_checkpoint_epoch = message.global_epoch
        self._dirty = True
        # While training, checkpoints come every few seconds: the counters line says so
        # quietly. A toast for the ones the operator waits on: pause, stop, the end of a plan.
        if not self.model.running:
            self.notify(
                f"checkpoint saved at epoch {message.global_epoch}", title="checkpoint", timeout=3
            )

    def on_lr_set(self, message: m.LrSet) -> None:
        self._dirty = True
        mine = [args for cmd, args in self.controller.sent if cmd == "set_lr"]
        if not mine or mine[-1].get("lr") != message.lr:  # this console already said so
            self.notify(f"LR set to {message.lr:g}", title="runner", timeout=3)

    def on_runner_warning(self, message: m.RunnerWarning) -> None:
        self.notify(escape(message.message), title="runner", severity="warning")

    async def on_runner_error(self, message: m.RunnerError) -> None:
        self.notify(escape(message.message), title="runner error", severity="error", timeout=10)
        if not message.fatal:  # diverged: offer the last good epoch, a lower LR prefilled
            self.status_note = DIVERGED_NOTE
            self.update_topbar()
            await self.action_rollback(reason=message.message, lower_lr=True)

    # -- redraw throttle ----------------------------------------------------------------
    def flush(self) -> None:
        """Repaint what changed; runs a few times per second at most."""
        if self._plan_dirty:
            self._plan_dirty = False
            segs = self.model.segments()
            self.query_one(Planner).set_queue([(i, segs[i]) for i in self.model.pending()])
        for chart in (self.query_one(LossChart), self.query_one(LrChart)):
            chart.flush()
        if self._dirty:
            self._dirty = False
            self.query_one(RunProgress).update_view()
            self.query_one(SegmentTable).update_view()
            self.update_topbar()

    def update_topbar(self) -> None:
        url = self.tensorboard.url if self.tensorboard.running else None
        markup = topbar_markup(
            self.model, self.session_dir.name, self.controller.connected, self.status_note, url
        )
        self.query_one("#topbar", Static).update(markup)

    # -- planner ------------------------------------------------------------------------
    async def on_segment_requested(self, message: m.SegmentRequested) -> None:
        segment: dict[str, Any] = {"epochs": message.epochs, "lr": message.lr, **message.settings}
        if message.edit is None:
            ok = await self.command("queue", segments=[segment])
        else:
            queued = self.model.queued()
            if message.edit >= len(queued):
                self.notify("that segment has started; queued as a new one", severity="warning")
                queued.append(segment)
            else:
                queued[message.edit] = segment
            ok = await self.command("queue", segments=queued, replace=True)
        if ok is None:
            return
        self._plan_dirty = self._dirty = True
        unit = "epoch" if message.epochs == 1 else "epochs"
        self.notify(f"queued {message.epochs} {unit} @ {message.lr:g}", timeout=2)
        # After the queue ran dry the runner goes on by itself once something is queued.
        # After a segment was cut short ("stop") it waits: queuing answers that wait too.
        # An operator's pause holds until space.
        if self.model.state.get("reason") == "stop":
            state = await self.command("status")
            if state and state.get("state") == "paused" and state.get("reason") == "stop":
                await self.command("resume")
        self.flush()

    def on_input_rejected(self, message: m.InputRejected) -> None:
        self.app.bell()

    async def on_queue_edit_requested(self, message: m.QueueEditRequested) -> None:
        queued = self.model.queued()
        if not 0 <= message.position < len(queued):
            return
        # One numbering everywhere: the segment's number in the session, from 1.
        number = self.model.pending()[message.position] + 1
        if message.remove:
            del queued[message.position]
            if await self.command("queue", segments=queued, replace=True) is not None:
                self.notify(f"removed queued segment #{number}", timeout=2)
                self._plan_dirty = True
                self.flush()
        else:
            self.query_one(Planner).start_editing(
                message.position, queued[message.position], number
            )

    async def command(self, cmd: str, **args: Any) -> dict[str, Any] | None:
        """Send a command; on failure notify and return None. The console never dies here."""
        try:
            return await self.controller.call(cmd, **args)
        except NotConnected:
            self.notify("no runner is connected", severity="error")
        except Exception as exc:  # CommandFailed, ConnectionLost, timeouts: say so, go on
            if cmd == "resume" and getattr(exc, "code", None) == DIVERGED:
                self.diverged_refusal()
                return None
            self.notify(
                escape(str(exc) or type(exc).__name__), title=f"{cmd} refused", severity="error"
            )
        return None

    # -- key actions (steering: lrconsole.tui.steering) ----------------------------------
    def planner(self) -> Planner:
        return self.query_one(Planner)

    def focus_epochs(self) -> None:
        self.query_one("#epochs", NumberInput).focus()

    def action_export(self) -> None:
        default = self.session_dir / SCHEDULE_EXPORT
        self.app.push_screen(ExportScreen(default, self.write_export))

    def write_export(self, path: Path) -> str | None:
        """Write the schedule to `path`; None when done, else why not (the dialog shows it)."""
        from lrconsole.errors import UserError
        from lrconsole.tui.export import export

        try:
            schedule = export(
                self.session_dir, path, self.model if self.controller.connected else None
            )
        except (UserError, OSError) as exc:
            return str(exc)
        self.notify(
            f"{len(schedule.segments)} segments written to {escape(str(path))}",
            title="schedule exported",
        )
        self.post_message(m.ScheduleExported(str(path)))
        return None

    def action_tensorboard(self) -> None:
        try:
            url = self.tensorboard.start()
        except OSError as exc:
            self.notify(f"cannot start TensorBoard: {escape(str(exc))}", severity="error")
            return
        self.notify(
            f"TensorBoard at {url} (it takes a few seconds to answer)",
            title="TensorBoard",
            timeout=10,
        )
        self.post_message(m.TensorBoardStarted(url))
        self.update_topbar()

    def request_quit(self) -> None:
        self.app.push_screen(QuitScreen(self.controller.connected), self._after_quit)

    async def _after_quit(self, choice: str | None) -> None:
        if choice is None:
            return
        if choice == "save":
            self.status_note = "stopping and saving…"
            self.update_topbar()
            await self.controller.close(shutdown=True)
        else:
            await self.controller.close(shutdown=False)
        self.tensorboard.stop()
        self.app.exit(0)
