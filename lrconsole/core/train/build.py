"""What a trainer is built from: the task (seeded), and the manifest of a new session or the
checked continuation of an existing one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lrconsole.core.plan.plan import Plan
from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import ScheduleError
from lrconsole.core.session.layout import LAUNCH_FILES, MANIFEST
from lrconsole.core.session.manifest import Manifest, SessionError
from lrconsole.core.tasks.task import Task, TaskError, load_task
from lrconsole.core.train import events as ev
from lrconsole.core.train.rng import seed_everything


def prepare_task(source: Schedule, given: Task | None) -> tuple[Task, int | None, int]:
    """(task, threads, steps per epoch); `given`: a user's own loop's, already built."""
    if given is not None:
        task = given
    else:
        seed_everything(source.seed)
        task = load_task(source.task)
        # The training RNG starts from the seed, whatever the task drew.
        seed_everything(source.seed)
    threads = source.threads or task.threads
    if threads:
        torch.set_num_threads(threads)
    try:
        spe = len(task.train_loader)  # type: ignore[arg-type]
    except TypeError:
        raise TaskError("the task's train_loader must have a length (batches per epoch)") from None
    if spe < 1:
        raise TaskError("the task's train_loader is empty")
    return task, threads, spe


def new_manifest(
    folder: Path, schedule: Schedule, task: Task, threads: int | None, spe: int
) -> Manifest:
    check_steps_per_epoch(schedule, spe)
    monitor = task.monitored()
    plain_sgd = schedule.optimizer.name == "sgd" and not schedule.optimizer.kwargs
    return Manifest(
        name=folder.name,
        task=schedule.task,
        seed=schedule.seed,
        optimizer=task.optimizer_spec() if plain_sgd else schedule.optimizer,
        steps_per_epoch=spe,
        metrics=task.metric_names(),
        monitor=monitor,
        monitor_mode="max" if monitor.endswith(("acc", "accuracy")) else "min",
        threads=threads,
        spike_factor=schedule.spike_factor,
        keep_checkpoints=schedule.keep_checkpoints,
        grad_guard=dict(schedule.grad_guard),
        segments=list(schedule.segments),
        torch_version=str(torch.__version__),
    )


def continue_manifest(
    folder: Path, manifest: Manifest, schedule: Schedule | None, spe: int
) -> Manifest:
    """The existing session, with `schedule` as its plan when given (and allowed)."""
    if manifest.steps_per_epoch != spe:
        raise SessionError(
            f"{folder / MANIFEST}: the task now has {spe} batches per epoch, "
            f"the session was trained with {manifest.steps_per_epoch}"
        )
    if schedule is not None:
        check_continues(manifest, schedule, folder)
        manifest.segments = list(schedule.segments)
    return manifest


def foreign_files(folder: Path) -> list[Path]:
    """Files in a folder that no launcher put there: it is somebody else's."""
    return [p for p in folder.iterdir() if p.name not in LAUNCH_FILES]


def check_steps_per_epoch(schedule: Schedule, spe: int) -> None:
    if schedule.steps_per_epoch is not None and schedule.steps_per_epoch != spe:
        raise ScheduleError(
            f"the schedule was written for {schedule.steps_per_epoch} batches per epoch, "
            f"the task has {spe}"
        )


def check_continues(manifest: Manifest, schedule: Schedule, folder: Path) -> None:
    """A schedule may extend a session's path, never rewrite what was trained."""
    check_steps_per_epoch(schedule, manifest.steps_per_epoch)
    for field in ("task", "seed", "optimizer"):
        if getattr(schedule, field) != getattr(manifest, field):
            raise ScheduleError(
                f"the schedule's {field} differs from session {folder.name!r}'s; "
                "start a new session to train it"
            )
    done = Plan(manifest.segments, manifest.steps_per_epoch).done(manifest.global_step)
    proposed = Plan(schedule.segments, manifest.steps_per_epoch).done(manifest.global_step)
    if done != proposed:
        raise ScheduleError(
            f"the schedule does not follow the {manifest.global_epoch} epochs session "
            f"{folder.name!r} already trained; see `lrconsole export {folder.name}`"
        )


def history_row(row: dict[str, Any], metrics: list[str]) -> dict[str, Any]:
    """A metrics.csv row in the shape the history (and the wire) carries."""
    return ev.EpochEnd(
        row["global_epoch"],
        row["global_step"],
        row["segment"],
        row["lr"],
        {m: row[m] for m in metrics if m in row},
        row.get("time", 0.0),
        row.get("grad_norm"),  # absent in files from before diagnostics, or with them off
        row.get("grad_norm_max"),
    ).to_dict()
