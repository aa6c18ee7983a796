"""A trainer: one session, its task and engine, and the handlers that join them. Wiring only.

trainer = Trainer.open(Path("sessions/demo"), schedule=Schedule.load("plan.yaml"))
trainer.engine.run()
trainer.close()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lrconsole.core.plan.plan import Plan
from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.session.layout import LOCK, MANIFEST, checkpoint_name
from lrconsole.core.session.manifest import Manifest, SessionError
from lrconsole.core.session.metrics import GRAD_COLUMNS
from lrconsole.core.session.pins import pinned_epochs, set_pin
from lrconsole.core.session.session import Session
from lrconsole.core.session.store import SessionLock, load_checkpoint
from lrconsole.core.tasks.task import OWN_LOOP, Task
from lrconsole.core.train import build
from lrconsole.core.train import events as ev
from lrconsole.core.train.engine import Engine
from lrconsole.core.train.handlers import Checkpointer, record_epochs, record_state
from lrconsole.core.train.policies import Policies


class Trainer:
    def __init__(self, session: Session, task: Task) -> None:
        self.session = session
        self.task = task
        m = session.manifest
        self.plan = Plan(m.segments, m.steps_per_epoch)
        self.engine = Engine(task, self.plan, m.optimizer)
        self.engine.guard.spike_factor = m.spike_factor
        self.engine.grads.guard.configure(m.grad_guard)
        session.live_segments = self.engine.segments
        self.checkpointer: Checkpointer | None = None

    @property
    def folder(self) -> Path:
        return self.session.folder

    @property
    def manifest(self) -> Manifest:
        return self.session.manifest

    @property
    def history(self) -> list[dict[str, Any]]:
        """The epoch rows held in memory (a copy): every epoch of a short run, a long
        run's thinned to a bounded number."""
        return self.session.history.rows()

    @property
    def closed(self) -> bool:
        return self.session.closed

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
        grad_norm: bool | None = None,
        grad_norm_layers: bool = False,
    ) -> Trainer:
        """Create the session from `schedule`, or continue it (with `schedule` as its plan).

        `grad_norm`: gradient diagnostics (metrics.csv's grad_norm columns, the gradient
        guard); None: on for the built-in loop, off for a user's own (`optimizer` given:
        its steps give no norm). `grad_norm_layers`: each layer's norm to TensorBoard too.
        """
        exists = (folder / MANIFEST).is_file()
        if not exists and schedule is None:
            raise SessionError(f"no session at {folder}: give a schedule to create one")
        if not exists and folder.exists() and any(build.foreign_files(folder)):
            raise SessionError(f"{folder} exists and is not a session; refusing to write into it")
        manifest = Manifest.read(folder) if exists else None
        folder.mkdir(parents=True, exist_ok=True)
        lock = SessionLock(folder)
        lock.acquire()
        try:
            trainer = cls._build(folder, manifest, schedule, lock, task, optimizer)
            on = grad_norm if grad_norm is not None else optimizer is None
            trainer.engine.grads.set_enabled(on)
            trainer.engine.grads.layers = on and grad_norm_layers
            trainer.wire_handlers(checkpoint_interval, tensorboard)
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
            state = trainer.checkpoint_at(epoch)
            trainer.wire_handlers(2.0, tensorboard)
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
        task, threads, spe = build.prepare_task(source, given_task)
        if manifest is None:
            assert schedule is not None
            manifest = build.new_manifest(folder, schedule, task, threads, spe)
        else:
            manifest = build.continue_manifest(folder, manifest, schedule, spe)
        trainer = cls(Session(folder, manifest, lock), task)
        engine = trainer.engine
        if optimizer is not None:  # the user's own optimizer: keep it, never rebuild it
            engine.optimizer = optimizer
            engine.owns_optimizer = False
        if not load:
            engine.place_at(manifest.global_step, manifest.global_epoch)
        elif manifest.checkpoint:
            engine.load_state_dict(load_checkpoint(folder / manifest.checkpoint))
        elif manifest.global_step:
            raise SessionError(f"{folder / MANIFEST}: position without a checkpoint")
        return trainer

    def wire_handlers(self, checkpoint_interval: float, tensorboard: bool) -> None:
        session, engine = self.session, self.engine
        if engine.grads.stats is not None:
            session.metrics_log.add_columns(GRAD_COLUMNS)
        rows = session.open_files(engine.global_epoch, tensorboard)
        history = [build.history_row(r, session.manifest.metrics) for r in rows]
        session.set_history(history, engine.global_epoch)
        record_epochs(session, engine)
        engine.on(ev.EpochEnd, Policies(session, engine, self.rollback).on_epoch)
        record_state(session, engine)
        self.checkpointer = Checkpointer(session, engine, checkpoint_interval)
        self.checkpointer.overlap = not session.manifest.task.spec.startswith(OWN_LOOP)
        session.manifest.state = "running"
        session.write_manifest()

    # -- persistence ------------------------------------------------------------------
    def write_manifest(self) -> None:
        self.session.write_manifest()

    def close(self, state: str = "stopped", save: bool = True) -> None:
        """Save where we are (unless training just failed) and release the session."""
        try:
            if self.checkpointer is not None:  # and the write in flight lands
                self.checkpointer.save(wait=True) if save else self.checkpointer.finish()
            if self.engine.diverged:
                # Nothing is checkpointed after a divergence: the epochs since the last good
                # checkpoint (the bad one too) are trained again, so they are not written.
                self.session.discard_unsaved()
        finally:
            self.session.close(state)

    def schedule(self, done_only: bool = True) -> Schedule:
        segments = self.engine.done_segments() if done_only else self.engine.segments()
        return self.session.schedule(segments)

    # -- rollback ----------------------------------------------------------------------
    def rollback_points(self) -> list[int]:
        """Epochs with a kept checkpoint to go back to, on the current path."""
        diverged = self._diverged_past() is not None
        return self.session.rollback_points(self.engine.global_step, diverged)

    def pin(self, epoch: int, on: bool = True) -> dict[str, Any]:
        """Pin (or unpin) the kept checkpoint at `epoch`: pruning keeps it for good. On
        the training thread (engine.submit), as every manifest write."""
        with self.session.manifest_lock:
            pinned = set_pin(self.folder, self.manifest, epoch, on)
            self.session.write_manifest()
        return {"pinned": pinned}

    def pinned(self) -> list[int]:
        return pinned_epochs(self.manifest)

    def checkpoint_at(self, epoch: int) -> dict[str, Any]:
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
        engine = self.engine
        if self.checkpointer is not None:  # a write in flight would land on the old path
            self.checkpointer.finish()
        if state is None:
            state = self.checkpoint_at(epoch)
        else:
            self._check_rollback(epoch)
        step = epoch * self.manifest.steps_per_epoch
        # How far the abandoned path got: a diverged step past the position counts.
        reached_step, reached_epoch = engine.global_step, engine.global_epoch
        diverged = self._diverged_past()
        if diverged is not None:
            reached_step = max(reached_step, diverged[0])
            reached_epoch = max(reached_epoch, diverged[1])
        lr_at_fork = engine.lr
        branch = self.session.branch_off(epoch, reached_epoch, engine.done_segments(reached_step))
        engine.go_back(state)
        self.session.move_to(checkpoint_name(step), step, epoch)
        if self.checkpointer is not None:
            self.checkpointer.last_step = step
        event = ev.RolledBack(epoch, step, branch, lr_at_fork)
        engine.emit(event)
        engine.emit_plan()
        return event
