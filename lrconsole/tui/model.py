"""What the console knows about a run: built from the runner's snapshot and events.

Pure Python, no Textual: the controller updates it, the widgets read it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from lrconsole.core.session.metrics import better
from lrconsole.tui.clock import TrainingClock
from lrconsole.tui.series import Series


@dataclass(frozen=True)
class SegmentRow:
    """One line of the segment history table."""

    index: int
    epochs: str
    lr: float
    end_epoch: int
    metrics: dict[str, float]
    change: dict[str, float | None]


def segment_length(segment: dict[str, Any], steps_per_epoch: int) -> int:
    if segment.get("steps") is not None:
        return int(segment["steps"])
    return int(segment.get("epochs") or 0) * steps_per_epoch


def describe_segment(segment: dict[str, Any]) -> str:
    size = (
        f"{segment['epochs']} ep"
        if segment.get("epochs") is not None
        else f"{segment.get('steps')} steps"
    )
    shape = segment.get("shape", "constant")
    extra = "" if shape == "constant" else f" {shape}"
    return f"{size} @ {float(segment['lr']):g}{extra}"


PREVIEW_LIMIT = 200_000  # epochs; past this the planned curve is not drawn
GRAD_FIELDS = ("grad_norm", "grad_norm_max")


def monitor_mode(metric: str) -> str:
    """The better direction of a metric: "max" for accuracy and the like, else "min"."""
    return "max" if any(w in metric.lower() for w in ("acc", "f1", "auc", "score")) else "min"


class RunModel:
    """The console-side picture of one session."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.session: dict[str, Any] = {}
        self.metrics: list[str] = []
        self.monitor: str | None = None
        self.series: dict[str, Series] = {}
        self.lr = Series()
        # Gradient norms per epoch (mean and max before clipping), aligned with `lr`; NaN
        # where a row has none (older sessions, own loops).
        self.grad_norm = Series()
        self.grad_norm_max = Series()
        self.has_grad_norm = False
        self.best: tuple[int, float] | None = None  # (series index, value) of the monitor
        # Abandoned paths (rollback branches): name -> the monitored metric, NaN before the fork.
        self.branches: dict[str, Series] = {}
        self._planned_key: tuple[int, int] | None = None
        self._planned: Series | None = None
        self.first_epoch = 1
        self.global_epoch = 0
        self.global_step = 0
        self.steps_per_epoch = 1
        self.state: dict[str, Any] = {"state": "paused", "reason": None}
        self.plan: dict[str, Any] = {"segments": [], "done_steps": 0, "current": 0}
        self.batch: dict[str, Any] | None = None
        self.last_metrics: dict[str, float] = {}
        self.last_checkpoint_epoch: int | None = None
        self.policy_marks: list[tuple[int, str]] = []  # (epoch, plateau | early_stop)
        self.segment_first_epoch: dict[int, int] = {}
        self.segment_last_row: dict[int, dict[str, Any]] = {}
        self.clock = TrainingClock()  # the run's training time, from the rows' `time`
        self.epoch_times: deque[float] = deque(maxlen=50)
        self.last_error: str | None = None
        self.version = 0  # bumps whenever the history grows

    # -- loading ------------------------------------------------------------------------
    def load_snapshot(self, snap: dict[str, Any]) -> None:
        self._reset()
        self.session = dict(snap.get("session") or {})
        self.steps_per_epoch = int(self.session.get("steps_per_epoch") or 1)
        self.metrics = list(self.session.get("metrics") or [])
        self.monitor = self.session.get("monitor")
        for mark in self.session.get("policy_marks") or []:
            self.add_policy_mark(int(mark.get("epoch", 0)), str(mark.get("policy", "")))
        self.state = dict(snap.get("state") or self.state)
        self.plan = dict(snap.get("plan") or self.plan)
        self.global_step = int(self.plan.get("done_steps") or 0)
        history = list(snap.get("history") or [])
        if history:
            self.first_epoch = int(history[0]["global_epoch"])
        for row in history:
            self.add_epoch(row, live=False)
        self.global_epoch = max(self.global_epoch, int(self.state.get("global_epoch") or 0))

    def add_epoch(self, row: dict[str, Any], live: bool = True) -> None:
        metrics = {k: float(v) for k, v in (row.get("metrics") or {}).items()}
        # Top-level in the runner's rows; a metrics.csv column when read from disk.
        grads = [
            float(row[k]) if row.get(k) is not None else metrics.get(k, math.nan)
            for k in GRAD_FIELDS
        ]
        for k in GRAD_FIELDS:
            metrics.pop(k, None)  # not a loss metric: its own chart
        if not self.series and not self.global_epoch:
            self.first_epoch = int(row["global_epoch"])
        for name in metrics:
            if name not in self.metrics:
                self.metrics.append(name)
        self._fill_thinned(int(row["global_epoch"]))
        for name in self.metrics:
            series = self.series.get(name)
            if series is None:
                # A metric that appears late is padded with gaps so the x axes agree.
                series = self.series[name] = Series([math.nan] * len(self.lr))
            series.append(metrics.get(name, math.nan))
        self.lr.append(float(row.get("lr", math.nan)))
        self.grad_norm.append(grads[0])
        self.grad_norm_max.append(grads[1])
        self.has_grad_norm = self.has_grad_norm or math.isfinite(grads[0])
        value = metrics.get(self.monitor or "", math.nan)
        mode = self.session.get("monitor_mode") or monitor_mode(self.monitor or "")
        if math.isfinite(value) and (self.best is None or better(value, self.best[1], mode)):
            self.best = (len(self.lr) - 1, value)
        self.global_epoch = int(row["global_epoch"])
        self.global_step = max(self.global_step, int(row.get("global_step") or 0))
        self.last_metrics = metrics
        seg = int(row.get("segment", 0))
        self.segment_first_epoch.setdefault(seg, self.global_epoch)
        if row.get("time") is not None:
            self.clock.add(self.global_epoch, float(row["time"]))
        self.segment_last_row[seg] = row
        if live:
            self.epoch_times.append(time.monotonic())
        self.version += 1

    def _fill_thinned(self, epoch: int) -> None:
        """A long run's snapshot history is thinned (older epochs kept every k-th): the
        epochs left out are gaps in the metrics and the LR held, so a point's position
        stays its epoch and the charts keep the whole range."""
        missing = epoch - self.global_epoch - 1 if self.lr else 0
        for _ in range(max(0, missing)):
            for series in (*self.series.values(), self.grad_norm, self.grad_norm_max):
                series.append(math.nan)
            self.lr.append(self.lr.last)

    def last_trained_lr(self) -> float:
        """The LR of the last segment that trained (its base LR, not where a decay
        ended), else the last epoch's, else NaN."""
        segs, trained = self.segments(), self.segment_first_epoch
        last = segs[max(trained)] if trained and max(trained) < len(segs) else {}
        if "lr" in last:
            return float(last["lr"])
        return self.lr.last if len(self.lr) else math.nan

    def add_policy_mark(self, epoch: int, policy: str) -> None:
        if (epoch, policy) not in self.policy_marks:
            self.policy_marks.append((epoch, policy))
            self.version += 1

    # -- derived values -----------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.state.get("state") == "running"

    def segments(self) -> list[dict[str, Any]]:
        return list(self.plan.get("segments") or [])

    def starts(self) -> list[int]:
        out, at = [], 0
        for seg in self.segments():
            out.append(at)
            at += segment_length(seg, self.steps_per_epoch)
        return out

    def done_steps(self) -> int:
        step = int(self.plan.get("done_steps") or 0)
        if self.batch:
            step = max(step, int(self.batch.get("global_step") or 0))
        return max(step, self.global_step)

    def pending(self) -> list[int]:
        """Indices of the segments that have not started: the editable queue."""
        segs = self.segments()
        starts = self.starts()
        done = self.done_steps()
        current = int(self.plan.get("current", len(segs)) or 0)
        first = current
        if current < len(segs) and starts[current] < done:
            first = current + 1
        return list(range(min(first, len(segs)), len(segs)))

    def queued(self) -> list[dict[str, Any]]:
        """Copies of the segments that have not started, in order."""
        segs = self.segments()
        return [dict(segs[i]) for i in self.pending()]

    def current_segment(self) -> tuple[int, dict[str, Any], int, int] | None:
        """(index, segment, steps done in it, its length) of the running segment."""
        segs = self.segments()
        if not segs:
            return None
        done = self.done_steps()
        starts = self.starts()
        index = int(self.plan.get("current", 0) or 0)
        index = min(index, len(segs) - 1)
        # The plan's `current` can lag behind the batch events: find the segment by step.
        while index + 1 < len(segs) and starts[index + 1] <= done and self._started(index + 1):
            index += 1
        length = segment_length(segs[index], self.steps_per_epoch)
        return index, segs[index], max(0, min(length, done - starts[index])), length

    def _started(self, index: int) -> bool:
        return index in self.segment_first_epoch or index <= int(self.plan.get("current", 0))

    def remaining_steps(self) -> int:
        total = sum(segment_length(s, self.steps_per_epoch) for s in self.segments())
        return max(0, total - self.done_steps())

    def eta_seconds(self) -> float | None:
        """Seconds until the queue runs dry, from the recent epoch rate; None if unknown."""
        if not self.running or len(self.epoch_times) < 2:
            return None
        span = self.epoch_times[-1] - self.epoch_times[0]
        per_epoch = span / (len(self.epoch_times) - 1)
        return per_epoch * self.remaining_steps() / self.steps_per_epoch

    def current_lr(self) -> float | None:
        if self.batch and self.batch.get("lr") is not None:
            return float(self.batch["lr"])
        if self.state.get("lr"):
            return float(self.state["lr"])
        last = self.lr.last
        return None if math.isnan(last) else last

    def set_current_lr(self, lr: float) -> None:
        """The LR was set "now": the next steps use it, whatever the last batch said."""
        self.state = {**self.state, "lr": lr}
        if self.batch:
            self.batch = {**self.batch, "lr": lr}

    def planned_lr(self) -> Series | None:
        """The LR of each epoch still planned, after the history (NaN there): the preview."""
        key = (id(self.plan), len(self.lr))
        if key != self._planned_key:
            self._planned_key = key
            self._planned = self._build_planned()
        return self._planned

    def _build_planned(self) -> Series | None:
        from lrconsole.core.plan.segment import ScheduleError, Segment

        segs, starts, spe = self.segments(), self.starts(), self.steps_per_epoch
        if not segs:
            return None
        done = self.first_epoch - 1 + len(self.lr)
        last = -(-(starts[-1] + segment_length(segs[-1], spe)) // spe)
        if last <= done or len(self.lr) + last - done > PREVIEW_LIMIT:
            return None
        try:
            parsed = [Segment.from_dict(s) for s in segs]
        except ScheduleError:
            return None
        values = [math.nan] * len(self.lr)
        index = 0
        for epoch in range(done, last):
            step = epoch * spe
            while index + 1 < len(segs) and starts[index + 1] <= step:
                index += 1
            values.append(parsed[index].lr_at(step - starts[index], spe))
        return Series(values)

    def boundary_indices(self) -> list[int]:
        """Series indices where a new segment begins (for the chart markers)."""
        return sorted(
            first - self.first_epoch
            for first in self.segment_first_epoch.values()
            if first > self.first_epoch
        )

    def segment_rows(self) -> list[SegmentRow]:
        segs = self.segments()
        rows: list[SegmentRow] = []
        previous: dict[str, float] | None = None
        for index in sorted(self.segment_last_row):
            row = self.segment_last_row[index]
            metrics = {k: float(v) for k, v in (row.get("metrics") or {}).items()}
            seg = segs[index] if index < len(segs) else {"lr": row.get("lr", math.nan)}
            first = self.segment_first_epoch.get(index, int(row["global_epoch"]))
            done = int(row["global_epoch"]) - first + 1
            planned = seg.get("epochs")
            epochs = f"{done}/{planned}" if planned is not None and planned != done else str(done)
            change: dict[str, float | None] = {
                k: (v - previous[k]) if previous and k in previous else None
                for k, v in metrics.items()
            }
            rows.append(
                SegmentRow(
                    index,
                    epochs,
                    float(seg.get("lr", math.nan)),
                    int(row["global_epoch"]),
                    metrics,
                    change,
                )
            )
            previous = metrics
        return rows
