"""A segment: epochs (or steps) at a learning rate with a shape, and the specs beside it.

The LR at any optimizer step is a pure function of the step's position inside its
segment. No torch here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lrconsole.core.plan import shapes
from lrconsole.errors import UserError

LR_MAX = 10.0
EPOCHS_MAX = 100_000
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


class ScheduleError(UserError):
    """A schedule or segment that cannot be used."""


class OptimizerError(ScheduleError):
    """An optimizer spec that torch refuses: an unknown name, argument or value."""


def check_lr(value: float, where: str = "lr") -> float:
    """Return `value` as a float, or raise naming `where` when it is unusable."""
    lr = float(value)
    if math.isnan(lr) or math.isinf(lr):
        raise ScheduleError(f"{where}: must be a finite number, got {value!r}")
    if lr <= 0:
        raise ScheduleError(f"{where}: must be > 0, got {value!r}")
    if lr > LR_MAX:
        raise ScheduleError(f"{where}: {value!r} is absurdly large (the limit is {LR_MAX:g})")
    return lr


def check_epochs(value: int, where: str = "epochs") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScheduleError(f"{where}: must be a whole number, got {value!r}")
    if value < 1:
        raise ScheduleError(f"{where}: must be at least 1, got {value!r}")
    if value > EPOCHS_MAX:
        raise ScheduleError(f"{where}: {value!r} is too many (the limit is {EPOCHS_MAX:,})")
    return value


# Performance-based policies a segment may enable, with their parameters' defaults
# (names as in Keras' ReduceLROnPlateau and EarlyStopping).
POLICIES: dict[str, dict[str, float]] = {
    "plateau": {"factor": 0.1, "patience": 10, "min_delta": 0.0, "min_lr": 0.0},
    "early_stop": {"patience": 10, "min_delta": 0.0},
}


def check_policy(name: str, data: Any, where: str) -> dict[str, float]:
    """A policy's parameters merged over the defaults, each checked."""
    if data is True or data == {}:
        data = {}
    if not isinstance(data, Mapping):
        raise ScheduleError(f"{where}: must be a mapping of parameters (or true for defaults)")
    merged = dict(POLICIES[name])
    for key, value in data.items():
        if key not in merged:
            raise ScheduleError(f"{where}: unknown parameter {key!r} (known: {', '.join(merged)})")
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ScheduleError(f"{where}.{key}: must be a number, got {value!r}")
        merged[key] = value
    if merged["patience"] < 1 or merged["patience"] != int(merged["patience"]):
        raise ScheduleError(f"{where}.patience: must be a whole number >= 1")
    merged["patience"] = int(merged["patience"])
    if merged["min_delta"] < 0:
        raise ScheduleError(f"{where}.min_delta: must be >= 0")
    if name == "plateau" and not 0 < merged["factor"] < 1:
        raise ScheduleError(f"{where}.factor: must be between 0 and 1, got {merged['factor']}")
    if name == "plateau" and merged["min_lr"] < 0:
        raise ScheduleError(f"{where}.min_lr: must be >= 0")
    return merged


