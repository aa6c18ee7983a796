"""Finding sessions and reading what they hold, without torch (the CLI and the console)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.session.admin import check_name
from lrconsole.core.session.layout import LOCK, MANIFEST, METRICS, checkpoint_steps
from lrconsole.core.session.manifest import Manifest, SessionError
from lrconsole.core.session.metrics import read_rows
from lrconsole.errors import UserError


def rollback_epochs(folder: Path, steps_per_epoch: int, position: int, diverged: bool) -> list[int]:
    """Epochs a session can go back to: a kept checkpoint at an epoch boundary behind
    `position` (a global step), or at it after a divergence past it (going back there
    abandons the diverged steps). Reads file names only: the CLI lists them without torch."""
    end = position if diverged else position - 1
    steps = checkpoint_steps(folder)
    return [s // steps_per_epoch for s in steps if s % steps_per_epoch == 0 and s <= end]


def resolve_session(sessions_dir: Path, name_or_path: str, must_exist: bool = True) -> Path:
    """A session given by name (inside `sessions_dir`) or by path."""
    candidate = Path(name_or_path)
    if os.sep in name_or_path or name_or_path.startswith("."):
        folder = candidate
    else:
        folder = sessions_dir / name_or_path
        new = not must_exist and not (folder / MANIFEST).is_file()
        if new and (problem := check_name(name_or_path)) is not None:
            raise SessionError(problem)  # a name `attach HOST:SESSION` or a shell would split
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
    """The session's metrics.csv rows (the last `tail`), torn lines left out; none yet: []."""
    try:
        rows = read_rows(folder / METRICS)
    except FileNotFoundError:
        return []
    return rows[-tail:] if tail else rows


def export_schedule(folder: Path) -> Schedule:
    return Manifest.read(folder).schedule(done_only=True)
