"""Handlers on engine events: the metrics log and TensorBoard, the manifest, checkpoints.

None of this lives in the training loop; the engine only emits events. Each handler takes
the session and the engine, never the trainer that wires them.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from lrconsole.core.session.layout import checkpoint_name
from lrconsole.core.session.session import Session
from lrconsole.core.session.store import save_checkpoint
from lrconsole.core.session.writer import (
    STEP_GATE,
    BackgroundWriter,
    Snapshot,
    run_lowered,
    state_bytes,
)
from lrconsole.core.train import events as ev
from lrconsole.core.train.engine import Engine
from lrconsole.core.train.gradnorm import layer_norms


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
        if event.grad_norm is not None:  # its columns exist only with diagnostics on
            row["grad_norm"], row["grad_norm_max"] = event.grad_norm, event.grad_norm_max
        session.record_epoch(row, event.to_dict())
        if session.tensorboard is not None and event.grad_norm is not None:
            scalars = {"grad/norm": event.grad_norm, "grad/norm_max": event.grad_norm_max}
            if engine.grads.layers:  # the last step's grads, read now: once an epoch
                named = layer_norms(engine.model.named_parameters()).items()
                scalars.update((f"grad/layer/{name}", value) for name, value in named)
            session.tensorboard.add_scalars(event.global_epoch, scalars)

    engine.on(ev.EpochEnd, on_epoch)


def record_state(session: Session, engine: Engine, plan_every: float = 0.5) -> None:
    """Keep the manifest in step: the plan, paused or running, policy marks, divergence.

    While training, plan changes are written at most every `plan_every` seconds (at the
    first epoch end after that), and at most every BUDGET times the last write's time: a
    client that queues or sets the LR in a tight loop must not turn every step into a
    manifest write, and a plan of 10,000 segments (a second of YAML) must not turn
    training into manifest writing. A paused run writes at once.
    """
    written, dirty, cost = [0.0], [False], [0.0]

    def write_plan(_: ev.Event) -> None:
        now = time.monotonic()
        every = max(plan_every, Checkpointer.BUDGET * cost[0])
        if engine.paused is not None or now - written[0] >= every:
            session.write_manifest()
            written[0], dirty[0] = time.monotonic(), False
            cost[0] = written[0] - now
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

    The training thread only copies the state into host memory (session.writer; a big
    state's parameters and optimizer state are copied beside the next step's forward and
    backward, writer.StepGate); a
    background thread writes it and then moves the manifest to it, so the manifest never
    names a file not yet whole. The interval adapts to the cost: at least `every` (the
    `--checkpoint-every` seconds), `BUDGET` times the last save's blocking time (so the
    training thread waits on checkpoints for about 2% of the time at most) and
    `WRITE_BUDGET` times the last background write's wall time (it takes CPU, memory
    bandwidth and the kernel's writeback from training while it runs: at 100M parameters on
    2 CPU cores, the epochs it overlapped ran about 1.6x slower) and `BUDGET` times the
    last manifest commit (YAML, which holds the GIL: a second for a plan of 10,000
    segments). Segment ends checkpoint too, unless
    the last checkpoint is more recent than that cost allows (one-epoch segments in a long
    plan would otherwise write the manifest every epoch). `interval` 0: a checkpoint at
    every epoch end and segment end, whatever it costs.
    """

    BUDGET = 50
    WRITE_BUDGET = 25
    BIG = 256 << 20  # state bytes from which the copy buffers are made in the background
    OVERLAP_MIN = 64 << 20  # state bytes from which copies overlap the next step
    COSTLY_COMMIT = 0.01  # CPU seconds of a manifest commit from which segment ends wait

    def __init__(self, session: Session, engine: Engine, interval: float = 2.0) -> None:
        self.session = session
        self.engine = engine
        self.every = self.interval = interval
        self.last_time = self.started = time.monotonic()
        self.last_step = engine.global_step
        self.blocked_s = 0.0  # the training thread's time in save(), in all
        self.write_s = 0.0  # the last background write's time (set by the writer thread)
        self.commit_s = 0.0  # the last manifest commit's CPU time (set by the writer thread)
        self.cost_interval = 0.0  # the interval the cost alone asks for (every ignored)
        self.snapshot = Snapshot()
        self.writer = BackgroundWriter()
        self.background = True  # False: all on the training thread, as before (benchmarks)
        # The built-in loop's parameters and optimizer state change only in optimizer steps:
        # their copy overlaps the next step's forward and backward (writer.StepGate). A
        # user's own loop may write them elsewhere, so it copies them all at once.
        self.overlap = False
        self.gate_wait_s = 0.0  # the last checkpoint's wait at the step gate
        self._gate_mark = 0.0
        self._pending: ev.CheckpointSaved | None = None  # announced once written
        engine.on(ev.EpochEnd, self.on_epoch)
        engine.on(ev.SegmentEnd, self.on_segment_end)
        engine.on(ev.Paused, lambda _: self.save(wait=True))

    def on_epoch(self, event: ev.EpochEnd | None) -> None:
        if self.writer.busy and self.every > 0:
            return  # the last write is still going: try at the next epoch end
        if self._pending is not None:
            self.finish()
        if time.monotonic() - self.last_time >= self.interval:
            self.save(ready_only=True)

    def on_segment_end(self, event: ev.SegmentEnd) -> None:
        if event.cut and self.every > 0:
            # An edit cut it (set LR now, end now): the plan records the cut, and a client
            # setting the LR in a loop must not turn each call into a checkpoint.
            self.on_epoch(None)
            return
        # A short plan's manifest costs a millisecond: every segment end is checkpointed.
        costly = self.commit_s >= self.COSTLY_COMMIT
        if costly and self.every > 0 and time.monotonic() - self.last_time < self.cost_interval:
            return  # too soon for what a checkpoint costs: a later epoch end takes one
        self.save()

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
        # A big state's write takes seconds of a core: it runs at a lower priority. A small
        # one's does not, and training may wait for it (`wait`): the usual priority.
        size = state_bytes(state)
        big = self.background and size >= self.BIG
        if big and ready_only and not self.snapshot.fits(state):
            specs = self.snapshot.specs(state)
            self.writer.start(lambda: self.snapshot.allocate(specs))
            return
        self._gate_mark = STEP_GATE.waited_s
        if self.background:
            # A small state's copy costs less than handing it to another thread.
            overlap = self.overlap and size >= self.OVERLAP_MIN
            state = self.snapshot.take(state, self._step_only() if overlap else None)
            self.session.stage_logs()  # made durable by the writer, before the manifest
        else:
            self.session.sync_logs()
        if self.background:
            blocking = time.perf_counter() - began
            self.blocked_s += blocking
            if self.every > 0:
                self.cost_interval = max(
                    self.BUDGET * (blocking + self.gate_wait_s),
                    self.WRITE_BUDGET * self.write_s,
                    self.BUDGET * self.commit_s,
                )
                self.interval = max(self.every, self.cost_interval)

            def write() -> None:
                self.snapshot.copy_deferred()  # first: optimizer steps wait for it
                self._write(state, step, epoch, blocking, big)

            try:
                self.writer.start(write)
            except BaseException:
                self.snapshot.copy_deferred()  # never leave the step gate closed
                raise
        else:
            self._write(state, step, epoch, 0.0)
            self.blocked_s += time.perf_counter() - began
        self.last_time, self.last_step = time.monotonic(), step
        self._pending = ev.CheckpointSaved(checkpoint_name(step), epoch, step)
        if wait:
            self.finish()

    def _write(
        self, state: dict[str, Any], step: int, epoch: int, blocking: float, low: bool = False
    ) -> None:
        """On the writer's thread: the file (`low`: at a lower priority), then the manifest
        that names it."""
        session, engine = self.session, self.engine
        began, wall = time.perf_counter(), time.time()

        def write() -> str:
            return save_checkpoint(session.folder, state)

        rel = run_lowered(write) if low else write()
        session.persist_logs()  # the logs staged with the state, before the manifest
        written = time.perf_counter()
        # Wall time, even when lowered: its CPU time leaves out the page cache's writeback
        # and the memory traffic, which slow training as much.
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
        cpu = time.thread_time()  # the YAML holds the GIL; the fsync does not
        session.commit_checkpoint(rel, step, epoch, since, wall - 1e-3, **stats)
        self.commit_s = time.thread_time() - cpu

    def _step_only(self) -> set[int]:
        """The storage of the tensors only an optimizer step writes."""
        optimizer = self.engine.optimizer
        ptrs = {p.data_ptr() for group in optimizer.param_groups for p in group["params"]}
        for state in optimizer.state.values():
            ptrs.update(t.data_ptr() for t in state.values() if isinstance(t, torch.Tensor))
        return ptrs

    def finish(self) -> None:
        """Wait for the write in flight and announce it."""
        self.writer.wait()
        if self._pending is not None:  # the steps held for its copies count as blocking
            self.gate_wait_s = STEP_GATE.waited_s - self._gate_mark
            self.blocked_s += self.gate_wait_s
        event, self._pending = self._pending, None
        if event is not None:
            self.engine.emit(event)
