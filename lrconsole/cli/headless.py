"""`lrconsole run`: train a schedule without a console (runner.host trains and reports)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import OptimizerSpec, TaskSpec
from lrconsole.core.session.discover import resolve_session
from lrconsole.core.session.layout import MANIFEST
from lrconsole.errors import UserError

if TYPE_CHECKING:
    pass


def session_folder(args: argparse.Namespace) -> Path:
    return resolve_session(args.sessions_dir, args.session, must_exist=False)


def load_schedule(args: argparse.Namespace) -> Schedule | None:
    if args.schedule is None:
        if args.task is not None or args.seed is not None:
            raise UserError("--task and --seed need --schedule")
        return None
    schedule = Schedule.load(args.schedule)
    if schedule.optimizer != OptimizerSpec():  # plain SGD always builds: no torch import
        from lrconsole.core.tasks.optim import check_optimizer

        # Refused here, naming the file, before a session folder or a runner exists.
        check_optimizer(schedule.optimizer, str(args.schedule))
    if args.task is not None:
        schedule = replace(schedule, task=TaskSpec(args.task))
    if args.seed is not None:
        if args.seed < 0:
            raise UserError(f"--seed: must be >= 0, got {args.seed}")
        schedule = replace(schedule, seed=args.seed)
    return schedule


def cmd_run(args: argparse.Namespace) -> int:
    folder = session_folder(args)
    schedule = load_schedule(args)
    if schedule is None and not (folder / MANIFEST).is_file():
        raise UserError(f"no session {args.session!r} yet: give --schedule FILE to create it")
    if args.detach:
        from lrconsole.runner.launch import ensure_runner

        ensure_runner(folder, schedule=schedule)
        print(f"runner started for {folder}; attach with `lrconsole attach {args.session}`")
        return 0
    if args.nproc > 1:
        from lrconsole.dist.launch import run_distributed

        return run_distributed(folder, schedule, args.nproc, args.checkpoint_every)
    from lrconsole.core.train.trainer import Trainer
    from lrconsole.runner.host import Runner, run_in_foreground

    trainer = Trainer.open(
        folder,
        schedule=schedule,
        tensorboard=not args.no_tensorboard,
        checkpoint_interval=args.checkpoint_every,
    )
    return run_in_foreground(Runner(trainer), args.session)
