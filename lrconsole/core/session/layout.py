"""Every file name inside a session folder, and the one place checkpoint names are parsed.

```
<session>/manifest.yaml          what the session is and where it stands
<session>/metrics.csv            one row per epoch of the current path
<session>/checkpoints/           step-000000123.pt, one per kept position
<session>/tb/path-N/             TensorBoard runs, one per path
<session>/branches/              path-N.csv and path-N.yaml: the paths a rollback abandoned
<session>/lock                   the PID of the process that trains the session (flock held)
<session>/control.sock           the runner's control socket
<session>/runner.log             a background runner's stdout and stderr
<session>/.runner-schedule.yaml  the schedule a launcher hands its runner (or torchrun)
<session>/schedule.yaml          where the console's export (`e`) writes by default
```

Files are replaced atomically through `.<name>.<random>.tmp` beside them (core.atomic).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

MANIFEST = "manifest.yaml"
METRICS = "metrics.csv"
CHECKPOINTS = "checkpoints"
TB_DIR = "tb"
BRANCHES = "branches"
LOCK = "lock"
SOCKET = "control.sock"
RUNNER_LOG = "runner.log"
RUNNER_SCHEDULE = ".runner-schedule.yaml"  # the schedule a launcher hands its runner
SCHEDULE_EXPORT = "schedule.yaml"  # the console's default export target
# Files a launcher may put in a new session folder before the runner creates the session.
LAUNCH_FILES = frozenset({RUNNER_LOG, RUNNER_SCHEDULE, LOCK})

CHECKPOINT_NAME = re.compile(r"checkpoints/step-(\d+)\.pt")


def checkpoint_name(global_step: int) -> str:
    """The checkpoint of `global_step`, relative to the session folder."""
    return f"{CHECKPOINTS}/step-{global_step:09d}.pt"


def checkpoint_step(name: str | Path) -> int | None:
    """The global step a checkpoint name (relative, or a path in a session) stands for."""
    path = Path(name)
    match = CHECKPOINT_NAME.fullmatch(f"{CHECKPOINTS}/{path.name}")
    return int(match.group(1)) if match else None


def checkpoint_files(folder: Path) -> list[Path]:
    """The session's checkpoint files, oldest step first."""
    return sorted((folder / CHECKPOINTS).glob("step-*.pt"))


def checkpoint_steps(folder: Path) -> list[int]:
    """The global steps of the session's checkpoints, in order; odd names are skipped."""
    steps = (checkpoint_step(path) for path in checkpoint_files(folder))
    return sorted(step for step in steps if step is not None)


def tensorboard_run(path: int) -> str:
    """The TensorBoard run of path `path`, relative to the session folder."""
    return f"{TB_DIR}/path-{path}"


def branch_files(path: int) -> tuple[str, str]:
    """(metrics, schedule) of abandoned path `path`, relative to the session folder."""
    return f"{BRANCHES}/path-{path}.csv", f"{BRANCHES}/path-{path}.yaml"


def kept_checkpoints(
    files: list[Path], edges: Iterable[int], keep_recent: int, pinned: Iterable[int] = ()
) -> set[Path]:
    """What pruning keeps of `files` (oldest first): the `keep_recent` newest, the
    `keep_recent` newest at segment boundaries (`edges`, steps: to roll a recent segment
    back) and the pinned steps. A long plan of a big model so keeps a few checkpoints on
    disk, not one per segment."""
    pins, edge_steps = set(pinned), set(edges)
    kept = {p for p in files if checkpoint_step(p) in pins}
    if keep_recent > 0:
        boundaries = [p for p in files if checkpoint_step(p) in edge_steps]
        kept |= set(files[-keep_recent:]) | set(boundaries[-keep_recent:])
    return kept
