"""Steering the plan while it trains: queue, set the LR or optimizer settings now, end or
resize the running segment, edit notes; and the settings written before each step. A
mixin of `Engine` (engine.py holds the loop; this holds the plan's edits).

Every edit applies from the first step whose LR has not been read (`_claimed`), never to
a step in flight, and changes only the plan: the plan is what `export` writes, so a run
steered by hand replays bit for bit. Any thread may call these; the lock guards the plan.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from lrconsole.core.plan.plan import Plan
from lrconsole.core.plan.schema import EPOCHS_MAX
from lrconsole.core.plan.segment import Segment, check_lr
from lrconsole.core.plan.settings import to_wire
from lrconsole.core.train import events as ev
from lrconsole.core.train.controls import Controls
from lrconsole.core.train.settings import EffectiveSettings, apply_settings, check_settings, clip_of
from lrconsole.errors import UserError

if TYPE_CHECKING:
    import torch


class Steering(ev.Emitter):
    # Set by Engine.__init__.
    plan: Plan
    steps_per_epoch: int
    global_step: int
    diverged: bool
    diverged_at: tuple[int, int] | None
    _claimed: int
    _controls: Controls
    _lock: threading.RLock
    optimizer: torch.optim.Optimizer

    def __init__(self) -> None:
        super().__init__()
        self._effective = EffectiveSettings()
        self.clip: float | None = None  # the step in flight's max gradient norm
        # The step in flight's settings, as applied: what a distributed run's rank 0 sends
        # the other ranks with the LR (lrconsole.dist.wire), so they step with the same.
        self.step_settings: dict[str, Any] = {}

    def settings_for(self, index: int) -> dict[str, Any]:
        """The settings in force in segment `index` (call under the lock; cached)."""
        return self._effective.at(self.plan, index)

    def apply_settings(self, settings: dict[str, Any]) -> None:
        """Before a step: its settings into every param group; its clip for the step."""
        apply_settings(self.optimizer, settings)
        self.clip = clip_of(settings)
        self.step_settings = settings

    def check_settings(self, segments: Iterable[Segment]) -> None:
        """UserError for a setting the optimizer in use has no value for (betas for SGD)."""
        check_settings(self.optimizer, segments)

    def queue(self, segments: Iterable[Segment], replace: bool = False) -> dict[str, Any]:
        """Append (or replace the unstarted part of the plan with) `segments`; the plan."""
        segments = list(segments)
        self.check_settings(segments)
        with self._lock:
            if replace:
                self.plan.replace_queued(self._claimed, segments)
            else:
                self.plan.append(segments)
            self._controls.poke()
        self.emit_plan()
        return self.plan_dict()

    def set_lr(self, lr: float) -> int:
        """Train at `lr` from the very next optimizer step; returns that step."""
        lr = check_lr(lr)
        with self._lock:
            step = self._claimed
            self.plan.split_at(step, lr)
            self._controls.poke()
        self.emit(ev.LrSet(lr, step))
        self.emit_plan()
        return step

    def set_settings(self, settings: dict[str, Any]) -> int:
        """Train with `settings` (and `lr`, when given) from the very next optimizer step;
        returns that step. A mid-segment change splits the segment, as set_lr does."""
        settings = dict(settings)
        lr = settings.pop("lr", None)
        lr = None if lr is None else check_lr(lr)
        self.check_settings([Segment(1.0, steps=1, **settings)])
        with self._lock:
            step = self._claimed
            self.plan.split_at(step, lr, settings)
            self._controls.poke()
        if lr is not None:
            self.emit(ev.LrSet(lr, step))
        self.emit(ev.SettingsSet(to_wire({**settings, **({} if lr is None else {"lr": lr})}), step))
        self.emit_plan()
        return step

    def set_note(self, index: int, note: str) -> None:
        """Write segment `index`'s note; training is untouched (export carries it)."""
        with self._lock:
            self.plan.set_note(index, note)
        self.emit_plan()

    def stop_after_epoch(self) -> int:
        """End the running segment at the end of this epoch and pause there."""
        with self._lock:
            end = self._epoch_end()
            index, pos = self.plan.locate(self._claimed)
            # Only the running segment is cut: one that ends sooner leaves the next whole.
            if index < len(self.plan.segments) and pos > 0 and end < self.plan.end_of(index):
                self.plan.truncate_at(end)
            self._controls.pause_at = end
            self._controls.poke()
        self.emit_plan()
        return end

    def end_segment(self, now: bool = False) -> tuple[int, int]:
        """End the running segment at the end of this epoch, or (`now`) before the next
        step; the queue moves on, as at any segment's end. (its index, the step it ends at)."""
        with self._lock:
            step, plan = self._claimed, self.plan
            index, pos = plan.locate(step)
            if index >= len(plan.segments):
                raise UserError("no segment is running: the queue is empty")
            if pos == 0:
                raise UserError(
                    f"segment {index + 1} has not started yet: remove it from the queue instead"
                )
            end = step if now else min(self._epoch_end(), plan.end_of(index))
            if end < plan.end_of(index):
                plan.truncate_at(end)
                self._controls.poke()
        self.emit_plan()
        return index, end

    def end_segment_here(self) -> None:
        """End the running segment at the current step; later segments stay queued."""
        with self._lock:
            self.plan.truncate_at(self.global_step)

    def extend_segment(self, epochs: int) -> dict[str, Any]:
        """Add `epochs` (< 0: remove) to the running segment, or to the last one when the
        queue ran dry. It never ends before the epoch in progress completes (nor, when it
        has not started, shorter than one epoch). A segment in steps grows by whole epochs'
        steps. `{segment, epochs, steps, end_step, changed}`; epochs is fractional for a
        segment that is not whole epochs long."""
        with self._lock:
            plan, spe = self.plan, self.steps_per_epoch
            if not plan.segments:
                raise UserError("nothing is queued: queue a segment first")
            index = min(plan.locate(self._claimed)[0], len(plan.segments) - 1)
            start, end = plan.starts[index], plan.end_of(index)
            floor = self._epoch_end()
            if floor <= start:  # not started, at an epoch's start: one epoch at least
                floor = start + spe
            new_end = max(end + epochs * spe, min(end, floor))
            length = new_end - start
            if length > EPOCHS_MAX * spe:
                raise UserError(
                    f"segment {index + 1} would be {length / spe:,g} epochs long "
                    f"(the limit is {EPOCHS_MAX:,})"
                )
            if new_end != end:
                plan.resize(index, length)
                self._controls.poke()
        if new_end != end:
            self.emit_plan()
        whole = length % spe == 0
        return {
            "segment": index,
            "epochs": length // spe if whole else round(length / spe, 3),
            "steps": length,
            "end_step": new_end,
            "changed": new_end != end,
        }

    def _epoch_end(self) -> int:
        """The step at which the epoch in progress ends (now, between epochs)."""
        spe = self.steps_per_epoch
        return -(-self._claimed // spe) * spe

    def hold_diverged(self, step: int, epoch: int) -> None:
        """An earlier run diverged at `step` (in `epoch`) past the checkpoint this one
        resumed: wait for the operator to roll back or accept, as after a divergence here."""
        with self._lock:
            self.diverged, self.diverged_at = True, (step, epoch)
            self._controls.pause_reason = "error"
            self._controls.poke()

    def emit_plan(self) -> None:
        """Announce the plan on the training thread, where its handlers write the files."""
        job = lambda: self.emit(ev.PlanChanged(**self.plan_dict()))  # noqa: E731
        self._controls.submit(job, key="plan")

    # -- reading the plan (any thread) ----------------------------------------------------
    def plan_dict(self) -> dict[str, Any]:
        with self._lock:
            return self.plan.to_dict(self.global_step)

    def segments(self) -> list[Segment]:
        with self._lock:
            return list(self.plan.segments)

    def done_segments(self, step: int | None = None) -> list[Segment]:
        """The path trained up to `step` (default: the current step)."""
        with self._lock:
            return self.plan.done(self.global_step if step is None else step)
