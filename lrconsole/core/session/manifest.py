"""The session manifest (`manifest.yaml`): what a session is and where it stands. No torch.

The folder's other files are listed in `layout`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lrconsole._version import __version__
from lrconsole.core.atomic import atomic_write_text
from lrconsole.core.plan import yamldoc
from lrconsole.core.plan.schedule import Schedule, read_optimizer, read_task
from lrconsole.core.plan.schema import (
    GRAD_GUARD_FIELDS,
    SEED_MAX,
    THREADS_MAX,
    Field,
    FieldError,
    read_bounded,
    read_grad_guard,
    read_segment_list,
    read_spike_factor,
)
from lrconsole.core.plan.segment import OptimizerSpec, Segment, TaskSpec
from lrconsole.core.session.layout import CHECKPOINT_NAME, MANIFEST
from lrconsole.errors import UserError

MANIFEST_FORMAT = 1


SAFE_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class SessionError(UserError):
    """A session folder that is missing, broken or newer than this lrconsole."""


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class Manifest:
    name: str
    task: TaskSpec
    seed: int
    optimizer: OptimizerSpec
    steps_per_epoch: int
    metrics: list[str]
    monitor: str
    monitor_mode: str = "min"
    threads: int | None = None
    segments: list[Segment] = field(default_factory=list)
    global_epoch: int = 0
    global_step: int = 0
    checkpoint: str | None = None
    state: str = "paused"
    keep_checkpoints: int = 3
    # Checkpoints the user pinned (`lrconsole pin`), by global step: pruning keeps them.
    pinned_steps: list[int] = field(default_factory=list)
    best: dict[str, Any] | None = None
    spike_factor: float | None = 10.0
    grad_guard: dict[str, Any] = field(default_factory=dict)  # GRAD_GUARD_FIELDS given
    path: int = 0  # which path this is: each rollback starts a new one
    branches: list[dict[str, Any]] = field(default_factory=list)
    # Where a plateau or early-stopping policy acted on this path: {epoch, policy, lr}.
    policy_marks: list[dict[str, Any]] = field(default_factory=list)
    # Set while the last run diverged past the checkpoint: {step, epoch, lr} of the bad step
    # (epoch: the one it belongs to, from 1). Cleared by the next checkpoint or a rollback.
    diverged: dict[str, Any] | None = None
    # How checkpointing goes (core.train.handlers.Checkpointer): interval_s, bytes,
    # blocking_s, write_s, share (of training time spent blocked). None until the first.
    checkpointing: dict[str, Any] | None = None
    torch_version: str = ""
    created: str = field(default_factory=now_iso)
    updated: str = field(default_factory=now_iso)

    def schedule(self, done_only: bool = True) -> Schedule:
        """The path this session took (or its whole plan) as a replayable schedule."""
        from lrconsole.core.plan.plan import Plan

        plan = Plan(self.segments, self.steps_per_epoch)
        segments = plan.done(self.global_step) if done_only else list(self.segments)
        return Schedule(
            segments,
            self.steps_per_epoch,
            self.task,
            self.seed,
            self.threads,
            self.optimizer,
            self.spike_factor,
            self.keep_checkpoints,
            dict(self.grad_guard),
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            "format": MANIFEST_FORMAT,
            "name": self.name,
            "lrconsole": __version__,
            "torch": self.torch_version,
            "created": self.created,
            "updated": self.updated,
            "task": self.task.to_dict(),
            "seed": self.seed,
            "threads": self.threads,
            "optimizer": self.optimizer.to_dict(),
            "steps_per_epoch": self.steps_per_epoch,
            "metrics": list(self.metrics),
            "monitor": self.monitor,
            "monitor_mode": self.monitor_mode,
            "state": self.state,
            "position": {"global_epoch": self.global_epoch, "global_step": self.global_step},
            "checkpoint": self.checkpoint,
            "keep_checkpoints": self.keep_checkpoints,
            "best": self.best,
            "spike_factor": self.spike_factor,
            **self.grad_guard,
            "path": self.path,
            "branches": self.branches,
            "policy_marks": self.policy_marks,
            "segments": [s.to_dict() for s in self.segments],
        }
        if self.diverged is not None:  # only then: manifests of healthy runs stay as they were
            out["diverged"] = self.diverged
        if self.checkpointing is not None:
            out["checkpointing"] = self.checkpointing
        if self.pinned_steps:
            out["pinned_steps"] = sorted(self.pinned_steps)
        return out

    def write(self, folder: Path) -> None:
        self.updated = now_iso()
        text = "# lrconsole session manifest; see README.md, 'Session format'\n"
        # libyaml's dumper when built in: the same text, about 3x faster for a long plan.
        body = yaml.dump(self.to_dict(), Dumper=SAFE_DUMPER, sort_keys=False)
        atomic_write_text(folder / MANIFEST, text + body)

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        refused = yamldoc.too_big(path)
        if refused:
            raise SessionError(refused)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SessionError(f"{folder}: not a session (no {MANIFEST})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SessionError(f"{path}: cannot read: {exc}") from None
        return _parse(text, str(path))


FIELDS = (
    "format",
    "name",
    "lrconsole",
    "torch",
    "created",
    "updated",
    "task",
    "seed",
    "threads",
    "optimizer",
    "steps_per_epoch",
    "metrics",
    "monitor",
    "monitor_mode",
    "state",
    "position",
    "checkpoint",
    "keep_checkpoints",
    "pinned_steps",
    "best",
    "path",
    "branches",
    "policy_marks",
    "spike_factor",
    *GRAD_GUARD_FIELDS,
    "diverged",
    "checkpointing",
    "segments",
)
REQUIRED = ("format", "task", "steps_per_epoch", "segments", "position", "metrics")


def _parse(text: str, source: str) -> Manifest:
    doc = yamldoc.load(text, source)
    try:
        manifest = read_manifest(Field.document(doc.data, "manifest"), Path(source).parent.name)
    except FieldError as exc:
        line = doc.line_of(exc.path, exc.on_key)
        raise SessionError(f"{source}:{line}: malformed manifest: {exc}") from None
    _check_position(manifest, source, listed=doc.data["segments"] is not None)
    return manifest


def read_threads(f: Field) -> int | None:
    return None if f.value is None else read_bounded(f, 1, THREADS_MAX)


def read_best(f: Field) -> dict[str, Any] | None:
    """{metric, value, epoch} of the best epoch so far, or null before the first."""
    if f.value is None:
        return None
    given = f.fields(required=("metric", "value", "epoch"))
    return {
        "metric": given["metric"].text(),
        "value": given["value"].number(finite=False),
        "epoch": given["epoch"].whole(),
    }


def read_diverged(f: Field) -> dict[str, Any] | None:
    """{step, epoch, lr} of the step that diverged past the checkpoint, or null."""
    if f.value is None:
        return None
    given = f.fields(required=("step", "epoch", "lr"))
    lr = float(given["lr"].number(finite=False))
    return {"step": given["step"].whole(), "epoch": given["epoch"].whole(), "lr": lr}


def read_manifest(root: Field, folder_name: str) -> Manifest:
    """A manifest from plain data, by the schema's rules; FieldError for the first fault."""
    top = root.fields(optional=FIELDS)
    for key in REQUIRED:
        if key not in top:
            root.fail(f"missing field {key!r} (truncated or not a manifest?)")
    version = top["format"].whole(minimum=1)
    if version > MANIFEST_FORMAT:
        top["format"].fail(
            f"{version} is newer than this lrconsole reads ({MANIFEST_FORMAT}); upgrade lrconsole"
        )
    get = root.at
    metrics = [m.text() for m in top["metrics"].sequence()]
    position = top["position"].fields(required=("global_epoch", "global_step"))
    segments = top["segments"]
    segments = segments.with_value([]) if segments.value is None else segments
    monitor = get("monitor").text() or (metrics[-1] if metrics else "")
    if not monitor:
        get("monitor").fail("no monitor and no metrics to take it from")
    return Manifest(
        name=get("name").text() or folder_name,
        task=read_task(top["task"]),
        seed=read_bounded(get("seed", 0), 0, SEED_MAX),
        optimizer=read_optimizer(get("optimizer", {"name": "sgd"})),
        steps_per_epoch=top["steps_per_epoch"].whole(),
        metrics=metrics,
        monitor=monitor,
        monitor_mode=get("monitor_mode").text("min"),
        threads=read_threads(get("threads")),
        segments=[Segment.read(f) for f in read_segment_list(segments, True, None)],
        global_epoch=position["global_epoch"].whole(),
        global_step=position["global_step"].whole(),
        checkpoint=None if get("checkpoint").value is None else get("checkpoint").string(),
        state=get("state").text("paused"),
        keep_checkpoints=get("keep_checkpoints", 3).whole(),
        pinned_steps=[f.whole() for f in get("pinned_steps", []).sequence()],
        best=read_best(get("best")),
        path=get("path", 0).whole(),
        spike_factor=read_spike_factor(get("spike_factor", 10.0)),
        grad_guard=read_grad_guard(top),
        branches=[dict(b.mapping()) for b in get("branches", []).sequence()],
        policy_marks=[dict(m.mapping()) for m in get("policy_marks", []).sequence()],
        diverged=read_diverged(get("diverged")),
        checkpointing=get("checkpointing").value and get("checkpointing").mapping(),
        torch_version=get("torch").text(),
        created=get("created").text(),
        updated=get("updated").text(),
    )


