"""Steer your own training loop: a few lines in any PyTorch script.

    steer = lrconsole.Steer(optimizer, "sessions/myrun", model=model,
                            steps_per_epoch=len(loader), schedule="plan.yaml")
    for epoch in steer.epochs():
        for x, y in loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
            steer.step(loss)
        steer.epoch_end({"train_loss": ..., "test_loss": ...})

The script's session gets the same files as any other (manifest, metrics.csv, TensorBoard,
checkpoints, an exportable schedule), and it serves the same control socket: `lrconsole
attach` pauses it, changes its LR and queues segments exactly as for the built-in task.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrconsole.core.rng import restore_rng
from lrconsole.core.schedule import OPTIMIZERS, OptimizerSpec, Schedule, Segment, TaskSpec
from lrconsole.core.task import OWN_LOOP, Task
from lrconsole.core.trainer import Trainer
from lrconsole.runner.host import Runner


def _no_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("a user's own loop computes its loss itself")


class Steer:
    """The hook. With no console attached and nothing queued it follows `schedule` (a
    YAML path or a Schedule), or else `epochs` epochs at `lr` (default: the optimizer's LR),
    so the script also runs unattended; with a console attached, an empty queue waits."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        session: str | Path,
        *,
        steps_per_epoch: int,
        model: nn.Module | None = None,
        schedule: str | Path | Schedule | None = None,
        lr: float | None = None,
        epochs: int = 10,
        metrics: Sequence[str] = ("train_loss",),
        monitor: str | None = None,
        serve: bool = True,
    ) -> None:
        if isinstance(schedule, (str, Path)):
            schedule = Schedule.load(schedule)
        if schedule is None:
            start = lr if lr is not None else float(optimizer.param_groups[0]["lr"])
            schedule = Schedule([Segment(start, epochs=epochs)])
        script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
        name = type(optimizer).__name__.lower()
        schedule = replace(
            schedule,
            task=TaskSpec(f"{OWN_LOOP}{script}"),
            steps_per_epoch=steps_per_epoch,
            optimizer=OptimizerSpec(name) if name in OPTIMIZERS else schedule.optimizer,
        )
        self.metric_names = list(metrics)
        task = Task(
            model=model if model is not None else nn.Module(),
            train_loader=range(steps_per_epoch),
            eval_sets={},
            loss=_no_loss,
            names=self.metric_names,
            monitor=monitor or self.metric_names[-1],
        )
        folder = Path(session)
        exists = (folder / "manifest.yaml").is_file()
        self.trainer = Trainer.open(
            folder, schedule=None if exists else schedule, task=task, optimizer=optimizer
        )
        self.engine = self.trainer.engine
        self.engine.mid_epoch_checkpoints = False
        self.runner = Runner(self.trainer) if serve else None
        if self.runner is not None:
            self.runner.server.start()
        self._index = -1
        self._in_epoch = False
        self._stopping: str | None = None

    @property
    def epoch(self) -> int:
        """The global epoch in progress (1-based)."""
        return self.engine.global_epoch + 1

    @property
    def lr(self) -> float:
        return self.engine.lr

    def _wait(self) -> bool:
        return self.runner is not None and self.runner.server.attached

    def epochs(self) -> Iterator[int]:
        """Yield global epoch numbers until the plan is done (or the operator ends it)."""
        try:
            while self.start_epoch():
                yield self.engine.global_epoch + 1
                if self._in_epoch:
                    self.epoch_end({})
        finally:
            self.close()

    def start_epoch(self) -> bool:
        """Begin an epoch: False when training should end (trainer callbacks call this)."""
        engine = self.engine
        engine.running = True  # jobs (rollback, lr-find) now wait for a step boundary
        if self._stopping is not None:
            return False
        if engine._at_boundary(self._wait(), None) is not None:
            return False
        if engine._pending_rng is not None:  # resuming: the RNG of the checkpoint
            restore_rng(engine._pending_rng)
            engine._pending_rng = None
        self._index = engine.begin_step()
        self._in_epoch = True
        return True

    def step(self, loss: torch.Tensor | float | None) -> None:
        """Call after each `optimizer.step()`: records the loss, sets the next step's LR,
        and blocks here while the operator has the run paused. `None`: loss unknown
        (the divergence guard then skips this step)."""
        engine = self.engine
        value = None
        if loss is not None:
            value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        if engine.finish_step(self._index, value):
            return  # the epoch's last step: epoch_end comes next
        engine.after_step(self._index)
        if self._stopping is None:
            reason = engine._at_boundary(self._wait(), None)
            if reason is not None and reason != "done":
                self._stopping = reason  # shutdown or stop: at the end of this epoch
        if engine.global_step >= engine.plan.total_steps:
            # Nothing planned for the rest of this epoch: finish it at the current LR.
            rest = engine.steps_per_epoch - engine._batch
            engine.queue([Segment(engine.lr, steps=rest)])
        self._index = engine.begin_step()

    def epoch_end(self, metrics: Mapping[str, float]) -> None:
        """Report the epoch's metrics (names as declared in `metrics=`)."""
        unknown = set(metrics) - set(self.metric_names)
        if unknown:
            raise ValueError(
                f"unknown metric {sorted(unknown)[0]!r}: Steer(metrics=...) declared "
                f"{self.metric_names}"
            )
        engine = self.engine
        engine.finish_epoch(self._index, {k: float(v) for k, v in metrics.items()})
        engine.after_step(self._index)
        self._in_epoch = False

    def close(self) -> None:
        """Save and release the session (the `epochs()` loop does this when it ends)."""
        if self.trainer.lock._handle is not None:
            self.trainer.close(state="stopped")
        if self.runner is not None:
            self.runner.server.close("shutdown")
            self.runner = None

    def __enter__(self) -> Steer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
