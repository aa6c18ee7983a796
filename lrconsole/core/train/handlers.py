"""Handlers on engine events: the metrics log and TensorBoard, the manifest, checkpoints.

None of this lives in the training loop; the engine only emits events. Each handler takes
the session and the engine, never the trainer that wires them.
"""

from __future__ import annotations

import math
import time
from typing import Any

from lrconsole.core.session.layout import checkpoint_name
from lrconsole.core.session.session import Session
from lrconsole.core.session.store import save_checkpoint
from lrconsole.core.session.writer import BackgroundWriter, Snapshot
from lrconsole.core.train import events as ev
from lrconsole.core.train.engine import Engine


def record_epochs(session: Session, engine: Engine) -> None:
    """Every epoch into metrics.csv, the history and TensorBoard."""

    def on_epoch(event: ev.EpochEnd) -> None:
        row: dict[str, Any] = {
            "global_epoch": event.global_epoch,
            "global_step": event.global_step,
            "segment": event.segment,
            "lr": event.lr,
            **event.metrics,
            "time": round(event.time, 3),
        }
        session.record_epoch(row, event.to_dict())

    engine.on(ev.EpochEnd, on_epoch)


def record_state(session: Session, engine: Engine, plan_every: float = 0.5) -> None:
    """Keep the manifest in step: the plan, paused or running, policy marks, divergence.

    While training, plan changes are written at most every `plan_every` seconds (at the
    first epoch end after that): a client that queues or sets the LR in a tight loop
    must not turn every step into a manifest write. A paused run writes at once.
    """
    written, dirty = [0.0], [False]

    def write_plan(_: ev.Event) -> None:
        now = time.monotonic()
        if engine.paused is not None or now - written[0] >= plan_every:
            session.write_manifest()
            written[0], dirty[0] = now, False
        else:
            dirty[0] = True

    def flush(event: ev.Event) -> None:
        if dirty[0]:
            write_plan(event)

    engine.on(ev.PlanChanged, write_plan)
    engine.on(ev.EpochEnd, flush)
    engine.on(ev.Paused, lambda _: session.set_state("paused"))
    engine.on(ev.Resumed, lambda _: session.set_state("running"))

    def on_policy(event: ev.PolicyFired) -> None:
        mark = {"epoch": event.global_epoch, "policy": event.policy, "lr": event.lr}
        if mark not in session.manifest.policy_marks:
            session.manifest.policy_marks.append(mark)
            session.write_manifest()

    def on_error(event: ev.Error) -> None:
        # The run diverged past its checkpoint: a rollback to that checkpoint then still
        # has a diverged path to abandon, after a restart too.
        if engine.diverged_at is not None:
            step, epoch = engine.diverged_at
            session.record("diverged", {"step": step, "epoch": epoch, "lr": engine.lr})

    engine.on(ev.PolicyFired, on_policy)
    engine.on(ev.Error, on_error)


class Checkpointer:
    """Checkpoints at epoch ends once `interval` seconds have passed, and at every segment
    end and pause, without making training wait for the disk.

    The training thread only copies the state into host memory (session.writer); a
    background thread writes it and then moves the manifest to it, so the manifest never
    names a file not yet whole. The interval adapts to the cost: at least `every` (the
    `--checkpoint-every` seconds), `BUDGET` times the last save's blocking time (so the
    training thread waits on checkpoints for about 2% of the time at most) and
    `WRITE_BUDGET` times the last background write (which takes a core and the disk from
    training while it runs). `interval` 0: a checkpoint at every epoch end, whatever it costs.
    """

    BUDGET = 50
    WRITE_BUDGET = 10
    BIG = 256 << 20  # state bytes from which the copy buffers are made in the background

    def __init__(self, session: Session, engine: Engine, interval: float = 2.0) -> None:
        self.session = session
        self.engine = engine
        self.every = self.interval = interval
        self.last_time = self.started = time.monotonic()
        self.last_step = engine.global_step
        self.blocked_s = 0.0  # the training thread's time in save(), in all
        self.write_s = 0.0  # the last background write's time (set by the writer thread)
        self.snapshot = Snapshot()
        self.writer = BackgroundWriter()
        self.background = True  # False: all on the training thread, as before (benchmarks)
        self._pending: ev.CheckpointSaved | None = None  # announced once written
        engine.on(ev.EpochEnd, self.on_epoch)
        engine.on(ev.SegmentEnd, lambda _: self.save())
        engine.on(ev.Paused, lambda _: self.save(wait=True))

    def on_epoch(self, event: ev.EpochEnd) -> None:
        if self.writer.busy:
            return  # the last write is still going: try at the next epoch end
        if self._pending is not None:
            self.finish()
        if time.monotonic() - self.last_time >= self.interval:
            self.save(ready_only=True)

    def save(self, force: bool = False, wait: bool = False, ready_only: bool = False) -> None:
        """`ready_only`: a big state's first time makes the copy buffers in the background
        instead (seconds of page faults), and the checkpoint comes at a later epoch end."""
        engine = self.engine
        engine.settle_loss()  # a bad step not yet judged must not be checkpointed
        again = engine.global_step == self.last_step and not force
        if engine.diverged or again or (engine.batch and not engine.mid_epoch_checkpoints):
            if wait:
                self.finish()
            return
        began = time.perf_counter()
        self.finish()  # at most one write in flight; its buffers are reused next
        step, epoch = engine.global_step, engine.global_epoch
        state = engine.state_dict()
        if self.background and ready_only and not self.snapshot.fits(state):
            specs = self.snapshot.specs(state)
            if sum(math.prod(s) * d.itemsize for s, d, _ in specs) >= self.BIG:
                self.writer.start(lambda: self.snapshot.allocate(specs))
                return
        if self.background:
            state = self.snapshot.take(state)
        self.session.sync_logs()
        if self.background:
            blocking = time.perf_counter() - began
            self.blocked_s += blocking
            if self.every > 0:
                cost = max(self.BUDGET * blocking, self.WRITE_BUDGET * self.write_s)
                self.interval = max(self.every, cost)
            self.writer.start(lambda: self._write(state, step, epoch, blocking))
        else:
            self._write(state, step, epoch, 0.0)
            self.blocked_s += time.perf_counter() - began
        self.last_time, self.last_step = time.monotonic(), step
        self._pending = ev.CheckpointSaved(checkpoint_name(step), epoch, step)
        if wait:
            self.finish()

    def _write(self, state: dict[str, Any], step: int, epoch: int, blocking: float) -> None:
        """On the writer's thread: the file, then the manifest that names it."""
        session, engine = self.session, self.engine
        began, wall = time.perf_counter(), time.time()
        rel = save_checkpoint(session.folder, state)
        written = time.perf_counter()
        self.write_s = written - began
        elapsed = max(time.monotonic() - self.started, 1e-9)
        stats = {
            "interval_s": round(self.interval, 6),
            "bytes": (session.folder / rel).stat().st_size,
            "blocking_s": round(blocking, 6),
            "write_s": round(written - began, 3),
            "share": round(self.blocked_s / elapsed, 4),
        }
        at = engine.diverged_at  # diverged after the state was taken: that mark stays
        since = at is not None and at[0] > step
        session.commit_checkpoint(rel, step, epoch, since, wall - 1e-3, **stats)

    def finish(self) -> None:
        """Wait for the write in flight and announce it."""
        self.writer.wait()
        event, self._pending = self._pending, None
        if event is not None:
            self.engine.emit(event)
