"""The segment engine: trains a plan step by step, with controls and events.

The LR of every optimizer step is `plan.segments[i].lr_at(position)`, written into every
param group right before the step: what the operator typed is what the optimizer uses.

Threads: `run()` trains on the calling thread. The control methods (`pause`, `resume`,
`queue`, `set_lr`, ...) may be called from any thread; they take effect at the next batch
boundary. Handlers run on the training thread and must be quick.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from lrconsole.core.plan.plan import Plan
from lrconsole.core.plan.segment import OptimizerSpec, Segment, check_lr
from lrconsole.core.tasks.optim import build_optimizer
from lrconsole.core.tasks.task import Task
from lrconsole.core.train import events as ev
from lrconsole.core.train.rng import capture_rng, restore_rng

E = TypeVar("E", bound=ev.Event)
Handler = Callable[[Any], None]
STATE_FORMAT = 1
GUARD_EPOCHS = 3  # the divergence guard compares with the mean loss of this many epochs


@dataclass
class Hooks:
    """Where a distributed run joins the loop (lrconsole.dist); all None otherwise."""

    step_begin: Callable[[int, float], None] | None = None  # (global step, lr) before a step
    epoch_start: Callable[[int], None] | None = None  # (finished epochs) before an epoch
    reduce_metrics: Callable[[dict[str, float]], dict[str, float]] | None = None
    train_model: Callable[..., Any] | None = None  # e.g. the DDP wrapper for training


class Engine:
    def __init__(self, task: Task, plan: Plan, optimizer_spec: OptimizerSpec) -> None:
        self.task = task
        self.plan = plan
        self.optimizer_spec = optimizer_spec
        self.model = task.model
        self.steps_per_epoch = plan.steps_per_epoch
        self.global_step = 0
        self.global_epoch = 0
        # Steps whose LR has been read: edits apply from here, never to a step in flight.
        self._claimed = 0
        self.lr = plan.segments[0].lr if plan.segments else 0.0
        self.optimizer = build_optimizer(optimizer_spec, self.model.parameters(), self.lr or 1e-3)
        self.owns_optimizer = True  # False when a user's own loop brings its optimizer
        # A user's own loop cannot fast-forward its data: it checkpoints at epoch ends only.
        self.mid_epoch_checkpoints = True
        self.hooks = Hooks()
        self._handlers: dict[type[ev.Event], list[Handler]] = defaultdict(list)
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        # Set by any control call; the training loop takes the slow path only then.
        self._attention = False
        self._pause_reason: str | None = None  # requested pause
        self._pause_at: int | None = None  # pause when global_step reaches this
        self._exit: str | None = None  # stop | shutdown
        self._jobs: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self.running = False
        self.paused: str | None = None  # current pause reason, None while training
        # Set when a loss went NaN/inf or spiked: nothing is checkpointed until the operator acts.
        self.diverged = False
        # (global step, epoch) of the step that diverged: epoch counts from 1, the epoch the
        # bad step belongs to. None while the run is healthy.
        self.diverged_at: tuple[int, int] | None = None
        # A batch loss above spike_factor x the lowest batch loss of the last epochs diverged.
        self.spike_factor: float | None = 10.0
        # The guard compares with the mean batch loss of recent epochs, not the lowest batch:
        # single batches of a heavy-tailed task (the lesson's) vary tenfold on their own.
        # The guard's memory is part of the checkpoint (`state_dict`), so a resumed or rolled
        # back run makes exactly the decisions of an uninterrupted one.
        self._recent_lows: deque[float] = deque(maxlen=GUARD_EPOCHS)
        self._spike_limit = math.inf  # spike_factor x the lowest recent epoch mean
        self._epoch_sum = 0.0
        self._epoch_count = 0
        self._iter: Iterator[Any] | None = None
        self._batch = 0
        self._epoch_rng: torch.Tensor | None = None
        self._pending_rng: dict[str, Any] | None = None
        self._segment_index = -1
        self._segment_end = -1
        self._segment: Segment | None = None
        self._segment_version = -1

    # -- events ----------------------------------------------------------------------
    def on(self, event: type[E], handler: Callable[[E], None]) -> None:
        self._handlers[event].append(handler)

    def emit(self, event: ev.Event) -> None:
        for handler in self._handlers.get(type(event), ()):
            handler(event)

    # -- controls (any thread) ---------------------------------------------------------
    def _poke(self) -> None:
        self._attention = True
        self._wake.notify_all()

    def pause(self, reason: str = "operator") -> None:
        with self._lock:
            self._pause_reason = reason
            self._poke()

    def resume(self) -> None:
        with self._lock:
            self.diverged = False
            self.diverged_at = None
            self._pause_reason = None
            self._pause_at = None
            self._poke()

    def stop_after_epoch(self) -> int:
        """End the running segment at the end of this epoch and pause there."""
        with self._lock:
            spe = self.steps_per_epoch
            end = -(-self._claimed // spe) * spe
            self.plan.truncate_at(end)
            self._pause_at = end
            self._poke()
            return end

    def submit(self, job: Callable[[], Any]) -> Future[Any]:
        """Run `job` on the training thread at the next batch boundary (now if not running).

        Rollback and the LR range test touch the model, so they run there, never beside it.
        """
        future: Future[Any] = Future()
        with self._lock:
            if self.running:
                self._jobs.append((job, future))
                self._poke()
                return future
        _run_job(job, future)
        return future

    def request_exit(self, reason: str = "stop") -> None:
        """Leave `run()` at the next batch boundary (Ctrl-C, shutdown)."""
        with self._lock:
            self._exit = reason
            self._poke()

    def queue(self, segments: Iterable[Segment], replace: bool = False) -> None:
        with self._lock:
            if replace:
                self.plan.replace_queued(self._claimed, segments)
            else:
                self.plan.append(segments)
            self._poke()
        self.emit_plan()

    def set_lr(self, lr: float) -> int:
        """Train at `lr` from the very next optimizer step; returns that step."""
        lr = check_lr(lr)
        with self._lock:
            step = self._claimed
            self.plan.split_at(step, lr)
            self._poke()
        self.emit(ev.LrSet(lr, step))
        self.emit_plan()
        return step

    def emit_plan(self) -> None:
        with self._lock:
            data = self.plan.to_dict(self.global_step)
        self.emit(ev.PlanChanged(**data))

    def state(self) -> dict[str, Any]:
        with self._lock:
            index, _ = self.plan.locate(self.global_step)
            return {
                "state": "paused" if self.paused else "running",
                "reason": self.paused,
                "global_epoch": self.global_epoch,
                "global_step": self.global_step,
                "lr": self.lr,
                "segment": index,
            }

    # -- the loop ----------------------------------------------------------------------
    def run(self, wait: bool = False) -> str:
        """Train the plan. Returns why it stopped: done, diverged, or the reason given to
        `request_exit`.

        With `wait`, an empty queue pauses (reason `queue_empty`) instead of returning,
        as the lesson's `input()` prompt did, until more is queued or `request_exit`.
        """
        self._exit = None
        self._attention = True
        with self._lock:
            self.running = True
        try:
            while True:
                if self._attention or self.global_step >= self.plan.total_steps:
                    reason = self.at_boundary(wait)
                    if reason is not None:
                        return reason
                if self._iter is None:
                    self._start_epoch()
                self._train_step(next(self._iter))  # type: ignore[arg-type]
        finally:
            with self._lock:
                self.running = False
                jobs = list(self._jobs)
                self._jobs.clear()
            for job, future in jobs:
                _run_job(job, future)

    def at_boundary(self, wait: bool) -> str | None:
        """The slow path: pauses, exits and the end of the plan."""
        while True:
            while self._jobs:
                _run_job(*self._jobs.popleft())
            with self._lock:
                self._attention = False
                if self._exit is not None:
                    return self._exit
                if self._pause_at is not None and self.global_step >= self._pause_at:
                    self._pause_reason, self._pause_at = "stop", None
                reason = self._pause_reason
                if reason == "error" and not wait:
                    return "diverged"
                if reason is None and self.global_step >= self.plan.total_steps:
                    if not wait:
                        return "done"
                    reason = "queue_empty"
                if reason is None:
                    was_paused, self.paused = self.paused, None
                    if was_paused is None:
                        return None
                newly = reason is not None and self.paused != reason
                if reason is not None:
                    self.paused = reason
            if reason is None:
                self.emit(ev.Resumed(self.global_step))
                return None
            if newly:
                self.emit(ev.Paused(reason, self.global_epoch, self.global_step))
            with self._lock:
                if not self._attention and not self._jobs:
                    self._wake.wait(timeout=0.5)

    def _start_epoch(self) -> None:
        self.model.train()
        loader = self.task.train_loader
        skip = self._batch
        if skip and self._epoch_rng is not None:
            # Resuming mid-epoch: the same shuffle order, then fast-forward.
            torch.set_rng_state(self._epoch_rng)
            it = iter(loader)
            for _ in range(skip):
                next(it)
        else:
            if self._pending_rng is not None:
                restore_rng(self._pending_rng)
                self._pending_rng = None
            if self.hooks.epoch_start is not None:
                self.hooks.epoch_start(self.global_epoch)
            self._epoch_rng = torch.get_rng_state()
            self._batch = 0
            it = iter(loader)
        if self._pending_rng is not None:
            restore_rng(self._pending_rng)
            self._pending_rng = None
        self._iter = it

    def _current_segment(self) -> tuple[int, int, Segment]:
        """(index, position, segment) of the next step; cached until the plan changes."""
        step = self.global_step
        if self._segment_version != self.plan.version or step >= self._segment_end:
            index, _ = self.plan.locate(step)
            self._segment_version = self.plan.version
            moved = index != self._segment_index and self._segment_index >= 0
            if moved and 0 < step < self._segment_end:  # cut short by an edit
                self.emit(ev.SegmentEnd(self._segment_index, self.global_epoch, step))
            self._segment_index = index
            self._segment = self.plan.segments[index]
            self._segment_end = self.plan.end_of(index)
        assert self._segment is not None
        start = self._segment_end - self._segment.length(self.steps_per_epoch)
        return self._segment_index, step - start, self._segment

    def _train_step(self, batch: Any) -> None:
        index = self.begin_step()
        inputs, targets = _to_device(batch, self.task.device)
        loss = self.task.loss((self.hooks.train_model or self.model)(inputs), targets)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if self.finish_step(index, loss.item()):
            metrics = self.evaluate()
            if self.hooks.reduce_metrics is not None:
                metrics = self.hooks.reduce_metrics(metrics)
            self.finish_epoch(index, metrics)
        self.after_step(index)

    # -- one step, shared by the built-in loop and the hook for a user's own loop ------
    def begin_step(self) -> int:
        """Claim the next step and write its LR into every param group; its segment."""
        with self._lock:
            index, pos, seg = self._current_segment()
            lr = seg.lr_at(pos, self.steps_per_epoch)
            self._claimed = self.global_step + 1
        if pos == 0:
            if seg.fresh_optimizer and self.global_step > 0 and self.owns_optimizer:
                params = self.model.parameters()
                self.optimizer = build_optimizer(self.optimizer_spec, params, lr)
            self.emit(ev.SegmentStart(index, seg.to_dict(), self.global_step))
        self.lr = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.hooks.step_begin is not None:
            self.hooks.step_begin(self.global_step, lr)
        return index

    def finish_step(self, index: int, value: float | None) -> bool:
        """Count the step, guard its loss, report it; True when the epoch's steps are done.

        `value` None: the loss is unknown (a trainer callback); the guard skips the step.
        """
        with self._lock:
            self.global_step += 1
        self._batch += 1
        if value is None:
            value = math.nan
        elif not math.isfinite(value):
            self._diverged(f"the loss is {value} {self._where()}")
        elif self._spike_limit < value:
            floor = min(self._recent_lows)
            if self.spike_factor and value > self.spike_factor * floor:
                self._diverged(
                    f"the loss spiked to {value:.4g} {self._where()}, over "
                    f"{self.spike_factor:g}x the recent mean {floor:.4g}"
                )
        if value == value:  # not NaN
            self._epoch_sum += value
            self._epoch_count += 1
        if self._handlers.get(ev.BatchEnd):
            self.emit(
                ev.BatchEnd(
                    self.global_step,
                    self.global_epoch + 1,
                    self._batch,
                    self.steps_per_epoch,
                    value,
                    self.lr,
                )
            )
        return self._batch >= self.steps_per_epoch

    def after_step(self, index: int) -> None:
        if self.global_step == self._segment_end:
            self.emit(ev.SegmentEnd(index, self.global_epoch, self.global_step))

    def _where(self) -> str:
        """Where the step just counted lies: its step, the epoch it belongs to, its LR."""
        return f"at step {self.global_step} (epoch {self.global_epoch + 1}, lr {self.lr:g})"

    def _diverged(self, message: str) -> None:
        with self._lock:
            if self.diverged:  # already paused for an earlier step: report that one only
                return
            self.diverged = True
            # The step just counted; finish_epoch has not yet counted its epoch.
            self.diverged_at = (self.global_step, self.global_epoch + 1)
            self._pause_reason = "error"
            self._poke()
        self.emit(ev.Error(f"{message}; paused, the last good checkpoint is kept", fatal=False))

    def finish_epoch(self, segment: int, metrics: dict[str, float]) -> None:
        bad = sorted(name for name, value in metrics.items() if not math.isfinite(value))
        if bad:
            # Evaluation blew up although every batch loss passed: diverged all the same.
            values = ", ".join(f"{name} {metrics[name]}" for name in bad)
            self._diverged(f"the evaluation gave {values} {self._where()}")
        if self._epoch_count and math.isfinite(self._epoch_sum):
            self._recent_lows.append(self._epoch_sum / self._epoch_count)
            self._update_spike_limit()
        self._epoch_sum, self._epoch_count = 0.0, 0
        with self._lock:
            self.global_epoch += 1
            self._iter = None
            self._batch = 0
        self.emit(
            ev.EpochEnd(self.global_epoch, self.global_step, segment, self.lr, metrics, time.time())
        )

    def _update_spike_limit(self) -> None:
        if self.spike_factor and self._recent_lows:
            self._spike_limit = self.spike_factor * min(self._recent_lows)
        else:
            self._spike_limit = math.inf

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
                "epoch_rng": self._epoch_rng if self._batch else None,
                "global_step": self.global_step,
                "global_epoch": self.global_epoch,
                "guard": self.guard_state(),
            }

    def guard_state(self) -> dict[str, Any]:
        """The divergence guard's memory, as plain floats (weights_only-safe)."""
        return {
            "recent_means": [float(x) for x in self._recent_lows],
            "epoch_sum": float(self._epoch_sum),
            "epoch_count": int(self._epoch_count),
        }

    def load_guard_state(self, guard: Any) -> None:
        """Restore `guard_state()`; None (a checkpoint from before it was kept) starts afresh:
        the guard then relearns the loss level over the next epochs."""
        self._recent_lows.clear()
        self._epoch_sum, self._epoch_count = 0.0, 0
        if isinstance(guard, dict):
            self._recent_lows.extend(float(x) for x in guard.get("recent_means") or ())
            self._epoch_sum = float(guard.get("epoch_sum", 0.0))
            self._epoch_count = int(guard.get("epoch_count", 0))
        self._update_spike_limit()

    def planned_lr(self, step: int) -> float:
        """The plan's LR at `step` (past the plan's end: its last segment's LR)."""
        index, pos = self.plan.locate(step)
        if index < len(self.plan.segments):
            return self.plan.segments[index].lr_at(pos, self.steps_per_epoch)
        return self.plan.segments[-1].lr if self.plan.segments else 1e-3

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        lr = self.planned_lr(int(state["global_step"]))
        if self.owns_optimizer:
            self.optimizer = build_optimizer(self.optimizer_spec, self.model.parameters(), lr)
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr = lr
        self.global_step = self._claimed = int(state["global_step"])
        self.global_epoch = int(state["global_epoch"])
        self._batch = self.global_step - self.global_epoch * self.steps_per_epoch
        self._epoch_rng = state.get("epoch_rng")
        self._pending_rng = state["rng"]
        self._iter = None
        self._segment_index = self._segment_end = self._segment_version = -1
        self.load_guard_state(state.get("guard"))


@torch.no_grad()
def evaluate(model: torch.nn.Module, task: Task) -> dict[str, float]:
    """Loss and metrics over each whole evaluation set, in eval mode."""
    model.eval()
    out: dict[str, float] = {}
    for set_name, loader in task.eval_sets.items():
        outputs, targets = [], []
        for batch in loader:
            inputs, target = _to_device(batch, task.device)
            outputs.append(model(inputs))
            targets.append(target)
        y_hat, y = torch.cat(outputs), torch.cat(targets)
        out[f"{set_name}_loss"] = float(task.loss(y_hat, y))
        for metric_name, fn in task.metrics.items():
            out[f"{set_name}_{metric_name}"] = float(fn(y_hat, y))
    model.train()
    return out


def _run_job(job: Callable[[], Any], future: Future[Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(job())
    except BaseException as exc:  # handed to whoever waits on the future
        future.set_exception(exc)


def _to_device(batch: Any, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, targets = batch[0], batch[1]
    if device != "cpu":
        inputs, targets = inputs.to(device), targets.to(device)
    return inputs, targets
