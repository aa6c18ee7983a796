"""A session this process holds: its lock, manifest, metrics log, TensorBoard run and
checkpoints, and how a rollback turns the abandoned path into a branch.

The trainer wires it to an engine; nothing here knows how training is done.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from lrconsole.core.plan.plan import Plan
from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import Segment
from lrconsole.core.session.discover import rollback_epochs
from lrconsole.core.session.history import EpochHistory
from lrconsole.core.session.layout import branch_files, checkpoint_files, checkpoint_step
from lrconsole.core.session.manifest import Manifest
from lrconsole.core.session.metrics import MetricsLog, best_of, better, read_rows, write_rows
from lrconsole.core.session.store import SessionLock, prune_checkpoints, save_checkpoint
from lrconsole.core.session.tensorboard import TensorBoardLogger


class Session:
    def __init__(self, folder: Path, manifest: Manifest, lock: SessionLock) -> None:
        self.folder = folder
        self.manifest = manifest
        self.lock = lock
        self.metrics_log = MetricsLog(folder, manifest.metrics)
        # Rows as EpochEnd.to_dict() gives them, thinned: bounded however long the run.
        self.history = EpochHistory()
        self.tensorboard: TensorBoardLogger | None = None
        # The live plan's segments (the engine's): what the manifest records on each write.
        self.live_segments: Callable[[], list[Segment]] = lambda: list(manifest.segments)
        self.closed = False
        # The checkpoint writer's thread moves the manifest too (commit_checkpoint).
        self.manifest_lock = threading.RLock()

    def open_files(self, position_epoch: int, tensorboard: bool) -> list[dict[str, Any]]:
        """Open the metrics log and TensorBoard at `position_epoch`; the history rows kept.

        Rows, marks and a best epoch past the position belong to epochs trained again.
        """
        rows = self.metrics_log.open(keep_epochs=position_epoch)
        if tensorboard:
            self.tensorboard = TensorBoardLogger(self.folder, position_epoch, self.manifest.path)
        m = self.manifest
        m.policy_marks = [mark for mark in m.policy_marks if mark["epoch"] <= position_epoch]
        return rows

    def set_history(self, history: list[dict[str, Any]], position_epoch: int) -> None:
        self.history = EpochHistory(history)
        m = self.manifest
        if m.best is not None and int(m.best.get("epoch", 0)) > position_epoch:
            m.best = best_of(history, m.monitor, m.monitor_mode)

    # -- per epoch ----------------------------------------------------------------------
    def record_epoch(self, row: dict[str, Any], history_row: dict[str, Any]) -> None:
        """Append one epoch to metrics.csv (at the next sync), the history and TensorBoard;
        track the best value of the monitored metric."""
        self.metrics_log.append(row)
        self.history.append(history_row)
        metrics: dict[str, Any] = history_row["metrics"]
        if self.tensorboard is not None:
            self.tensorboard.add_epoch(history_row["global_epoch"], history_row["lr"], metrics)
        m = self.manifest
        value = metrics.get(m.monitor)
        if value is None or value != value:
            return
        if m.best is None or better(value, m.best["value"], m.monitor_mode):
            m.best = {"metric": m.monitor, "value": value, "epoch": history_row["global_epoch"]}

    # -- the manifest and checkpoints ---------------------------------------------------
    def write_manifest(self) -> None:
        with self.manifest_lock:
            self.manifest.segments = self.live_segments()
            self.manifest.write(self.folder)

    def set_state(self, state: str) -> None:
        if self.manifest.state != state:
            self.manifest.state = state
            self.write_manifest()

    def record(self, field: str, value: Any) -> None:
        """Set a manifest field and write the manifest, only when it changes."""
        if getattr(self.manifest, field) != value:
            setattr(self.manifest, field, value)
            self.write_manifest()

    def save_checkpoint(self, state: dict[str, Any], paused: bool) -> str:
        """Write `state` and move the manifest to it; older checkpoints are pruned."""
        self.sync_logs()
        rel = save_checkpoint(self.folder, state)
        self.manifest.state = "paused" if paused else "running"
        self.commit_checkpoint(rel, int(state["global_step"]), int(state["global_epoch"]))
        return rel

    def sync_logs(self) -> None:
        """metrics.csv and TensorBoard up to now, before a checkpoint is taken."""
        self.stage_logs()
        self.persist_logs()

    def stage_logs(self) -> None:
        """The logs up to now handed to the OS and TensorBoard's queue (training thread)."""
        self.metrics_log.write_pending()
        if self.tensorboard is not None:
            self.tensorboard.stage()

    def persist_logs(self) -> None:
        """What `stage_logs` handed over, onto the disk: the waits (fsync, TensorBoard's
        flush), on the checkpoint writer's thread, before the manifest names it."""
        self.metrics_log.fsync()
        if self.tensorboard is not None:
            self.tensorboard.writer.flush()

    def commit_checkpoint(
        self,
        rel: str,
        step: int,
        epoch: int,
        diverged_since: bool = False,
        since: float | None = None,
        **stats: Any,
    ) -> None:
        """Point the manifest at `rel`, a checkpoint written whole; prune older ones.
        `diverged_since`: the run diverged after the state was taken (a background write);
        `since`: when that write began (files written after it are not pruned).
        `stats`: how checkpointing goes (size, times, interval), kept in the manifest."""
        m = self.manifest
        with self.manifest_lock:
            m.checkpoint, m.global_step, m.global_epoch = rel, step, epoch
            if not diverged_since:
                m.diverged = None  # a good checkpoint past any divergence: the path goes on
            if stats:
                m.checkpointing = stats
            self.write_manifest()
            plan = Plan(m.segments, m.steps_per_epoch)
        prune_checkpoints(self.folder, plan, m.keep_checkpoints, [rel], since, m.pinned_steps)

    def discard_unsaved(self) -> None:
        """Forget the epochs past the last checkpoint: they are trained again."""
        self.metrics_log.discard_pending()
        if self.tensorboard is not None:
            self.tensorboard.discard()

    def close(self, state: str) -> None:
        """Record `state` and release everything; call once."""
        self.closed = True
        with contextlib.ExitStack() as stack:  # each runs, even after another failed
            stack.callback(self.lock.release)
            stack.callback(self.metrics_log.close)
            if self.tensorboard is not None:
                stack.callback(self.tensorboard.close)
            self.manifest.state = state
            self.write_manifest()

    # -- paths and branches -------------------------------------------------------------
    def schedule(self, segments: list[Segment]) -> Schedule:
        return replace(self.manifest.schedule(done_only=False), segments=list(segments))

    def rollback_points(self, position: int, diverged: bool) -> list[int]:
        return rollback_epochs(self.folder, self.manifest.steps_per_epoch, position, diverged)

    def branch_off(self, epoch: int, reached_epoch: int, followed: list[Segment]) -> dict[str, Any]:
        """Keep the path past `epoch` as a branch (its metrics and schedule) and start a new
        path there: metrics, history, marks and best go back to `epoch`."""
        m = self.manifest
        metrics_file, schedule_file = branch_files(m.path)
        (self.folder / metrics_file).parent.mkdir(exist_ok=True)
        dropped = self.metrics_log.truncate(epoch)
        write_rows(self.folder / metrics_file, self.metrics_log.columns, dropped)
        self.schedule(followed).dump(self.folder / schedule_file)
        branch = {
            "path": m.path,
            "fork_epoch": epoch,
            "epochs": reached_epoch,
            "metrics": metrics_file,
            "schedule": schedule_file,
        }
        m.branches.append(branch)
        m.path += 1
        m.policy_marks = [mark for mark in m.policy_marks if mark["epoch"] <= epoch]
        m.diverged = None
        self.history.truncate(epoch)
        m.best = self._best_in_metrics_file()
        if self.tensorboard is not None:  # the new path is a new TensorBoard run
            self.tensorboard.close()
            self.tensorboard = TensorBoardLogger(self.folder, 0, m.path)
        return branch

    def _best_in_metrics_file(self) -> dict[str, Any] | None:
        """The best monitored value over metrics.csv (every epoch; the history is thinned)."""
        m, best = self.manifest, None
        best_value = 0.0
        for row in read_rows(self.metrics_log.path):
            text = row.get(m.monitor) or ""
            try:
                value = float(text)
            except ValueError:
                continue
            if value == value and (best is None or better(value, best_value, m.monitor_mode)):
                best_value = value
                best = {"metric": m.monitor, "value": value, "epoch": int(row["global_epoch"])}
        return best

    def move_to(self, checkpoint: str, global_step: int, global_epoch: int) -> None:
        """Stand at a kept checkpoint. Checkpoints past it go: left behind, pruning would
        count them as the newest and a later rollback could load the wrong path's weights.
        The branch's schedule replays that path exactly, should anyone want them back."""
        m = self.manifest
        m.checkpoint = checkpoint
        m.global_step, m.global_epoch = global_step, global_epoch
        self.write_manifest()
        for path in checkpoint_files(self.folder):
            if (checkpoint_step(path) or 0) > global_step:
                path.unlink()
