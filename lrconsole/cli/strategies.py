"""`lrconsole rollback`, `lr-find` and `preview`."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from lrconsole import textchart
from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.session.discover import resolve_session, rollback_epochs
from lrconsole.core.session.layout import SOCKET
from lrconsole.core.session.manifest import Manifest
from lrconsole.errors import UserError
from lrconsole.runner.launch import runner_alive


def ask_runner(folder: Path, cmd: str, timeout: float = 120.0, **args: Any) -> dict[str, Any]:
    from lrconsole.client import CommandFailed, RunnerClient

    async def ask() -> dict[str, Any]:
        client = await RunnerClient.connect(folder / SOCKET, hello=False)
        try:
            return await client.call(cmd, timeout=timeout, **args)
        finally:
            await client.close()

    try:
        return asyncio.run(ask())
    except CommandFailed as exc:
        raise UserError(exc.message) from None


def rollback_points(folder: Path) -> list[int]:
    m = Manifest.read(folder)
    return rollback_epochs(folder, m.steps_per_epoch, m.global_step, m.diverged is not None)


def cmd_rollback(args: argparse.Namespace) -> int:
    folder = resolve_session(args.sessions_dir, args.session)
    if args.epoch is None:
        points = rollback_points(folder)
        print(
            f"{folder.name}: checkpoints to roll back to at epochs: "
            f"{', '.join(map(str, points)) or 'none'}"
        )
        return 0
    if runner_alive(folder):
        result = ask_runner(folder, "rollback", epoch=args.epoch)
    else:
        from lrconsole.core.train.trainer import Trainer

        # Never loads the current checkpoint: a corrupt newest one cannot block going back.
        result = Trainer.rollback_to(folder, args.epoch).to_dict()
    branch = result["branch"]
    print(
        f"{folder.name}: back at epoch {result['global_epoch']}. The abandoned path "
        f"(epochs {branch['fork_epoch'] + 1}-{branch['epochs']}) is kept in {branch['metrics']}.\n"
        f"Plan what comes next: `lrconsole open {folder.name}`, or "
        f"`lrconsole run {folder.name} --schedule FILE`."
    )
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    folder = resolve_session(args.sessions_dir, args.session)
    options = {"start_lr": args.start_lr, "end_lr": args.end_lr, "steps": args.steps}
    from lrconsole.protocol import ProtocolError, check_args

    try:
        check_args("lr_find", options)
    except ProtocolError as exc:
        raise UserError(exc.message) from None
    if runner_alive(folder):
        result = ask_runner(folder, "lr_find", **options)
    else:
        from lrconsole.core.train.lrfind import lr_find
        from lrconsole.core.train.trainer import Trainer

        trainer = Trainer.open(folder, tensorboard=False)
        try:
            result = lr_find(trainer.engine, **options).to_dict()
        finally:
            trainer.close(state="stopped")
    print(
        textchart.render(
            result["lrs"],
            result["losses"],
            logx=True,
            logy=True,
            marks=[result["suggestion"]],
            x_label="lr (log)",
        )
    )
    early = " (stopped early: the loss diverged)" if result["stopped_early"] else ""
    print(
        f"suggested lr {result['suggestion']:.3g} (valley); steepest descent at "
        f"{result['steepest']:.3g}; lowest loss at {result['minimum']:.3g}{early}"
    )
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    schedule = Schedule.load(args.file)
    spe = args.steps_per_epoch or schedule.steps_per_epoch
    note = ""
    if spe is None:
        spe, note = 1, "  (1 step per epoch assumed: pass --steps-per-epoch)"
    total = schedule.total_steps(spe)
    width = 72
    samples = sorted(
        {min(total - 1, round(i * (total - 1) / (2 * width))) for i in range(2 * width + 1)}
    )
    lrs = [schedule.lr_at_step(s, spe) for s in samples]
    starts = schedule.starts(spe)

    def epoch(step: int) -> float:  # epochs count from 1, as in the console
        return 1 + step / spe

    print(
        textchart.render(
            [epoch(s) for s in samples],
            lrs,
            width=width,
            marks=[epoch(s) for s in starts[1:]],
            x_label="epoch",
        )
    )
    for name, values in setting_lines(schedule, samples, spe).items():
        print(f"\n{name}")
        xs = [epoch(s) for s in samples]
        print(
            textchart.render(
                xs, values, width=width, height=6, marks=[epoch(s) for s in starts[1:]]
            )
        )
    for i, (seg, start) in enumerate(zip(schedule.segments, starts, strict=True)):
        where = f"epoch {start // spe + 1}"
        if start % spe:
            where += f", batch {start % spe + 1}"
        print(f"  {i + 1}: from {where}: {seg.describe()}")
    print(f"{total / spe:g} epochs, {total} steps{note}")
    return 0


# torch's own defaults, for the steps before a segment sets a value (preview is torch-free).
OWN = {"momentum": 0.0, "betas": (0.9, 0.999), "weight_decay": 0.0, "clip_grad_norm": 0.0}
OWN_WEIGHT_DECAY = {"adamw": 0.01}


def setting_lines(schedule: Schedule, samples: list[int], spe: int) -> dict[str, list[float]]:
    """Each optimizer setting that changes over the plan, at each sampled step, by title;
    before a segment sets one, the optimizer's own. Clipping off draws as 0; betas as two
    lines."""
    from lrconsole.core.plan.settings import SETTINGS, effective

    per_segment = [effective(schedule.segments, i) for i in range(len(schedule.segments))]
    own = {**OWN, "weight_decay": OWN_WEIGHT_DECAY.get(schedule.optimizer.name, 0.0)}
    own.update({k: v for k, v in schedule.optimizer.kwargs.items() if k in OWN})
    out: dict[str, list[float]] = {}
    for name in SETTINGS:
        seen = [
            tuple(v) if name == "betas" else v
            for v in (s.get(name, own[name]) for s in per_segment)
        ]
        if len(set(seen)) < 2:
            continue  # the same all along: nothing to draw
        at = [seen[schedule.locate(step, spe)[0]] for step in samples]
        if name == "betas":
            out["beta1"] = [float(v[0]) for v in at]
            out["beta2"] = [float(v[1]) for v in at]
        else:
            title = "clip_grad_norm (0: off)" if name == "clip_grad_norm" else name
            out[title] = [float(v) for v in at]  # type: ignore[arg-type]
    return out


def dispatch(args: argparse.Namespace) -> int:
    command = {"rollback": cmd_rollback, "lr-find": cmd_lr_find, "preview": cmd_preview}
    return command[args.command](args)
