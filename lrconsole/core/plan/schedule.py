"""Schedules: a whole run (task, seed, optimizer, segments) and its YAML form.

The LR at any optimizer step is a pure function of the step's position inside its
segment. Nothing here imports torch, so the console and `lrconsole --help` stay fast;
`Schedule.lambda_lr` imports it only when called.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lrconsole.core.plan import settings as opt
from lrconsole.core.plan import yamldoc
from lrconsole.core.plan.schema import (
    GRAD_GUARD_FIELDS,
    OPTIMIZERS,
    SEED_MAX,
    THREADS_MAX,
    Field,
    FieldError,
    ScheduleError,
    read_bounded,
    read_grad_guard,
    read_optimizer_arg,
    read_segment_list,
    read_spike_factor,
    show,
)
from lrconsole.core.plan.segment import OptimizerSpec, Segment, TaskSpec

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
    keep_checkpoints: int = 3  # newest checkpoints kept, and newest segment boundaries
    grad_guard: dict[str, Any] = field(default_factory=dict)  # GRAD_GUARD_FIELDS given

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
        if self.keep_checkpoints != 3:
            out["keep_checkpoints"] = self.keep_checkpoints
        out.update(self.grad_guard)
        out["segments"] = segment_dicts(self.segments)
        return out

    def dumps(self) -> str:
        header = "# lrconsole schedule: replay with `lrconsole run NAME --schedule THIS_FILE`\n"
        return header + self._numbered(yaml.safe_dump(self.to_dict(), sort_keys=False))

    def _numbered(self, text: str) -> str:
        """Each segment headed by a comment: its number (from 1, as everywhere) and epochs."""
        spe, out, n = self.steps_per_epoch, [], 0
        starts = self.starts(spe) if spe else []
        inside = False
        for line in text.splitlines(keepends=True):
            if not line.startswith((" ", "-")):
                inside = line.startswith("segments:")
            elif inside and line.startswith("- "):
                note = f"# segment {n + 1}"
                if spe:
                    first = starts[n] // spe + 1
                    last = (starts[n] + self.segments[n].length(spe) - 1) // spe + 1
                    note += f": epoch {first}" if first == last else f": epochs {first}-{last}"
                out.append(note + "\n")
                n += 1
            out.append(line)
        return "".join(out)

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
        refused = yamldoc.too_big(path)  # before it is read: a 50 MB file costs minutes
        if refused:
            raise ScheduleError(refused)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ScheduleError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ScheduleError(f"{path}: cannot read: {exc}") from None
        return cls.loads(text, source=str(path))

    @classmethod
    def loads(cls, text: str, source: str = "<schedule>") -> Schedule:
        doc = yamldoc.load(text, source)
        try:
            return read_schedule(Field.document(doc.data, "schedule"))
        except FieldError as exc:
            raise doc.error(exc) from None


TOP_FIELDS = (
    "version",
    "task",
    "seed",
    "threads",
    "optimizer",
    "steps_per_epoch",
    "spike_factor",
    "keep_checkpoints",
    *GRAD_GUARD_FIELDS,
)


def read_schedule(root: Field) -> Schedule:
    """A schedule from plain data; FieldError (with the path) for the first broken rule."""
    top = root.fields(required=("segments",), optional=TOP_FIELDS)
    if "version" in top:
        version = top["version"].whole(minimum=1)
        if version > SCHEDULE_VERSION:
            top["version"].fail(
                f"{version} is newer than this lrconsole understands ({SCHEDULE_VERSION})"
            )
    task = read_task(top["task"]) if "task" in top else TaskSpec()
    seed = read_bounded(top["seed"], 0, SEED_MAX) if "seed" in top else 0
    threads = read_bounded(top["threads"], 1, THREADS_MAX) if "threads" in top else None
    optimizer = read_optimizer(top["optimizer"]) if "optimizer" in top else OptimizerSpec()
    spe = top["steps_per_epoch"].whole(minimum=1) if "steps_per_epoch" in top else None
    items = read_segment_list(top["segments"])
    for item in items:  # a setting the optimizer lacks, on its line
        if isinstance(item.value, dict):
            opt.check_optimizer(optimizer.name, {k: item.at(k) for k in item.value})
    segments = [Segment.read(f) for f in items]
    spike = read_spike_factor(top["spike_factor"]) if "spike_factor" in top else 10.0
    keep = read_bounded(top["keep_checkpoints"], 1, 1000) if "keep_checkpoints" in top else 3
    guard = read_grad_guard(top)
    return Schedule(segments, spe, task, seed, threads, optimizer, spike, keep, guard)


def segment_dicts(segments: list[Segment]) -> list[dict[str, Any]]:
    """Each segment as data, with only the settings that differ from the previous one's
    (a setting equal to what is in force already says nothing)."""
    out = []
    for seg, same in zip(segments, opt.repeated(segments), strict=True):
        out.append({k: v for k, v in seg.to_dict().items() if k not in same})
    return out


def read_task(f: Field) -> TaskSpec:
    """`task: lesson`, or `task: {spec: ..., args: {...}}`."""
    if isinstance(f.value, str):
        return TaskSpec(f.string())
    given = f.fields(required=("spec",), optional=("args",))
    args = given["args"].mapping() if "args" in given else {}
    return TaskSpec(given["spec"].string(), dict(args))


def read_optimizer(f: Field) -> OptimizerSpec:
    """`optimizer: adam`, or a mapping of `name` and torch's keyword arguments."""
    if isinstance(f.value, str):
        f = f.with_value({"name": f.value})
    data = f.mapping()
    if "lr" in data:
        f.at("lr").fail("the LR belongs to the segments")
    name = str(data.get("name", "sgd")).lower()
    if name not in OPTIMIZERS:
        f.at("name").fail(f"unknown optimizer {name!r} (known: {', '.join(OPTIMIZERS)})")
    kwargs = {}
    for key, arg in f.items():
        if key == "name":
            continue
        if not isinstance(key, str) or not key.isidentifier():
            f.fail_key(key, f"{show(key)} is not an argument name")
        kwargs[key] = read_optimizer_arg(arg)
    return OptimizerSpec(name, kwargs)
