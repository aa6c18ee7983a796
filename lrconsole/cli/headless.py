"""`lrconsole run`: train a schedule without a console, with a progress line."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import OptimizerSpec, TaskSpec
from lrconsole.core.session.discover import resolve_session
from lrconsole.core.session.layout import MANIFEST
from lrconsole.errors import UserError

if TYPE_CHECKING:
    from lrconsole.core.train.trainer import Trainer


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

    trainer = Trainer.open(
        folder,
        schedule=schedule,
        tensorboard=not args.no_tensorboard,
        checkpoint_interval=args.checkpoint_every,
    )
    return train_headless(trainer, args.session)


def train_headless(trainer: Trainer, session: str) -> int:
    """Train the plan with a progress line; Ctrl-C or SIGTERM saves and leaves (130).

    The run serves the session's control socket as a background runner does, so
    `lrconsole status`, `attach` and `stop` reach it from another terminal.
    """
    from lrconsole.core.train import events as ev
    from lrconsole.runner.host import Runner

    engine = trainer.engine
    progress = Progress(sys.stderr, engine.plan.total_steps, engine.steps_per_epoch)
    engine.on(ev.EpochEnd, progress.on_epoch)
    served = Runner(trainer)
    runner: Runner | None = served
    try:
        served.server.start()
    except UserError as exc:  # e.g. a socket path over the OS limit: train anyway
        print(
            f"lrconsole: warning: {exc}; status, attach and stop cannot reach this run",
            file=sys.stderr,
        )
        runner = None

    def interrupt(signum: int, frame: FrameType | None) -> None:
        engine.request_exit("interrupted")

    previous = signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    reason = "error"
    try:
        reason = engine.run()
    finally:
        signal.signal(signal.SIGINT, previous)
        if runner is not None:
            runner.server.close(reason)
        trainer.close(state="stopped")
        progress.finish()
    where = f"epoch {engine.global_epoch} (step {engine.global_step})"
    if reason == "shutdown":
        print(
            f"stopped by `lrconsole stop`: saved at {where}; continue with "
            f"`lrconsole run {session}`",
            file=sys.stderr,
        )
        return 0
    if reason == "diverged":
        step, epoch = engine.diverged_at or (engine.global_step, engine.global_epoch)
        print(
            f"diverged at step {step} (epoch {epoch}): the last good checkpoint "
            f"(epoch {trainer.manifest.global_epoch}) is kept; roll back with "
            f"`lrconsole rollback {session} --epoch N` and train on at a lower LR",
            file=sys.stderr,
        )
        return 1
    if reason == "interrupted":
        print(
            f"interrupted: saved at {where}; continue with `lrconsole run {session}`",
            file=sys.stderr,
        )
        return 130
    print(f"done: {trainer.folder.name} at {where}", file=sys.stderr)
    return 0


class Progress:
    """A progress line on stderr: redrawn at most 10 times a second on a terminal,
    one line per 10% otherwise (logs stay short)."""

    def __init__(self, out: TextIO, total_steps: int, steps_per_epoch: int) -> None:
        self.out = out
        self.total_epochs = total_steps // steps_per_epoch
        self.tty = out.isatty()
        self.start = time.monotonic()
        self.first_epoch: int | None = None
        self.last_draw = 0.0
        self.last_decile = -1
        self.line = ""

    def on_epoch(self, event: object) -> None:
        from lrconsole.core.train.events import EpochEnd

        assert isinstance(event, EpochEnd)
        now = time.monotonic()
        if self.first_epoch is None:
            self.first_epoch = event.global_epoch - 1
        done = event.global_epoch - self.first_epoch
        left = max(self.total_epochs - event.global_epoch, 0)
        eta = (now - self.start) / done * left if done else 0.0
        metrics = "  ".join(f"{k} {v:.4g}" for k, v in event.metrics.items())
        frac = event.global_epoch / self.total_epochs if self.total_epochs else 1.0
        bar = "#" * int(frac * 20)
        self.line = (
            f"[{bar:<20}] epoch {event.global_epoch}/{self.total_epochs}  "
            f"lr {event.lr:g}  {metrics}  ETA {eta:.0f}s"
        )
        if self.tty:
            if now - self.last_draw >= 0.1:
                self.out.write("\r" + self.line + "\x1b[K")
                self.out.flush()
                self.last_draw = now
        else:
            decile = int(frac * 10)
            if decile != self.last_decile:
                self.out.write(self.line + "\n")
                self.last_decile = decile

    def finish(self) -> None:
        if self.tty and self.line:
            self.out.write("\r" + self.line + "\x1b[K\n")
        self.out.flush()
