"""Schedules: a whole run (task, seed, optimizer, segments) and its YAML form.

The LR at any optimizer step is a pure function of the step's position inside its
segment. Nothing here imports torch, so the console and `lrconsole --help` stay fast;
`Schedule.lambda_lr` imports it only when called.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lrconsole.core.plan.schema import Checker, Node, load_nodes
from lrconsole.core.plan.segment import (
    OPTIMIZERS,
    OptimizerSpec,
    ScheduleError,
    Segment,
    TaskSpec,
)

if TYPE_CHECKING:
    import torch

SCHEDULE_VERSION = 1


@dataclass
class Schedule:
    """A whole run: task, seed, optimizer and segments. Loads from and dumps to YAML."""

    segments: list[Segment]
    steps_per_epoch: int | None = None
    task: TaskSpec = field(default_factory=TaskSpec)
    seed: int = 0
    threads: int | None = None
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    spike_factor: float | None = 10.0

    # -- the LR as a function of position ---------------------------------------------
    def _spe(self, steps_per_epoch: int | None) -> int:
        spe = steps_per_epoch or self.steps_per_epoch
        if not spe:
            raise ScheduleError("steps_per_epoch is unknown: pass it, or set it in the YAML")
        return spe

    def starts(self, steps_per_epoch: int | None = None) -> list[int]:
        """The global step at which each segment starts."""
        spe = self._spe(steps_per_epoch)
        out, at = [], 0
        for seg in self.segments:
            out.append(at)
            at += seg.length(spe)
        return out

    def total_steps(self, steps_per_epoch: int | None = None) -> int:
        spe = self._spe(steps_per_epoch)
        return sum(seg.length(spe) for seg in self.segments)

    def total_epochs(self, steps_per_epoch: int | None = None) -> float:
        spe = self._spe(steps_per_epoch)
        return self.total_steps(spe) / spe

    def locate(self, global_step: int, steps_per_epoch: int | None = None) -> tuple[int, int]:
        """(segment index, position inside it) of a global step; past the end, the last."""
        starts = self.starts(steps_per_epoch)
        if not starts:
            raise ScheduleError("the schedule has no segments")
        index = max(0, bisect.bisect_right(starts, global_step) - 1)
        return index, global_step - starts[index]

    def lr_at_step(self, global_step: int, steps_per_epoch: int | None = None) -> float:
        """The LR used by optimizer step `global_step` (0-based)."""
        spe = self._spe(steps_per_epoch)
        index, pos = self.locate(global_step, spe)
        seg = self.segments[index]
        return seg.lr_at(min(pos, seg.length(spe) - 1), spe)

    def lr(self, epoch: int, step: int = 0, steps_per_epoch: int | None = None) -> float:
        """The LR at batch `step` of epoch `epoch` (both 0-based)."""
        spe = self._spe(steps_per_epoch)
        return self.lr_at_step(epoch * spe + step, spe)

    def lambda_lr(
        self, optimizer: torch.optim.Optimizer, steps_per_epoch: int | None = None
    ) -> torch.optim.lr_scheduler.LambdaLR:
        """A LambdaLR that sets exactly this schedule's LR; call `.step()` after each batch.

        Every param group's base LR is set to 1.0 first, so the factor LambdaLR applies
        *is* the LR and no rounding creeps in from a ratio of two LRs.
        """
        from torch.optim.lr_scheduler import LambdaLR

        spe = self._spe(steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = 1.0
            group["initial_lr"] = 1.0
        return LambdaLR(optimizer, lambda step: self.lr_at_step(step, spe))

    def iter_lrs(self, steps_per_epoch: int | None = None) -> Iterator[float]:
        spe = self._spe(steps_per_epoch)
        for seg in self.segments:
            for pos in range(seg.length(spe)):
                yield seg.lr_at(pos, spe)

    # -- YAML -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": SCHEDULE_VERSION, "task": self.task.to_dict()}
        out["seed"] = self.seed
        if self.threads is not None:
            out["threads"] = self.threads
        out["optimizer"] = self.optimizer.to_dict()
        if self.steps_per_epoch is not None:
            out["steps_per_epoch"] = self.steps_per_epoch
        if self.spike_factor != 10.0:
            out["spike_factor"] = self.spike_factor
        out["segments"] = [seg.to_dict() for seg in self.segments]
        return out

    def dumps(self) -> str:
        header = "# lrconsole schedule: replay with `lrconsole run NAME --schedule THIS_FILE`\n"
        return header + yaml.safe_dump(self.to_dict(), sort_keys=False)

    def dump(self, path: str | Path) -> None:
        """Write the YAML atomically; a path that cannot be written raises ScheduleError."""
        from lrconsole.core.atomic import atomic_write_text, why_unwritable

        path = Path(path)
        if path.is_dir():
            raise ScheduleError(f"{path}: is a folder; give a file name")
        try:
            atomic_write_text(path, self.dumps())
        except OSError as exc:
            raise ScheduleError(f"{path}: cannot write: {why_unwritable(path, exc)}") from None

    @classmethod
    def load(cls, path: str | Path) -> Schedule:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ScheduleError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ScheduleError(f"{path}: cannot read: {exc}") from None
        return cls.loads(text, source=str(path))

    @classmethod
    def loads(cls, text: str, source: str = "<schedule>") -> Schedule:
        root = load_nodes(text, source)
        return _parse_schedule(Checker(source), root)


def _parse_schedule(check: Checker, root: Node) -> Schedule:
    top = check.mapping(
        root,
        "schedule",
        required=("segments",),
        optional=(
            "version",
            "task",
            "seed",
            "threads",
            "optimizer",
            "steps_per_epoch",
            "spike_factor",
        ),
    )
    if "version" in top:
        version = check.integer(top["version"], "version", minimum=1)
        if version > SCHEDULE_VERSION:
            check.fail(
                top["version"],
                "version",
                f"{version} is newer than this lrconsole understands ({SCHEDULE_VERSION})",
            )
    task = TaskSpec()
    if "task" in top:
        if isinstance(top["task"].value, str):
            task = TaskSpec(check.string(top["task"], "task"))
        else:
            t = check.mapping(top["task"], "task", required=("spec",), optional=("args",))
            args = check.plain(t["args"], "task.args", dict) if "args" in t else {}
            task = TaskSpec(check.string(t["spec"], "task.spec"), args)
    seed = check.integer(top["seed"], "seed", minimum=0) if "seed" in top else 0
    threads = check.integer(top["threads"], "threads", minimum=1) if "threads" in top else None
    optimizer = OptimizerSpec()
    if "optimizer" in top:
        if isinstance(top["optimizer"].value, str):
            data: dict[str, Any] = {"name": check.string(top["optimizer"], "optimizer")}
        else:
            data = check.plain(top["optimizer"], "optimizer", dict)
        if "lr" in data:
            check.fail(top["optimizer"], "optimizer.lr", "the LR belongs to the segments")
        name = str(data.get("name", "sgd")).lower()
        if name not in OPTIMIZERS:
            check.fail(
                top["optimizer"],
                "optimizer.name",
                f"unknown optimizer {name!r} (known: {', '.join(OPTIMIZERS)})",
            )
        for key, value in data.items():
            if key != "name":
                _check_optimizer_arg(check, top["optimizer"], key, value)
        optimizer = OptimizerSpec.from_dict({**data, "name": name})
    spe = None
    if "steps_per_epoch" in top:
        spe = check.integer(top["steps_per_epoch"], "steps_per_epoch", minimum=1)
    seg_nodes = check.sequence(top["segments"], "segments")
    if not seg_nodes:
        check.fail(top["segments"], "segments", "needs at least one segment")
    segments = []
    for i, node in enumerate(seg_nodes):
        where = f"segments[{i}]"
        data = check.plain(node, where, dict)
        try:
            segments.append(Segment.from_dict(data, where))
        except ScheduleError as exc:
            check.fail(check.field_node(node, str(exc)), None, str(exc))
    spike: float | None = 10.0
    if "spike_factor" in top:
        spike = check.plain(top["spike_factor"], "spike_factor", object)
        if spike is not None and (
            isinstance(spike, bool) or not isinstance(spike, (int, float)) or not spike > 1
        ):
            check.fail(top["spike_factor"], "spike_factor", "must be a number > 1, or null for off")
    return Schedule(segments, spe, task, seed, threads, optimizer, spike)


def _check_optimizer_arg(check: Checker, node: Node, key: Any, value: Any) -> None:
    """The types every argument of torch's sgd, adam, adamw and rmsprop needs: a
    finite number, true/false or null, and for `betas` two numbers. Values torch
    refuses for other reasons (a negative momentum) are caught when it is built."""
    if not isinstance(key, str) or not key.isidentifier():
        check.fail(node, "optimizer", f"{key!r} is not an argument name")
    where = f"optimizer.{key}"
    at = check.field_node(node, f"'{key}'")

    def number(v: Any) -> bool:
        return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)

    if key == "betas":
        if not (isinstance(value, list) and len(value) == 2 and all(map(number, value))):
            check.fail(
                at, where, f"must be a list of two numbers, like [0.9, 0.999], got {value!r}"
            )
    elif isinstance(value, float) and not math.isfinite(value):
        check.fail(at, where, f"must be a finite number, got {value!r}")
    elif value is not None and not isinstance(value, (bool, int, float)):
        check.fail(at, where, f"must be a number, true/false or null, got {value!r}")
