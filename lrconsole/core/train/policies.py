"""Plateau and early-stopping policies: handlers on epoch ends, per segment.

A policy's state (best value, epochs waited) starts afresh with each segment. When the
plateau policy lowers the LR it splits the segment there, so the tail is a new segment:
the exported schedule records the lower LR, and a replay meets the same decisions.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

from lrconsole.core.session.session import Session
from lrconsole.core.session.store import save_checkpoint
from lrconsole.core.train import events as ev
from lrconsole.core.train.engine import Engine

Rollback = Callable[[int], ev.RolledBack]


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
    """`rollback(epoch)` goes back to a kept checkpoint (the trainer's, which branches)."""

    def __init__(self, session: Session, engine: Engine, rollback: Rollback) -> None:
        self.session = session
        self.engine = engine
        self.rollback = rollback
        self.segment = -1
        self.plateau: Tracker | None = None
        self.early: Tracker | None = None
        self.best_state: dict[str, Any] | None = None

    def on_epoch(self, event: ev.EpochEnd) -> None:
        engine, manifest = self.engine, self.session.manifest
        plan = engine.plan
        if event.segment >= len(plan.segments):
            return
        seg = plan.segments[event.segment]
        mode = manifest.monitor_mode
        if event.segment != self.segment:  # a new segment: its policies start afresh
            self.segment = event.segment
            self.plateau = Tracker(mode, seg.plateau["min_delta"]) if seg.plateau else None
            self.early = Tracker(mode, seg.early_stop["min_delta"]) if seg.early_stop else None
            self.best_state = None
        value = event.metrics.get(manifest.monitor)
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
                            f"plateau: {manifest.monitor} has not improved for "
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
        engine, monitor = self.engine, self.session.manifest.monitor
        engine.end_segment_here()
        save_checkpoint(self.session.folder, best)
        epoch = int(best["global_epoch"])
        rolled = self.rollback(epoch)
        engine.emit(
            ev.PolicyFired(
                "early_stop",
                f"early stopping: {monitor} has not improved for "
                f"{params['patience']} epochs; restored the best weights, from epoch {epoch} "
                f"(epochs {epoch + 1}-{event.global_epoch} kept as branch "
                f"{rolled.branch['metrics']})",
                epoch,
                engine.lr,
            )
        )
