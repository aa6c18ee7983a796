"""Messages between the runner connection and the widgets: small dataclasses.

High-rate messages (`BatchProgress`, `HistoryGrew`, `PlanChanged`) define `can_replace`, so a
newer one supersedes an older one still waiting in the queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message


@dataclass
class Connected(Message):
    """The runner answered `hello`; `snapshot` is its result."""

    snapshot: dict[str, Any]


@dataclass
class HistoryGrew(Message):
    """New epochs were added to the run model; `epochs` is the global epoch counter."""

    epochs: int

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, HistoryGrew)


@dataclass
class BatchProgress(Message):
    """The newest `batch` event."""

    data: dict[str, Any]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, BatchProgress)


@dataclass
class PlanChanged(Message):
    """The queue of segments changed."""

    plan: dict[str, Any]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, PlanChanged)


@dataclass
class RunStateChanged(Message):
    """Training paused or resumed. `state` is "running" or "paused"."""

    state: str
    reason: str | None = None
    global_epoch: int = 0


@dataclass
class SegmentStarted(Message):
    index: int
    segment: dict[str, Any] = field(default_factory=dict)


@dataclass
class LrSet(Message):
    """The LR was set "now" (by this console or another client) from `global_step`."""

    lr: float
    global_step: int


@dataclass
class SettingsSet(Message):
    """Optimizer settings were set "now" (by this console or another client) from optimizer
    step `step`; `settings` as on the wire (betas a list, clipping off as None)."""

    settings: dict[str, Any]
    step: int


@dataclass
class CheckpointSaved(Message):
    path: str
    global_epoch: int


@dataclass
class RunnerWarning(Message):
    message: str


@dataclass
class RunnerError(Message):
    message: str
    fatal: bool = False


@dataclass
class CommandSent(Message):
    """The console sent `cmd` to the runner (tests watch for these)."""

    cmd: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class InputRejected(Message):
    """The planner refused an input; nothing was queued or sent."""

    field_id: str
    error: str


@dataclass
class SegmentRequested(Message):
    """The planner has a valid segment to queue (or to put in place of queue item `edit`)."""

    epochs: int
    lr: float
    edit: int | None = None
    # The optional fields filled in (momentum, betas, weight_decay, clip_grad_norm, note):
    # only those are sent; a field left out keeps the previous segment's value.
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class QueueEditRequested(Message):
    """The operator wants to change (`remove=False`) or drop queued item `position`."""

    position: int
    remove: bool = False


@dataclass
class TensorBoardStarted(Message):
    url: str


@dataclass
class ScheduleExported(Message):
    path: str
