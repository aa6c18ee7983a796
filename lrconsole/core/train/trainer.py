"""A trainer: one session folder, its task, engine and handlers, ready to run.

trainer = Trainer.open(Path("sessions/demo"), schedule=Schedule.load("plan.yaml"))
trainer.engine.run()
trainer.close()
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch

from lrconsole.core.plan.plan import Plan
from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import ScheduleError, Segment
from lrconsole.core.session.discover import rollback_epochs
from lrconsole.core.session.layout import (
    BRANCHES,
    LAUNCH_FILES,
    LOCK,
    MANIFEST,
    checkpoint_files,
    checkpoint_name,
    checkpoint_step,
)
from lrconsole.core.session.manifest import Manifest, SessionError
from lrconsole.core.session.metrics import MetricsLog, write_rows
from lrconsole.core.session.store import (
    SessionLock,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from lrconsole.core.tasks.task import Task, TaskError, load_task
from lrconsole.core.train import events as ev
from lrconsole.core.train.engine import Engine
from lrconsole.core.train.handlers import Checkpointer, MetricsRecorder, TensorBoardLogger
from lrconsole.core.train.policies import Policies
from lrconsole.core.train.rng import seed_everything


class Trainer:
    def __init__(self, folder: Path, manifest: Manifest, task: Task, lock: SessionLock) -> None:
        self.folder = folder
        self.manifest = manifest
        self.task = task
        self.lock = lock
        self.plan = Plan(manifest.segments, manifest.steps_per_epoch)
        self.engine = Engine(task, self.plan, manifest.optimizer)
        self.metrics_log = MetricsLog(folder, manifest.metrics)
        self.history: list[dict[str, Any]] = []
        self._manifest_lock = threading.Lock()
        self.tensorboard: TensorBoardLogger | None = None
        self.checkpointer: Checkpointer | None = None

    @classmethod
    def open(
        cls,
        folder: Path,
        *,
        schedule: Schedule | None = None,
        checkpoint_interval: float = 2.0,
        tensorboard: bool = True,
        task: Task | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> Trainer:
        """Create the session from `schedule`, or continue it (with `schedule` as its plan)."""
        exists = (folder / MANIFEST).is_file()
        if not exists and schedule is None:
            raise SessionError(f"no session at {folder}: give a schedule to create one")
        if not exists and folder.exists() and any(_foreign(folder)):
            raise SessionError(f"{folder} exists and is not a session; refusing to write into it")
        manifest = Manifest.read(folder) if exists else None
        folder.mkdir(parents=True, exist_ok=True)
        lock = SessionLock(folder)
        lock.acquire()
        try:
            trainer = cls._build(folder, manifest, schedule, lock, task, optimizer)
            trainer._start(checkpoint_interval, tensorboard)
        except BaseException:
            lock.release()
            if not exists:  # leave no half-made session behind
                (folder / LOCK).unlink(missing_ok=True)
                if not any(folder.iterdir()):
                    folder.rmdir()
            raise
        return trainer

    @classmethod
    def rollback_to(cls, folder: Path, epoch: int, *, tensorboard: bool = True) -> ev.RolledBack:
        """Roll a session no process is training back to `epoch`, and close it.

        The current checkpoint is never loaded: a corrupt newest checkpoint does not block
        going back to an intact older one (and stays where it is, untouched). Everything is
        checked, and the checkpoint at `epoch` loaded, before anything is written.
        """
        manifest = Manifest.read(folder)
        lock = SessionLock(folder)
        lock.acquire()
        try:
            trainer = cls._build(folder, manifest, None, lock, load=False)
            state = trainer._rollback_state(epoch)
            trainer._start(2.0, tensorboard)
        except BaseException:
            lock.release()
            raise
        try:
            event = trainer.rollback(epoch, state)
        except BaseException:
            trainer.close(state="stopped", save=False)
            raise
        trainer.close(state="stopped")
        return event

    @classmethod
    def _build(
        cls,
        folder: Path,
        manifest: Manifest | None,
        schedule: Schedule | None,
        lock: SessionLock,
        given_task: Task | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        load: bool = True,
    ) -> Trainer:
        """`load` False: leave the current checkpoint unread (`rollback_to` loads another);
        the engine then stands at the manifest's position with untrained weights."""
        source = manifest.schedule(done_only=False) if manifest else schedule
        assert source is not None
        threads = source.threads
        if given_task is not None:  # a user's own loop: its objects are already built
            task = given_task
        else:
            seed_everything(source.seed)
            task = load_task(source.task)
            # The training RNG starts from the seed, whatever the task drew.
            seed_everything(source.seed)
        threads = threads or task.threads
        if threads:
            torch.set_num_threads(threads)
        try:
            spe = len(task.train_loader)  # type: ignore[arg-type]
        except TypeError:
            raise TaskError(
                "the task's train_loader must have a length (batches per epoch)"
            ) from None
        if spe < 1:
            raise TaskError("the task's train_loader is empty")
        if manifest is None:
            assert schedule is not None
            _check_spe(schedule, spe)
            names = task.metric_names()
            monitor = task.monitored()
            manifest = Manifest(
                name=folder.name,
                task=schedule.task,
                seed=schedule.seed,
                optimizer=schedule.optimizer
                if schedule.optimizer.name != "sgd" or schedule.optimizer.kwargs
                else task.optimizer_spec(),
                steps_per_epoch=spe,
                metrics=names,
                monitor=monitor,
                monitor_mode="max" if monitor.endswith(("acc", "accuracy")) else "min",
                threads=threads,
                spike_factor=schedule.spike_factor,
                segments=list(schedule.segments),
                torch_version=str(torch.__version__),
            )
        else:
            if manifest.steps_per_epoch != spe:
                raise SessionError(
                    f"{folder / MANIFEST}: the task now has {spe} batches per epoch, "
                    f"the session was trained with {manifest.steps_per_epoch}"
                )
            if schedule is not None:
                _check_continues(manifest, schedule, folder)
                manifest.segments = list(schedule.segments)
        trainer = cls(folder, manifest, task, lock)
        trainer.engine.spike_factor = manifest.spike_factor
        if optimizer is not None:  # the user's own optimizer: keep it, never rebuild it
            trainer.engine.optimizer = optimizer
            trainer.engine.owns_optimizer = False
        engine = trainer.engine
        if not load:
            engine.global_step = engine._claimed = manifest.global_step
            engine.global_epoch = manifest.global_epoch
            engine.lr = engine.planned_lr(manifest.global_step)
        elif manifest.checkpoint:
            state = load_checkpoint(folder / manifest.checkpoint)
            engine.load_state_dict(state)
        elif manifest.global_step:
            raise SessionError(f"{folder / MANIFEST}: position without a checkpoint")
        return trainer

    def _start(self, checkpoint_interval: float, tensorboard: bool) -> None:
        engine = self.engine
        self.history = self.metrics_log.open(keep_epochs=engine.global_epoch)
        self.history = [_row_to_event(r, self.manifest.metrics) for r in self.history]
        engine.on(ev.EpochEnd, MetricsRecorder(self).on_epoch)
        if tensorboard:
            self.tensorboard = TensorBoardLogger(
                self.folder, engine.global_epoch, self.manifest.path
            )
            engine.on(ev.EpochEnd, self._log_tensorboard)
        engine.on(ev.EpochEnd, Policies(self).on_epoch)
        # Marks and a best epoch past the checkpoint belong to epochs that are trained again.
        m = self.manifest
        m.policy_marks = [mark for mark in m.policy_marks if mark["epoch"] <= engine.global_epoch]
        if m.best is not None and int(m.best.get("epoch", 0)) > engine.global_epoch:
            m.best = best_of(self.history, m.monitor, m.monitor_mode)
        engine.on(ev.PolicyFired, self._record_policy)
        engine.on(ev.Error, self._record_divergence)
        checkpointer = Checkpointer(self, checkpoint_interval)
        engine.on(ev.EpochEnd, checkpointer.on_epoch)
        engine.on(ev.SegmentEnd, checkpointer.on_segment_end)
        engine.on(ev.Paused, checkpointer.on_paused)
        self.checkpointer = checkpointer
        engine.on(ev.PlanChanged, lambda _: self.write_manifest())
        engine.on(ev.Paused, lambda _: self._set_state("paused"))
        engine.on(ev.Resumed, lambda _: self._set_state("running"))
        self.manifest.state = "running"
        self.write_manifest()

    def _log_tensorboard(self, event: ev.EpochEnd) -> None:
        if self.tensorboard is not None:  # replaced by a rollback: look it up each time
            self.tensorboard.on_epoch(event)

    def _record_policy(self, event: ev.PolicyFired) -> None:
        mark = {"epoch": event.global_epoch, "policy": event.policy, "lr": event.lr}
        if mark not in self.manifest.policy_marks:
            self.manifest.policy_marks.append(mark)
            self.write_manifest()

    def _record_divergence(self, event: ev.Error) -> None:
        """Keep in the manifest that the run diverged past its checkpoint: a rollback to
        that checkpoint then still has a diverged path to abandon, after a restart too."""
        at = self.engine.diverged_at
        if at is None:
            return
        mark = {"step": at[0], "epoch": at[1], "lr": self.engine.lr}
        if self.manifest.diverged != mark:
            self.manifest.diverged = mark
            self.write_manifest()

    # -- persistence ------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        if self.manifest.state != state:
            self.manifest.state = state
            self.write_manifest()

    def write_manifest(self) -> None:
        with self._manifest_lock:
            with self.engine._lock:
                self.manifest.segments = list(self.plan.segments)
            self.manifest.write(self.folder)

    def save_checkpoint(self) -> str:
        engine = self.engine
        state = engine.state_dict()
        self.metrics_log.sync()
        if self.tensorboard is not None:
            self.tensorboard.flush()
        rel = save_checkpoint(self.folder, state)
        m = self.manifest
        m.checkpoint = rel
        m.global_step = int(state["global_step"])
        m.global_epoch = int(state["global_epoch"])
        m.state = "paused" if engine.paused else "running"
        m.diverged = None  # a good checkpoint past any divergence: the path goes on from here
        self.write_manifest()
        prune_checkpoints(self.folder, self.plan, m.keep_checkpoints, [rel])
        return rel

    def close(self, state: str = "stopped", save: bool = True) -> None:
        """Save where we are (unless training just failed) and release the session."""
        try:
            if save and self.checkpointer is not None:
                self.checkpointer.save()
            if self.engine.diverged:
                # Nothing is checkpointed after a divergence: the epochs since the last good
                # checkpoint (the bad one too) are trained again, so they are not written.
                self.metrics_log.discard_pending()
                if self.tensorboard is not None:
                    self.tensorboard.discard()
            self.manifest.state = state
            self.write_manifest()
        finally:
            if self.tensorboard is not None:
                self.tensorboard.close()
            self.metrics_log.close()
            self.lock.release()

    # -- rollback ----------------------------------------------------------------------
    def rollback_points(self) -> list[int]:
        """Epochs with a kept checkpoint to go back to, on the current path."""
        diverged = self._diverged_past() is not None
        spe = self.manifest.steps_per_epoch
        return rollback_epochs(self.folder, spe, self.engine.global_step, diverged)

    def _rollback_state(self, epoch: int) -> dict[str, Any]:
        """Check that going back to `epoch` means something; its checkpoint's state."""
        self._check_rollback(epoch)
        return load_checkpoint(self.folder / checkpoint_name(epoch * self.manifest.steps_per_epoch))

    def _check_rollback(self, epoch: int) -> None:
        points = self.rollback_points()
        if epoch not in points:
            if epoch * self.manifest.steps_per_epoch == self.engine.global_step:
                raise SessionError(f"already at epoch {epoch}: nothing to roll back")
            kept = ", ".join(map(str, points)) or "none"
            raise SessionError(f"no checkpoint at epoch {epoch}; kept epochs: {kept}")

    def _diverged_past(self) -> tuple[int, int] | None:
        """(step, epoch) of a diverged step past the engine's position, if any: in the
        engine when it diverged here, else in the manifest when an earlier run did."""
        engine, mark = self.engine, self.manifest.diverged
        if engine.diverged_at is not None:
            return engine.diverged_at
        if mark is not None and int(mark.get("step", 0)) > engine.global_step:
            return int(mark["step"]), int(mark.get("epoch", 0))
        return None

    def rollback(self, epoch: int, state: dict[str, Any] | None = None) -> ev.RolledBack:
        """Go back to the checkpoint at `epoch`; the abandoned path is kept as a branch.

        Going back to where the session stands is refused, unless it diverged past there.
        `state`: the checkpoint at `epoch`, when the caller loaded it already.
        Call on the training thread (`engine.submit`) or while nothing trains.
        """
        engine, m = self.engine, self.manifest
        if state is None:
            state = self._rollback_state(epoch)
        else:
            self._check_rollback(epoch)
        step = epoch * m.steps_per_epoch
        # How far the abandoned path got: a diverged step past the position counts.
        reached_step, reached_epoch = engine.global_step, engine.global_epoch
        diverged = self._diverged_past()
        if diverged is not None:
            reached_step = max(reached_step, diverged[0])
            reached_epoch = max(reached_epoch, diverged[1])
        lr_at_fork = engine.lr
        # The abandoned path: its metrics after the fork and the schedule it followed.
        branch_dir = self.folder / BRANCHES
        branch_dir.mkdir(exist_ok=True)
        name = f"path-{m.path}"
        dropped = self.metrics_log.truncate(epoch)
        write_rows(branch_dir / f"{name}.csv", self.metrics_log.columns, dropped)
        with engine._lock:
            followed = self._schedule(self.plan.done(reached_step))
        followed.dump(branch_dir / f"{name}.yaml")
        branch = {
            "path": m.path,
            "fork_epoch": epoch,
            "epochs": reached_epoch,
            "metrics": f"{BRANCHES}/{name}.csv",
            "schedule": f"{BRANCHES}/{name}.yaml",
        }
        m.branches.append(branch)
        m.path += 1
        m.policy_marks = [mark for mark in m.policy_marks if mark["epoch"] <= epoch]
        m.diverged = None
        self.history = self.history[:epoch]
        m.best = best_of(self.history, m.monitor, m.monitor_mode)
        with engine._lock:
            self.plan.reset(self.plan.done(step))
            engine.load_state_dict(state)
            engine.diverged, engine.diverged_at = False, None
            engine._pause_reason = None
            engine._poke()
        if self.tensorboard is not None:  # the new path is a new TensorBoard run
            self.tensorboard.close()
            self.tensorboard = TensorBoardLogger(self.folder, 0, m.path)
        m.checkpoint = checkpoint_name(step)
        m.global_step, m.global_epoch = step, epoch
        self.write_manifest()
        # The abandoned path's checkpoints go: left behind, pruning would count them as the
        # newest and a later rollback could load the wrong path's weights. The branch's
        # schedule replays it exactly, should anyone want those weights back.
        for path in checkpoint_files(self.folder):
            if (checkpoint_step(path) or 0) > step:
                path.unlink()
        if self.checkpointer is not None:
            self.checkpointer.last_step = step
        event = ev.RolledBack(epoch, step, branch, lr_at_fork)
        engine.emit(event)
        engine.emit_plan()
        return event

    def schedule(self, done_only: bool = True) -> Schedule:
        with self.engine._lock:
            segments = self.plan.done(self.engine.global_step) if done_only else self.plan.segments
            return self._schedule(segments)

    def _schedule(self, segments: list[Segment]) -> Schedule:
        m = self.manifest
        return Schedule(
            list(segments),
            m.steps_per_epoch,
            m.task,
            m.seed,
            m.threads,
            m.optimizer,
            m.spike_factor,
        )