@dataclass(frozen=True)
class Segment:
    """`epochs` epochs (or `steps` optimizer steps) with the LR given by `shape`."""

    lr: float
    epochs: int | None = None
    steps: int | None = None
    shape: str = "constant"
    params: Mapping[str, Any] = field(default_factory=dict)
    fresh_optimizer: bool = False
    plateau: Mapping[str, float] | None = None
    early_stop: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.steps is None):
            raise ScheduleError("a segment needs exactly one of epochs or steps")

    def length(self, steps_per_epoch: int) -> int:
        """The segment's length in optimizer steps."""
        if self.steps is not None:
            return self.steps
        assert self.epochs is not None
        return self.epochs * steps_per_epoch

    def lr_at(self, position: int, steps_per_epoch: int) -> float:
        """The LR at step `position` (0-based) inside this segment."""
        length = self.length(steps_per_epoch)
        if self.params.get("per_epoch"):
            # Per-epoch shapes move once per epoch: count epochs, not steps.
            position //= steps_per_epoch
            length = -(-length // steps_per_epoch)
        return shapes.shape_lr(self.shape, self.lr, self.params, position, length)

    def truncated(self, steps: int, steps_per_epoch: int) -> Segment:
        """This segment cut to its first `steps` steps (in epochs when they divide)."""
        if steps % steps_per_epoch == 0 and self.steps is None:
            return replace(self, epochs=steps // steps_per_epoch)
        return replace(self, epochs=None, steps=steps)

    def describe(self) -> str:
        count, unit = (self.epochs, "epoch") if self.epochs is not None else (self.steps, "step")
        size = f"{count} {unit}{'s' * (count != 1)}"
        shape = "" if self.shape == "constant" else f" {self.shape}"
        fresh = " (fresh optimizer)" if self.fresh_optimizer else ""
        policies = "".join(f" +{name}" for name in POLICIES if getattr(self, name) is not None)
        return f"{size} @ {self.lr:g}{shape}{fresh}{policies}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.epochs is not None:
            out["epochs"] = self.epochs
        else:
            out["steps"] = self.steps
        out["lr"] = self.lr
        if self.shape != "constant":
            out["shape"] = self.shape
            if self.params:
                out["params"] = dict(self.params)
        if self.fresh_optimizer:
            out["fresh_optimizer"] = True
        for name in POLICIES:
            policy = getattr(self, name)
            if policy is not None:
                out[name] = dict(policy)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "segment") -> Segment:
        """Build from plain data (the wire, the manifest), checking every field."""
        known = {"epochs", "steps", "lr", "shape", "params", "fresh_optimizer", *POLICIES}
        unknown = set(data) - known
        if unknown:
            raise ScheduleError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        if "lr" not in data:
            raise ScheduleError(f"{where}: missing field 'lr'")
        if isinstance(data["lr"], bool) or not isinstance(data["lr"], (int, float)):
            raise ScheduleError(f"{where}.lr: must be a number, got {data['lr']!r}")
        lr = check_lr(data["lr"], f"{where}.lr")
        epochs = data.get("epochs")
        steps = data.get("steps")
        if (epochs is None) == (steps is None):
            raise ScheduleError(f"{where}: give exactly one of 'epochs' or 'steps'")
        if epochs is not None:
            check_epochs(epochs, f"{where}.epochs")
        if steps is not None and (
            isinstance(steps, bool) or not isinstance(steps, int) or steps < 1
        ):
            raise ScheduleError(f"{where}.steps: must be a whole number >= 1, got {steps!r}")
        shape = data.get("shape", "constant")
        if shape not in shapes.SHAPES:
            known_shapes = ", ".join(shapes.SHAPES)
            raise ScheduleError(f"{where}.shape: unknown shape {shape!r} (known: {known_shapes})")
        params = data.get("params") or {}
        if not isinstance(params, Mapping):
            raise ScheduleError(f"{where}.params: must be a mapping")
        try:
            shapes.check_params(shape, params)
        except ValueError as exc:
            raise ScheduleError(f"{where}.params: {exc}") from None
        fresh = data.get("fresh_optimizer", False)
        if not isinstance(fresh, bool):
            raise ScheduleError(f"{where}.fresh_optimizer: must be true or false")
        policies = {
            name: check_policy(name, data[name], f"{where}.{name}")
            for name in POLICIES
            if data.get(name) not in (None, False)
        }
        return cls(lr, epochs, steps, shape, dict(params), fresh, **policies)


@dataclass(frozen=True)
class TaskSpec:
    """Which task to train: `lesson`, `module:factory` or `file.py:factory`, with kwargs."""

    spec: str = "lesson"
    args: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "args": dict(self.args)}


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer by name with its keyword arguments (never the LR: segments own it)."""

    name: str = "sgd"
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **dict(self.kwargs)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OptimizerSpec:
        rest = {k: v for k, v in data.items() if k != "name"}
        return cls(str(data.get("name", "sgd")), rest)
