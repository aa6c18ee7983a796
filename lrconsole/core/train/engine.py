"""The segment engine: trains a plan step by step, with controls and events.

The LR of every optimizer step is `plan.segments[i].lr_at(position)`, written into every
param group right before the step: what the operator typed is what the optimizer uses.

Threads: `run()` trains on the calling thread; the controls (`pause`, `queue`, `set_lr`...)
may be called from any thread and act at the next batch boundary; handlers run on the
training thread. A user's own loop (`lrconsole.Steer`) drives the engine by `at_boundary`
/ `begin_step` / `finish_step` / `after_step` / `finish_epoch`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from lrconsole.core.plan.plan import Plan
from lrconsole.core.plan.segment import OptimizerSpec, Segment
from lrconsole.core.session.writer import STEP_GATE
from lrconsole.core.tasks.optim import build_optimizer
from lrconsole.core.tasks.task import Task
from lrconsole.core.train import events as ev
from lrconsole.core.train.controls import Controls
from lrconsole.core.train.cursor import SegmentCursor
from lrconsole.core.train.epoch import EpochStream
from lrconsole.core.train.gradnorm import GradWatch
from lrconsole.core.train.guard import DivergenceGuard
from lrconsole.core.train.hooks import Hooks
from lrconsole.core.train.lossfeed import LossFeed, StepLoss
from lrconsole.core.train.rng import capture_rng
from lrconsole.core.train.steering import Steering
from lrconsole.core.train.step import apply_lr, evaluate, train_step

STATE_FORMAT = 1


class Engine(Steering):
    def __init__(self, task: Task, plan: Plan, optimizer_spec: OptimizerSpec) -> None:
        self.task = task
        self.plan = plan
        self.optimizer_spec = optimizer_spec
        self.model = task.model
        self.steps_per_epoch = plan.steps_per_epoch
        self.global_step = 0
        self.global_epoch = 0
        self.batch = 0  # steps done in the epoch in progress
        # Steps whose LR has been read: edits apply from here, never to a step in flight.
        self._claimed = 0
        self.lr = plan.segments[0].lr if plan.segments else 0.0
        self.optimizer = build_optimizer(optimizer_spec, self.model.parameters(), self.lr or 1e-3)
        self.owns_optimizer = True  # False when a user's own loop brings its optimizer
        # A user's own loop cannot fast-forward its data: it checkpoints at epoch ends only.
        self.mid_epoch_checkpoints = True
        self.hooks = Hooks()
        self.loop_state: Any = None  # the "loop" of the checkpoint loaded last (Steer's)
        self.guard = DivergenceGuard()
        super().__init__()
        self.check_settings(plan.segments)
        self._controls = Controls()
        self._lock = self._controls.lock
        # Set when a loss went NaN/inf or spiked: nothing is checkpointed until the operator acts.
        self.diverged = False
        # (global step, epoch) of the step that diverged: epoch counts from 1, the epoch the
        # bad step belongs to. None while the run is healthy.
        self.diverged_at: tuple[int, int] | None = None
        self._data = EpochStream()
        self._cuts: list[ev.SegmentEnd] = []  # cut short by an edit, to announce
        self._cursor = SegmentCursor(plan, self._segment_cut)
        self.losses = LossFeed(self.guard, self._diverged, self)  # no device sync per step
        self.grads = GradWatch(self._diverged)  # gradient norms and their guard

    @property
    def running(self) -> bool:
        return self._controls.running

    @property
    def paused(self) -> str | None:
        """Why the run waits now (operator, stop, error, queue_empty); None while training."""
        return self._controls.paused

    # -- controls (any thread) ---------------------------------------------------------
    def pause(self, reason: str = "operator") -> None:
        self._controls.request_pause(reason)

    def resume(self) -> None:
        with self._lock:
            self.diverged = False
            self.diverged_at = None
            self._controls.clear_pause()

    def submit(self, job: Callable[[], Any]) -> Future[Any]:
        """Run `job` on the training thread at the next batch boundary (now if not running).

        Rollback, the LR range test and manifest writes touch the model or the session's
        files, so they run there, never beside it.
        """
        return self._controls.submit(job)

    def request_exit(self, reason: str = "stop") -> None:
        """Leave `run()` at the next batch boundary (Ctrl-C, shutdown)."""
        self._controls.request_exit(reason)

    # -- reading the position (any thread) -----------------------------------------------
    def state(self) -> dict[str, Any]:
        with self._lock:
            index, _ = self.plan.locate(self.global_step)
            state = "paused" if self.paused else "running"
            return {
                "state": state,
                "reason": self.paused,
                "global_epoch": self.global_epoch,
                "global_step": self.global_step,
                "lr": self.lr,
                "segment": index,
                "segments": len(self.plan.segments),
                "diverged": self.diverged_at[1] if self.diverged and self.diverged_at else None,
            }

    def needs_boundary(self) -> bool:
        """Whether the next step must wait for the slow path (a request, the plan's end)."""
        controls, step = self._controls, self.global_step
        stop_at = controls.pause_at  # a stop after this epoch: there, with no other request
        return controls.attention or step >= self.plan.total_steps or step == stop_at

    # -- the loop ----------------------------------------------------------------------
    def run(self, wait: bool = False) -> str:
        """Train the plan. Returns why it stopped: done, diverged, or the reason given to
        `request_exit`.

        With `wait`, an empty queue pauses (reason `queue_empty`) instead of returning,
        as the lesson's `input()` prompt did, until more is queued or `request_exit`.
        """
        with self._lock:
            self._controls.exit = None
        self.start_running()
        try:
            while True:
                if self.needs_boundary():
                    reason = self.at_boundary(wait)
                    if reason is not None:
                        return reason
                if not self.claim_step():
                    continue  # an edit ended the plan here since the check: the slow path
                if self._data.batches is None:
                    self._start_epoch()
                self._train_step(next(self._data.batches))  # type: ignore[arg-type]
        finally:
            self.stop_running()

    def start_running(self) -> None:
        """From here on, jobs wait for a batch boundary (a user's loop calls this too)."""
        with self._lock:
            self._controls.running = True
            self._controls.attention = True

    def stop_running(self) -> None:
        """Nothing trains any more: jobs still waiting run now, on this thread."""
        self._controls.stop_running()

    def at_boundary(self, wait: bool) -> str | None:
        """The slow path: jobs, pauses, exits and the end of the plan. None: train on."""
        controls = self._controls
        self.settle_loss()  # jobs, pauses and checkpoints see every loss judged
        while True:
            controls.run_jobs()
            with self._lock:
                leave, changed = controls.decide(self.global_step, self.plan.total_steps, wait)
                reason = controls.paused
            if leave is not None:
                return leave
            if reason is None:
                if changed:
                    self.emit(ev.Resumed(self.global_step))
                return None
            if changed:
                self.emit(ev.Paused(reason, self.global_epoch, self.global_step))
            controls.idle_wait()

    def begin_epoch(self) -> None:
        """Before an epoch's first batch: the RNG of a resumed checkpoint, the epoch hook."""
        self._data.restore_pending()
        if self.hooks.epoch_start is not None:
            self.hooks.epoch_start(self.global_epoch)

    def _start_epoch(self) -> None:
        self.model.train()
        if not self._data.start(self.task.train_loader, self.batch, self.begin_epoch):
            self.batch = 0

    def _segment_cut(self, index: int, step: int) -> None:
        # Found under the lock (begin_step): announced after it, since a handler may wait
        # for a thread that needs the lock (a checkpoint's manifest reads the plan).
        self._cuts.append(ev.SegmentEnd(index, self.global_epoch, step, cut=True))

    def _train_step(self, batch: Any) -> None:
        index = self.begin_step()
        model = self.hooks.train_model or self.model
        task, stats = self.task, self.grads.stats
        loss = train_step(
            model, self.optimizer, task.loss, batch, task.device, self.clip, grad_stats=stats
        )
        if self.finish_step(index, loss):
            metrics = self.evaluate()
            if self.hooks.reduce_metrics is not None:
                metrics = self.hooks.reduce_metrics(metrics)
            self.finish_epoch(index, metrics)
        self.after_step(index)

    # -- one step, shared by the built-in loop and the hook for a user's own loop ------
    def claim_step(self, fill_epoch: bool = False) -> bool:
        """Reserve the next step before its batch is drawn: edits from here on apply after
        it. False when the plan has no step here (it ended, or an edit cut it to here since
        `needs_boundary`) or a stop after the epoch lands here. `fill_epoch` (a user's loop
        in mid-epoch, which must step): queue the rest of the epoch at the current LR."""
        with self._lock:
            step = self.global_step
            filled = step >= self.plan.total_steps
            if not fill_epoch and (filled or step == self._controls.pause_at):
                return False
            if filled:
                self.plan.append([Segment(self.lr, steps=self.steps_per_epoch - self.batch)])
            self._claimed = step + 1
        if filled:
            self.emit_plan()
        return True

    def begin_step(self) -> int:
        """Write the claimed step's LR (claim_step) into every param group; its segment."""
        with self._lock:
            index, pos, seg = self._cursor.at(self.global_step)
            lr = seg.lr_at(pos, self.steps_per_epoch)
            settings = self.settings_for(index)
            cuts, self._cuts = self._cuts, []
        for cut in cuts:
            self.emit(cut)
        if pos == 0:
            if seg.fresh_optimizer and self.global_step > 0 and self.owns_optimizer:
                params = self.model.parameters()
                self.optimizer = build_optimizer(self.optimizer_spec, params, lr)
            self.emit(ev.SegmentStart(index, seg.to_dict(), self.global_step))
        self.lr = lr
        apply_lr(self.optimizer, lr)
        self.apply_settings(settings)
        if self.hooks.step_begin is not None:
            self.hooks.step_begin(self.global_step, lr)
        return index

    def finish_step(self, index: int, value: Any) -> bool:
        """Count the step; its loss (None: unknown) goes to the guard and the batch events a
        step late (lossfeed). True when the epoch's steps are done, every loss judged."""
        with self._lock:
            self.global_step += 1
        self.batch += 1
        spe = self.steps_per_epoch
        at = StepLoss(self.global_step, self.global_epoch + 1, self.batch, spe, self.lr)
        self.losses.push(at, value)
        self.grads.push(at)
        if self.batch < spe:
            return False
        self.settle_loss()
        return True

    def settle_loss(self) -> None:  # before a checkpoint, an epoch's end, a boundary
        self.losses.settle()
        self.grads.settle()

    def after_step(self, index: int) -> None:
        if self.global_step == self._cursor.end:
            self.emit(ev.SegmentEnd(index, self.global_epoch, self.global_step))

    def _diverged(self, message: str, at: tuple[int, int] | None = None) -> None:
        with self._lock:
            if self.diverged:  # already paused for an earlier step: report that one only
                return
            self.diverged = True
            self.diverged_at = at or (self.global_step, self.global_epoch + 1)
            self._controls.pause_reason = "error"
            self._controls.poke()
        self.emit(ev.Error(f"{message}; paused, the last good checkpoint is kept", fatal=False))

    def finish_epoch(self, segment: int, metrics: dict[str, float]) -> None:
        bad = sorted(name for name, value in metrics.items() if not math.isfinite(value))
        if bad:
            # Evaluation blew up although every batch loss passed: diverged all the same.
            values = ", ".join(f"{name} {metrics[name]}" for name in bad)
            at = f"at step {self.global_step} (epoch {self.global_epoch + 1}, lr {self.lr:g})"
            self._diverged(f"the evaluation gave {values} {at}")
        self.guard.end_epoch()
        grads = self.grads.end_epoch(self.global_epoch + 1)
        with self._lock:
            self.global_epoch += 1
            self._data.batches = None
            self.batch = 0
        self.emit(
            ev.EpochEnd(
                self.global_epoch, self.global_step, segment, self.lr, metrics, time.time(), **grads
            )
        )

    def evaluate(self) -> dict[str, float]:
        return evaluate(self.model, self.task)

    # -- checkpoint state ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit; only tensors and plain data."""
        with self._lock:
            return {
                "format": STATE_FORMAT,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "rng": capture_rng(),
                "epoch_rng": self._data.epoch_rng if self.batch else None,
                "global_step": self.global_step,
                "global_epoch": self.global_epoch,
                "guard": self.guard.state_dict(),
                "grad_guard": self.grads.state_dict(),
                "loop": self.hooks.loop_state() if self.hooks.loop_state else None,
            }

    def place_at(self, global_step: int, global_epoch: int) -> None:
        """Stand at a position without loading weights (a rollback loads them next)."""
        self.global_step = self._claimed = global_step
        self.global_epoch = global_epoch
        self.lr = self.plan.lr_at_step(global_step)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        STEP_GATE.wait()  # a checkpoint still copying these weights (session.writer)
        self.model.load_state_dict(state["model"])
        lr = self.plan.lr_at_step(int(state["global_step"]))
        if self.owns_optimizer:
            self.optimizer = build_optimizer(self.optimizer_spec, self.model.parameters(), lr)
        self.optimizer.load_state_dict(state["optimizer"])
        self.place_at(int(state["global_step"]), int(state["global_epoch"]))
        self.batch = self.global_step - self.global_epoch * self.steps_per_epoch
        self._data.load(state.get("epoch_rng"), state["rng"])
        self._cursor.reset()
        self.guard.load_state_dict(state.get("guard"))
        self.grads.load_state_dict(state.get("grad_guard"))
        self.loop_state = state.get("loop")

    def go_back(self, state: dict[str, Any]) -> None:
        """Roll back to `state`, an earlier checkpoint: the plan past it, a divergence and a
        pause are dropped (call on the training thread)."""
        with self._lock:
            self.plan.reset(self.plan.done(int(state["global_step"])))
            self.load_state_dict(state)
            self.diverged, self.diverged_at = False, None
            self._controls.pause_reason = None
            self._controls.poke()
