"""Handlers on engine events: the metrics log and TensorBoard, the manifest, checkpoints.

None of this lives in the training loop; the engine only emits events. Each handler takes
the session and the engine, never the trainer that wires them.
"""

from __future__ import annotations

import time
from typing import Any

from lrconsole.core.session.session import Session
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
    """Saves at most every `interval` seconds at epoch ends, and at every segment end and pause."""

    def __init__(self, session: Session, engine: Engine, interval: float = 2.0) -> None:
        self.session = session
        self.engine = engine
        self.interval = interval
        self.last_time = time.monotonic()
        self.last_step = engine.global_step
        engine.on(ev.EpochEnd, self.on_epoch)
        engine.on(ev.SegmentEnd, lambda _: self.save())
        engine.on(ev.Paused, lambda _: self.save())

    def on_epoch(self, event: ev.EpochEnd) -> None:
        if time.monotonic() - self.last_time >= self.interval:
            self.save()

    def save(self, force: bool = False) -> None:
        engine = self.engine
        if engine.diverged or (engine.global_step == self.last_step and not force):
            return
        if engine.batch and not engine.mid_epoch_checkpoints:
            return
        path = self.session.save_checkpoint(engine.state_dict(), paused=engine.paused is not None)
        self.last_time = time.monotonic()
        self.last_step = engine.global_step
        engine.emit(ev.CheckpointSaved(path, engine.global_epoch, engine.global_step))
