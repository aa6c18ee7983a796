"""Engine events: small dataclasses that handlers receive and the runner puts on the wire."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

E = TypeVar("E", bound="Event")


class Emitter:
    """Handlers by event class; `emit` calls them in the order they were added."""

    def __init__(self) -> None:
        self._handlers: dict[type[Event], list[Callable[[Any], None]]] = defaultdict(list)

    def on(self, event: type[E], handler: Callable[[E], None]) -> None:
        self._handlers[event].append(handler)

    def emit(self, event: Event) -> None:
        for handler in self._handlers.get(type(event), ()):
            handler(event)

    def listens(self, event: type[Event]) -> bool:
        return bool(self._handlers.get(event))


@dataclass(frozen=True)
class Event:
    name: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        # Shallow: events are never mutated, and asdict's deep copy costs every epoch.
        return dict(self.__dict__)


@dataclass(frozen=True)
class BatchEnd(Event):
    name: ClassVar[str] = "batch"
    global_step: int
    epoch: int  # the global epoch in progress, 1-based
    batch: int  # 1-based inside the epoch
    batches: int
    loss: float
    lr: float


@dataclass(frozen=True)
class EpochEnd(Event):
    name: ClassVar[str] = "epoch"
    global_epoch: int
    global_step: int
    segment: int
    lr: float
    metrics: dict[str, float] = field(default_factory=dict)
    time: float = 0.0
    # Mean and max total gradient norm (before clipping) over the epoch's steps; None
    # while diagnostics are off (left out of `to_dict`, the row on the wire).
    grad_norm: float | None = None
    grad_norm_max: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        if self.grad_norm is None:
            del out["grad_norm"], out["grad_norm_max"]
        return out


@dataclass(frozen=True)
class SegmentStart(Event):
    name: ClassVar[str] = "segment_start"
    index: int
    segment: dict[str, Any]
    start_step: int


@dataclass(frozen=True)
class SegmentEnd(Event):
    name: ClassVar[str] = "segment_end"
    index: int
    global_epoch: int
    global_step: int
    cut: bool = False  # cut short by an edit (set_lr, end_segment), not reached by training


@dataclass(frozen=True)
class Paused(Event):
    name: ClassVar[str] = "paused"
    reason: str  # operator | queue_empty | stop | error
    global_epoch: int
    global_step: int


@dataclass(frozen=True)
class Resumed(Event):
    name: ClassVar[str] = "resumed"
    global_step: int


@dataclass(frozen=True)
class PlanChanged(Event):
    name: ClassVar[str] = "plan"
    segments: list[dict[str, Any]]
    done_steps: int
    current: int
    steps_per_epoch: int


@dataclass(frozen=True)
class LrSet(Event):
    name: ClassVar[str] = "lr_set"
    lr: float
    global_step: int


@dataclass(frozen=True)
class SettingsSet(Event):
    """Optimizer settings (and maybe the LR) set now, from optimizer step `step`."""

    name: ClassVar[str] = "settings_set"
    settings: dict[str, Any]
    step: int


@dataclass(frozen=True)
class CheckpointSaved(Event):
    name: ClassVar[str] = "checkpoint"
    path: str
    global_epoch: int
    global_step: int


@dataclass(frozen=True)
class Warning(Event):
    name: ClassVar[str] = "warning"
    message: str


@dataclass(frozen=True)
class Error(Event):
    name: ClassVar[str] = "error"
    message: str
    fatal: bool = False


@dataclass(frozen=True)
class RolledBack(Event):
    """The session went back to `global_epoch`; the abandoned path is kept as `branch`."""

    name: ClassVar[str] = "rollback"
    global_epoch: int
    global_step: int
    branch: dict[str, Any]
    lr: float  # the LR the abandoned path had at the fork: a hint for the next plan


@dataclass(frozen=True)
class PolicyFired(Event):
    """A plateau or early-stopping policy acted."""

    name: ClassVar[str] = "policy"
    policy: str  # plateau | early_stop
    message: str
    global_epoch: int
    lr: float


ALL_EVENTS: tuple[type[Event], ...] = (
    BatchEnd,
    EpochEnd,
    SegmentStart,
    SegmentEnd,
    Paused,
    Resumed,
    PlanChanged,
    LrSet,
    SettingsSet,
    CheckpointSaved,
    Warning,
    Error,
    RolledBack,
    PolicyFired,
)
