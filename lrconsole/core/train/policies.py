"""Plateau and early-stopping policies: handlers on epoch ends, per segment.

A policy's state (best value, epochs waited) starts afresh with each segment. When the
plateau policy lowers the LR it splits the segment there, so the tail is a new segment:
the exported schedule records the lower LR, and a replay meets the same decisions.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

from lrconsole.core.session.store import save_checkpoint
from lrconsole.core.train import events as ev

if TYPE_CHECKING:
    from lrconsole.core.train.trainer import Trainer


class Tracker:
    """Best value and epochs without an improvement of more than `min_delta`."""

    def __init__(self, mode: str, min_delta: float) -> None:
        self.mode = mode
        self.min_delta = min_delta
        self.best = math.inf if mode == "min" else -math.inf
        self.wait = 0

    def update(self, value: float) -> bool:
        better = (
            value < self.best - self.min_delta
            if self.mode == "min"
            else value > self.best + self.min_delta
        )
        if better:
            self.best, self.wait = value, 0
        else:
            self.wait += 1
        return better


class Policies:
    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.segment = -1
        self.plateau: Tracker | None = None
        self.early: Tracker | None = None
        self.best_state: dict[str, Any] | None = None

    def on_epoch(self, event: ev.EpochEnd) -> None:
        trainer, engine = self.trainer, self.trainer.engine
        plan = trainer.plan
        if event.segment >= len(plan.segments):
            return
        seg = plan.segments[event.segment]
        mode = trainer.manifest.monitor_mode
        if event.segment != self.segment:  # a new segment: its policies start afresh
            self.segment = event.segment
            self.plateau = Tracker(mode, seg.plateau["min_delta"]) if seg.plateau else None
            self.early = Tracker(mode, seg.early_stop["min_delta"]) if seg.early_stop else None
            self.best_state = None
        value = event.metrics.get(trainer.manifest.monitor)
        if value is None or not math.isfinite(value):
            return
        inside = engine.global_step < plan.end_of(event.segment)  # the segment goes on
        if self.plateau is not None and seg.plateau is not None:
            self.plateau.update(value)
            if self.plateau.wait >= seg.plateau["patience"] and inside:
                lowered = max(event.lr * seg.plateau["factor"], seg.plateau["min_lr"])
                if lowered < event.lr and lowered > 0:
                    engine.set_lr(lowered)
                    engine.emit(
                        ev.PolicyFired(
                            "plateau",
                            f"plateau: {trainer.manifest.monitor} has not improved for "
                            f"{seg.plateau['patience']} epochs; lr {event.lr:g} -> {lowered:g}",
                            event.global_epoch,
                            lowered,
                        )
                    )
        if self.early is not None and seg.early_stop is not None:
            if self.early.update(value):
                self.best_state = copy.deepcopy(engine.state_dict())
            elif self.early.wait >= seg.early_stop["patience"] and inside and self.best_state:
                best = self.best_state
                self.best_state = None
                engine.submit(lambda: self._restore_best(best, event, seg.early_stop))

    def _restore_best(self, best: dict[str, Any], event: ev.EpochEnd, params: Any) -> None:
        """Stop: keep the best epoch's weights; the later epochs become a branch."""
        trainer = self.trainer
        with trainer.engine._lock:
            trainer.plan.truncate_at(trainer.engine.global_step)
        save_checkpoint(trainer.folder, best)
        epoch = int(best["global_epoch"])
        rolled = trainer.rollback(epoch)
        trainer.engine.emit(
            ev.PolicyFired(
                "early_stop",
                f"early stopping: {trainer.manifest.monitor} has not improved for "
                f"{params['patience']} epochs; restored the best weights, from epoch {epoch} "
                f"(epochs {epoch + 1}-{event.global_epoch} kept as branch "
                f"{rolled.branch['metrics']})",
                epoch,
                trainer.engine.lr,
            )
        )
