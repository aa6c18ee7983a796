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
from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.schema import Checker, YamlError, load_nodes
from lrconsole.core.plan.segment import OptimizerSpec, Segment, TaskSpec
from lrconsole.core.session.layout import CHECKPOINT_NAME, MANIFEST
from lrconsole.errors import UserError

MANIFEST_FORMAT = 1


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
    best: dict[str, Any] | None = None
    spike_factor: float | None = 10.0
    path: int = 0  # which path this is: each rollback starts a new one
    branches: list[dict[str, Any]] = field(default_factory=list)
    # Where a plateau or early-stopping policy acted on this path: {epoch, policy, lr}.
    policy_marks: list[dict[str, Any]] = field(default_factory=list)
    # Set while the last run diverged past the checkpoint: {step, epoch, lr} of the bad step
    # (epoch: the one it belongs to, from 1). Cleared by the next checkpoint or a rollback.
    diverged: dict[str, Any] | None = None
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
            "path": self.path,
            "branches": self.branches,
            "policy_marks": self.policy_marks,
            "segments": [s.to_dict() for s in self.segments],
        }
        if self.diverged is not None:  # only then: manifests of healthy runs stay as they were
            out["diverged"] = self.diverged
        return out

    def write(self, folder: Path) -> None:
        self.updated = now_iso()
        text = "# lrconsole session manifest; see README.md, 'Session format'\n"
        atomic_write_text(folder / MANIFEST, text + yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SessionError(f"{folder}: not a session (no {MANIFEST})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SessionError(f"{path}: cannot read: {exc}") from None
        return _parse(text, str(path))


def _parse(text: str, source: str) -> Manifest:
    check = Checker(source)
    root = load_nodes(text, source)
    keys = (
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
        "best",
        "path",
        "branches",
        "policy_marks",
        "spike_factor",
        "diverged",
        "segments",
    )
    top = check.mapping(root, "manifest", optional=keys)
    for key in ("format", "task", "steps_per_epoch", "segments", "position", "metrics"):
        if key not in top:
            check.fail(root, "manifest", f"missing field {key!r} (truncated or not a manifest?)")
    version = check.integer(top["format"], "format", minimum=1)
    if version > MANIFEST_FORMAT:
        check.fail(
            top["format"],
            "format",
            f"{version} is newer than this lrconsole reads ({MANIFEST_FORMAT}); upgrade lrconsole",
        )
    data = {k: check.plain(v, k, object) for k, v in top.items()}
    try:
        task = data["task"]
        position = data["position"]
        segments = [
            Segment.from_dict(s, f"segments[{i}]") for i, s in enumerate(data["segments"] or [])
        ]
        diverged = data.get("diverged")
        manifest = Manifest(
            name=str(data.get("name") or Path(source).parent.name),
            task=TaskSpec(str(task["spec"]), dict(task.get("args") or {})),
            seed=int(data.get("seed", 0)),
            optimizer=OptimizerSpec.from_dict(data.get("optimizer") or {"name": "sgd"}),
            steps_per_epoch=int(data["steps_per_epoch"]),
            metrics=[str(m) for m in data["metrics"]],
            monitor=str(data.get("monitor") or data["metrics"][-1]),
            monitor_mode=str(data.get("monitor_mode", "min")),
            threads=data.get("threads"),
            segments=segments,
            global_epoch=int(position["global_epoch"]),
            global_step=int(position["global_step"]),
            checkpoint=data.get("checkpoint"),
            state=str(data.get("state", "paused")),
            keep_checkpoints=int(data.get("keep_checkpoints", 3)),
            best=data.get("best"),
            path=int(data.get("path", 0)),
            spike_factor=data.get("spike_factor", 10.0),
            branches=list(data.get("branches") or []),
            policy_marks=[dict(mark) for mark in data.get("policy_marks") or []],
            diverged=None
            if diverged is None
            else {
                "step": int(diverged["step"]),
                "epoch": int(diverged["epoch"]),
                "lr": float(diverged["lr"]),
            },
            torch_version=str(data.get("torch", "")),
            created=str(data.get("created", "")),
            updated=str(data.get("updated", "")),
        )
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise SessionError(f"{source}: malformed manifest ({type(exc).__name__}: {exc})") from None
    except YamlError:
        raise
    _check_position(manifest, source, listed=data["segments"] is not None)
    return manifest


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
