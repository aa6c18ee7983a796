"""The session manifest (`manifest.yaml`) and session discovery. No torch here.

A session folder holds `manifest.yaml`, `metrics.csv`, `checkpoints/`, `tb/`, and while
a runner owns it, `lock` and `control.sock`.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lrconsole import __version__
from lrconsole.core.atomic import atomic_write_text
from lrconsole.core.schedule import OptimizerSpec, Schedule, Segment, TaskSpec
from lrconsole.core.yamlcheck import Checker, YamlError, load_nodes
from lrconsole.errors import UserError

MANIFEST_FORMAT = 1
MANIFEST = "manifest.yaml"
METRICS = "metrics.csv"
LOCK = "lock"
SOCKET = "control.sock"


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
        from lrconsole.core.plan import Plan

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


CHECKPOINT_NAME = re.compile(r"checkpoints/step-(\d+)\.pt")


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


def rollback_epochs(folder: Path, steps_per_epoch: int, position: int, diverged: bool) -> list[int]:
    """Epochs a session can go back to: a kept checkpoint at an epoch boundary behind
    `position` (a global step), or at it after a divergence past it (going back there
    abandons the diverged steps). Reads file names only: the CLI lists them without torch."""
    end = position if diverged else position - 1
    steps = sorted(int(p.stem.split("-")[1]) for p in (folder / "checkpoints").glob("step-*.pt"))
    return [s // steps_per_epoch for s in steps if s % steps_per_epoch == 0 and s <= end]


# -- finding sessions ------------------------------------------------------------------
def resolve_session(sessions_dir: Path, name_or_path: str, must_exist: bool = True) -> Path:
    """A session given by name (inside `sessions_dir`) or by path."""
    candidate = Path(name_or_path)
    if os.sep in name_or_path or name_or_path.startswith("."):
        folder = candidate
    else:
        folder = sessions_dir / name_or_path
    if must_exist and not (folder / MANIFEST).is_file():
        if folder.is_dir():
            raise SessionError(f"{folder}: not a session (no {MANIFEST})")
        raise SessionError(f"no session {name_or_path!r} in {sessions_dir}")
    return folder


def new_session_name(sessions_dir: Path, stem: str = "lesson") -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"{stem}-{stamp}"
    n = 2
    while (sessions_dir / name).exists():
        name = f"{stem}-{stamp}-{n}"
        n += 1
    return name


def runner_pid(folder: Path) -> int | None:
    """The PID of the live process holding this session, if any."""
    try:
        text = (folder / LOCK).read_text().strip()
        pid = int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    try:
        import fcntl

        with open(folder / LOCK, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(handle, fcntl.LOCK_UN)
        return None  # nobody holds the lock: a stale file
    except OSError:
        return pid


@dataclass
class SessionSummary:
    name: str
    dir: Path
    task: str
    epochs: int
    best: tuple[str, float] | None
    last: dict[str, float]
    state: str  # running | paused | stopped | broken
    error: str | None = None


def summarize(folder: Path) -> SessionSummary:
    try:
        m = Manifest.read(folder)
    except UserError as exc:
        return SessionSummary(folder.name, folder, "?", 0, None, {}, "broken", str(exc))
    best = (m.monitor, float(m.best["value"])) if m.best else None
    pid = runner_pid(folder)
    state = ("paused" if m.state == "paused" else "running") if pid else "stopped"
    # The folder's name, not the manifest's: it is what commands take, and a copied folder
    # keeps the name it was created under in its manifest.
    return SessionSummary(
        folder.name, folder, m.task.spec, m.global_epoch, best, last_metrics(folder), state
    )


def list_sessions(sessions_dir: Path) -> list[SessionSummary]:
    if not sessions_dir.is_dir():
        return []
    folders = sorted(p for p in sessions_dir.iterdir() if (p / MANIFEST).is_file())
    return [summarize(p) for p in folders]


def last_metrics(folder: Path) -> dict[str, float]:
    rows = read_metrics(folder, tail=1)
    return {k: float(v) for k, v in rows[-1].items() if v not in ("", None)} if rows else {}


def read_metrics(folder: Path, tail: int | None = None) -> list[dict[str, str]]:
    path = folder / METRICS
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.DictReader(handle) if None not in row.values()]
    except FileNotFoundError:
        return []
    return rows[-tail:] if tail else rows


def export_schedule(folder: Path) -> Schedule:
    return Manifest.read(folder).schedule(done_only=True)