def _foreign(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name not in LAUNCH_FILES]


def best_of(history: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any] | None:
    """The best value of `metric` over `history` rows, as the manifest stores it."""
    rows = [r for r in history if r["metrics"].get(metric) is not None]
    if not rows:
        return None
    pick = min if mode == "min" else max
    row = pick(rows, key=lambda r: r["metrics"][metric])
    return {"metric": metric, "value": row["metrics"][metric], "epoch": row["global_epoch"]}


def _check_spe(schedule: Schedule, spe: int) -> None:
    if schedule.steps_per_epoch is not None and schedule.steps_per_epoch != spe:
        raise ScheduleError(
            f"the schedule was written for {schedule.steps_per_epoch} batches per epoch, "
            f"the task has {spe}"
        )


def _check_continues(manifest: Manifest, schedule: Schedule, folder: Path) -> None:
    """A schedule may extend a session's path, never rewrite what was trained."""
    _check_spe(schedule, manifest.steps_per_epoch)
    for field in ("task", "seed", "optimizer"):
        if getattr(schedule, field) != getattr(manifest, field):
            raise ScheduleError(
                f"the schedule's {field} differs from session {folder.name!r}'s; "
                "start a new session to train it"
            )
    done = Plan(manifest.segments, manifest.steps_per_epoch).done(manifest.global_step)
    proposed = Plan(schedule.segments, manifest.steps_per_epoch).done(manifest.global_step)
    if done != proposed:
        raise ScheduleError(
            f"the schedule does not follow the {manifest.global_epoch} epochs session "
            f"{folder.name!r} already trained; see `lrconsole export {folder.name}`"
        )


def _row_to_event(row: dict[str, Any], metrics: list[str]) -> dict[str, Any]:
    return ev.EpochEnd(
        row["global_epoch"],
        row["global_step"],
        row["segment"],
        row["lr"],
        {m: row[m] for m in metrics if m in row},
        row.get("time", 0.0),
    ).to_dict()
