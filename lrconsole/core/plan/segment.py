"""A segment: epochs (or steps) at a learning rate with a shape, and the specs beside it.

The LR at any optimizer step is a pure function of the step's position inside its
segment. No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lrconsole.core.plan import settings as opt
from lrconsole.core.plan import shapes
from lrconsole.core.plan.schema import (
    EPOCHS_MAX,
    LR_MAX,
    OPTIMIZERS,
    POLICIES,
    Field,
    ScheduleError,
    check_epochs,
    check_lr,
    read_epochs,
    read_lr,
    read_params,
    read_policy,
    read_shape,
    read_steps,
)

# The rules live in the schema; these names are imported from here by older code.
__all__ = [
    "EPOCHS_MAX",
    "LR_MAX",
    "OPTIMIZERS",
    "POLICIES",
    "OptimizerError",
    "OptimizerSpec",
    "ScheduleError",
    "Segment",
    "TaskSpec",
    "check_epochs",
    "check_lr",
]


class OptimizerError(ScheduleError):
    """An optimizer spec that torch refuses: an unknown name, argument or value."""


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
    # Optimizer settings (core.plan.settings): None = the previous segment's value.
    momentum: float | None = None
    betas: tuple[float, float] | None = None
    weight_decay: float | None = None
    clip_grad_norm: float | None = None  # settings.CLIP_OFF (0.0): clipping off
    # Why this segment: never inherited, never changes training, so not compared either
    # (a path whose notes were edited is still the path trained).
    note: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.steps is None):
            raise ScheduleError("a segment needs exactly one of epochs or steps")

    def settings(self) -> dict[str, Any]:
        """The optimizer settings this segment sets itself (the others it inherits)."""
        return {
            name: getattr(self, name) for name in opt.SETTINGS if getattr(self, name) is not None
        }

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
        return f"{size} @ {self.lr:g}{shape}{opt.describe(self.settings())}{fresh}{policies}"

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
        out.update(opt.to_wire(self.settings()))
        if self.fresh_optimizer:
            out["fresh_optimizer"] = True
        for name in POLICIES:
            policy = getattr(self, name)
            if policy is not None:
                out[name] = dict(policy)
        if self.note:
            out["note"] = self.note
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "segment") -> Segment:
        """Build from plain data (the wire, the console), checking every field."""
        return cls.read(Field(data, where))

    @classmethod
    def read(cls, f: Field) -> Segment:
        """Build from a schema field (FieldError, with its path, when a rule is broken)."""
        known = ("epochs", "steps", "shape", "params", *opt.SETTINGS, "fresh_optimizer")
        given = f.fields(required=("lr",), optional=(*known, *POLICIES, "note"))
        lr = read_lr(given["lr"])
        if ("epochs" in given) == ("steps" in given):
            f.fail("give exactly one of 'epochs' or 'steps'")
        epochs = read_epochs(given["epochs"]) if "epochs" in given else None
        steps = read_steps(given["steps"]) if "steps" in given else None
        shape = read_shape(given["shape"]) if "shape" in given else "constant"
        params = read_params(shape, given["params"]) if "params" in given else {}
        fresh = given["fresh_optimizer"].boolean() if "fresh_optimizer" in given else False
        policies: dict[str, Any] = {
            name: read_policy(name, given[name])
            for name in POLICIES
            if name in given and given[name].value not in (None, False)
        }
        out = cls(lr, epochs, steps, shape, params, fresh, **policies)
        note = opt.read_note(given["note"]) if "note" in given else ""
        return replace(out, **opt.read_settings(given), note=note)


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
