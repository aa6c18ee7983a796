"""`lrconsole run`: train a schedule without a console (runner.host trains and reports)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from lrconsole.core.atomic import why_unwritable
from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import OptimizerSpec, TaskSpec
from lrconsole.core.session.discover import resolve_session
from lrconsole.core.session.layout import MANIFEST
from lrconsole.core.session.manifest import Manifest
from lrconsole.errors import TrainingFailed, UserError


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
    from lrconsole.dist.launch import check_nodes

    nodes = check_nodes(args.nnodes, args.node_rank, args.rdzv_endpoint, args.detach)
    folder = session_folder(args)
    schedule = load_schedule(args)
    if nodes is not None and nodes.rank > 0:  # the session and its plan live on node 0
        from lrconsole.dist.launch import run_distributed

        return run_distributed(folder, None, args.nproc, args.checkpoint_every, nodes)
    if schedule is None and not (folder / MANIFEST).is_file():
        raise UserError(f"no session {args.session!r} yet: give --schedule FILE to create it")
    if args.detach:
        from lrconsole.runner.launch import check_free, ensure_runner

        check_free(folder)  # else a live runner (even a foreground one) reads as started
        ensure_runner(folder, schedule=schedule)
        print(f"runner started for {folder}; attach with `lrconsole attach {args.session}`")
        return 0
    if args.nproc > 1 or nodes is not None:
        from lrconsole.dist.launch import run_distributed

        return run_distributed(folder, schedule, args.nproc, args.checkpoint_every, nodes)
    from lrconsole.core.train.trainer import Trainer
    from lrconsole.runner.host import Runner, run_in_foreground

    try:
        trainer = Trainer.open(
            folder,
            schedule=schedule,
            tensorboard=not args.no_tensorboard,
            checkpoint_interval=args.checkpoint_every,
            grad_norm=not args.no_grad_norm,
            grad_norm_layers=args.grad_norm_layers,
        )
    except OSError as exc:  # a full disk, a read-only folder: nothing trained yet
        why = why_unwritable(folder, exc)
        raise UserError(f"{folder}: cannot open the session: {why}") from None
    try:
        return run_in_foreground(Runner(trainer), args.session)
    except OSError as exc:  # mid-run: the last checkpoint and the rows before it are kept
        raise TrainingFailed(
            f"{folder}: training stopped: {why_unwritable(folder, exc)}; "
            f"{kept(folder)}; continue with `lrconsole run {args.session}`"
        ) from None


def kept(folder: Path) -> str:
    """What a stopped run left: the epoch of the session's last checkpoint."""
    try:
        return f"saved at epoch {Manifest.read(folder).global_epoch}"
    except UserError:
        return "the last checkpoint is kept"