def _check_position(m: Manifest, source: str, listed: bool) -> None:
    """The position must lie on the segments listed and match the checkpoint named.

    A manifest cut at a line boundary is still valid YAML: without this, a session cut
    after its first segment would show, export and replay only that segment.
    `segments: []` with a position is let through (a hand-written manifest that records
    no plan); `segments:` with nothing after it is a manifest cut short.
    """
    spe = m.steps_per_epoch
    if spe < 1:
        raise SessionError(f"{source}: steps_per_epoch must be at least 1, got {spe}")
    if m.global_step < 0 or m.global_epoch < 0:
        raise SessionError(
            f"{source}: position epoch {m.global_epoch} step {m.global_step} is negative"
        )
    covered = sum(seg.length(spe) for seg in m.segments)
    if m.global_step > covered and (m.segments or not listed):
        raise SessionError(
            f"{source}: position epoch {m.global_epoch} lies past the segments listed "
            f"({covered / spe:g} epochs): truncated or edited by hand?"
        )
    named = CHECKPOINT_NAME.fullmatch(m.checkpoint) if isinstance(m.checkpoint, str) else None
    if named is not None and int(named.group(1)) != m.global_step:
        raise SessionError(
            f"{source}: checkpoint {m.checkpoint} does not match position step "
            f"{m.global_step}: edited by hand?"
        )
