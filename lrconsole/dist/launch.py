"""`lrconsole run SESSION --nproc N`: start the workers under torchrun, on loopback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.session.layout import RUNNER_SCHEDULE
from lrconsole.errors import UserError


def torchrun_command(folder: Path, nproc: int, schedule: Path | None, every: float) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "lrconsole.dist.worker",
        str(folder),
        "--checkpoint-every",
        str(every),
    ]
    if schedule is not None:
        command += ["--schedule", str(schedule)]
    return command


def run_distributed(folder: Path, schedule: Schedule | None, nproc: int, every: float) -> int:
    if nproc < 2 or nproc > 64:
        raise UserError(f"--nproc: must be from 2 to 64, got {nproc}")
    plan = None
    if schedule is not None:  # every rank reads the same plan, overrides included
        folder.mkdir(parents=True, exist_ok=True)
        plan = folder / RUNNER_SCHEDULE
        schedule.dump(plan)
    try:
        return subprocess.call(torchrun_command(folder, nproc, plan, every))
    except KeyboardInterrupt:
        return 130
