"""Steer your own training loop: a few lines in any PyTorch script.

    steer = lrconsole.Steer(optimizer, "sessions/myrun", model=model,
                            steps_per_epoch=len(loader), schedule="plan.yaml")
    for epoch in steer.epochs():
        for x, y in loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
            steer.step(loss)
        steer.epoch_end({"train_loss": ..., "test_loss": ...})

With `loader=`, the loop takes `steer.batches()`: an epoch may then be N steps of a stream,
and a stateful loader resumes (and rolls back) mid-epoch (lrconsole.steerdata).

The script's session gets the same files as any other (manifest, metrics.csv, TensorBoard,
checkpoints, an exportable schedule), and it serves the same control socket: `lrconsole
attach` pauses it, changes its LR and queues segments exactly as for the built-in task.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from torch import nn

from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import OPTIMIZERS, OptimizerSpec, Segment, TaskSpec
from lrconsole.core.session.layout import MANIFEST
from lrconsole.core.tasks.task import OWN_LOOP, Task
from lrconsole.core.train.trainer import Trainer
from lrconsole.dist.wire import EXIT, STEP, Wire, mean_over_ranks, rank_and_world
from lrconsole.runner.host import Runner
from lrconsole.steerdata import LoopData, is_stateful


def _no_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("a user's own loop computes its loss itself")


class Steer:
    """The hook. With no console attached and nothing queued it follows `schedule` (a
    YAML path or a Schedule), or else `epochs` epochs at `lr` (default: the optimizer's LR),
    so the script also runs unattended; with a console attached, an empty queue waits.

    Under torchrun (an initialized process group), rank 0 owns the session and the
    socket and sends each step's LR and settings to the other ranks, whose Steer follows.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Steer:
        if cls is Steer and rank_and_world()[0] > 0:
            return object.__new__(FollowerSteer)
        return object.__new__(cls)

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        session: str | Path,
        *,
        steps_per_epoch: int,
        loader: Iterable[Any] | None = None,
        model: nn.Module | None = None,
        schedule: str | Path | Schedule | None = None,
        lr: float | None = None,
        epochs: int = 10,
        metrics: Sequence[str] = ("train_loss",),
        monitor: str | None = None,
        serve: bool = True,
        checkpoint_every: float = 2.0,
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
        exists = (folder / MANIFEST).is_file()
        self.trainer = Trainer.open(
            folder,
            schedule=None if exists else schedule,
            task=task,
            optimizer=optimizer,
            checkpoint_interval=checkpoint_every,
        )
        self.engine = self.trainer.engine
        # Mid-epoch checkpoints only with a loader that resumes mid-pass, and not under
        # torchrun: the other ranks' loaders are not in rank 0's checkpoint.
        stateful = is_stateful(loader) and rank_and_world()[1] == 1
        self.data = LoopData(loader, stateful)
        self.data.attach(self.engine)
        self.runner = Runner(self.trainer) if serve else None
        if self.runner is not None:
            self.runner.server.start()
        self._index = -1
        self._in_epoch = False
        self._stopping: str | None = None
        self._interrupted = False  # Ctrl-C: save at the end of this epoch, then exit 130
        self._world = rank_and_world()[1]
        self._wire: Wire | None = None
        if self._world > 1:
            wire = self._wire = Wire()
            self.engine.hooks.step_begin = wire.announcer(self.engine)

    @property
    def epoch(self) -> int:
        """The global epoch in progress (1-based)."""
        return self.engine.global_epoch + 1

    @property
    def lr(self) -> float:
        return self.engine.lr

    @property
    def clip(self) -> float | None:
        """The step's max gradient norm (None: no clipping): clipping is your loop's."""
        return self.engine.clip

    def _wait(self) -> bool:
        return self.runner is not None and self.runner.server.attached

    def batches(self) -> Iterator[Any]:
        """The epoch's batches from `Steer(loader=...)`: `steps_per_epoch` of them, across
        the loader's passes (a new pass when one ends), from where a resumed or rolled-back
        run stands."""
        engine = self.engine
        return self.data.batches(
            lambda: engine.steps_per_epoch - engine.batch if self._in_epoch else 0
        )

    def epochs(self) -> Iterator[int]:
        """Yield global epoch numbers until the plan is done (or the operator ends it).

        Ctrl-C finishes the epoch in progress, saves, and exits the script with code 130
        (checkpoints fall on epoch ends); a second Ctrl-C stops at once.
        """
        release = self._catch_ctrl_c()
        try:
            while self.start_epoch():
                yield self.engine.global_epoch + 1
                if self._in_epoch:
                    self.epoch_end({})
        finally:
            release()
            self.close()
        if self._interrupted:
            print(
                f"interrupted: saved at epoch {self.engine.global_epoch}; "
                "run the script again to continue",
                file=sys.stderr,
            )
            raise SystemExit(130)

    def _catch_ctrl_c(self) -> Callable[[], None]:
        """Turn the first Ctrl-C into "save at the end of this epoch"; returns the undo."""
        if (
            self._world > 1  # torchrun owns the signals of its workers
            or threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        ):
            return lambda: None  # the script handles Ctrl-C itself: leave it alone

        def on_ctrl_c(signum: int, frame: FrameType | None) -> None:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # the next one: now
            print(
                "\nlrconsole: Ctrl-C: saving at the end of this epoch (Ctrl-C again stops now)",
                file=sys.stderr,
            )
            self._interrupted = True
            self.engine.request_exit("interrupted")

        signal.signal(signal.SIGINT, on_ctrl_c)

        def release() -> None:
            if signal.getsignal(signal.SIGINT) is on_ctrl_c:
                signal.signal(signal.SIGINT, signal.default_int_handler)

        return release

    def start_epoch(self) -> bool:
        """Begin an epoch: False when training should end (trainer callbacks call this)."""
        engine = self.engine
        engine.start_running()  # jobs (rollback, lr-find) now wait for a step boundary
        while True:
            if self._stopping is not None or engine.at_boundary(self._wait()) is not None:
                if self._wire is not None and self._stopping != "ended":
                    self._wire.send(EXIT)
                self._stopping = "ended"
                return False
            if engine.claim_step():  # else an edit ended the plan here: the boundary again
                break
        engine.begin_epoch()  # resuming: the RNG of the checkpoint
        self._index = engine.begin_step()
        self._in_epoch = True
        return True

    def step(self, loss: torch.Tensor | float | None) -> None:
        """Call after each `optimizer.step()`: records the loss, sets the next step's LR,
        and blocks here while the operator has the run paused. `None`: loss unknown
        (the divergence guard then skips this step)."""
        engine, data = self.engine, self.data
        if data.in_flight:
            data.step_done()
        elif data.loader is not None:
            raise ValueError("Steer(loader=...): take the batches from steer.batches()")
        # A tensor is read a step late, without a device sync (core.train.lossfeed).
        value = loss if loss is None or isinstance(loss, torch.Tensor) else float(loss)
        if engine.finish_step(self._index, value):
            return  # the epoch's last step: epoch_end comes next
        engine.after_step(self._index)
        # A stateful loader: the time rule between steps too.
        saver = self.trainer.checkpointer if data.stateful else None
        if saver is not None and time.monotonic() - saver.last_time >= saver.interval:
            saver.on_epoch(None)
        # The slow path only when something happened.
        if engine.needs_boundary() and self._stopping is None:
            reason = engine.at_boundary(self._wait())
            if reason is not None and reason != "done":
                self._stopping = reason  # shutdown or stop: at the end of this epoch
            if data.rewound:  # a rollback: the checkpoint's RNG now, not at the next epoch
                data.rewound = False
                engine.begin_epoch()
        # Nothing planned for the rest of this epoch: it is finished at the current LR.
        engine.claim_step(fill_epoch=True)
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
        values = {k: float(v) for k, v in metrics.items()}
        if self._world > 1:
            values = mean_over_ranks(self.metric_names, values)
        engine.finish_epoch(self._index, values)
        engine.after_step(self._index)
        self._in_epoch = False

    def close(self) -> None:
        """Save and release the session (the `epochs()` loop does this when it ends)."""
        self.engine.stop_running()
        if not self.trainer.closed:
            # A batch taken but its step not done (an exception in between): the loader is
            # past the model, so the last checkpoint stays the one to resume from.
            self.trainer.close(state="stopped", save=not self.data.in_flight)
        if self.runner is not None:
            self.runner.server.close("shutdown")
            self.runner = None

    def __enter__(self) -> Steer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class FollowerSteer(Steer):
    """Steer on ranks 1..N-1: no session, no socket; each step's LR and settings from 0."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        session: str | Path,
        *,
        steps_per_epoch: int,
        loader: Iterable[Any] | None = None,
        metrics: Sequence[str] = ("train_loss",),
        **ignored: Any,
    ) -> None:
        self.optimizer = optimizer
        self.data = LoopData(loader, stateful=False)
        self.steps_per_epoch = steps_per_epoch
        self.metric_names = list(metrics)
        self._leader = Wire()  # what rank 0 says
        self._step = 0
        self._batch = 0
        self._lr = float(optimizer.param_groups[0]["lr"])
        self._clip: float | None = None  # the step's max gradient norm, as rank 0's
        self._ended = False

    @property
    def epoch(self) -> int:
        return self._step // self.steps_per_epoch + 1

    @property
    def lr(self) -> float:
        return self._lr

    @property
    def clip(self) -> float | None:
        return self._clip

    def batches(self) -> Iterator[Any]:
        return self.data.batches(lambda: self.steps_per_epoch - self._batch)

    def _receive(self) -> float:
        said = self._leader.receive()
        self._step = said.step
        if said.kind == STEP:
            self._lr, self._clip = said.lr, said.clip
            said.apply(self.optimizer)
        return said.kind

    def epochs(self) -> Iterator[int]:
        while self.start_epoch():
            yield self.epoch
            if self._batch:
                self.epoch_end({})

    def start_epoch(self) -> bool:
        if self._ended or self._receive() == EXIT:
            self._ended = True
            return False
        self._batch = 0
        return True

    def step(self, loss: torch.Tensor | float | None) -> None:
        self._batch += 1
        if self._batch < self.steps_per_epoch:
            self._receive()

    def epoch_end(self, metrics: Mapping[str, float]) -> None:
        mean_over_ranks(self.metric_names, {k: float(v) for k, v in metrics.items()})
        self._batch = 0

    def close(self) -> None:
        self._ended = True
