"""PyTorch Lightning: let the console steer `Trainer.fit`.

    from lrconsole.integrations.lightning import LrConsoleCallback

    steer = LrConsoleCallback("sessions/mnist", schedule="plan.yaml",
                              metrics=["train_loss", "val_loss"])
    trainer = L.Trainer(max_epochs=-1, callbacks=[steer])
    trainer.fit(model, train_loader, val_loader)

The console owns the LR: `configure_optimizers` returns one optimizer and no LR scheduler
(the callback refuses to start otherwise), and the LR written there is only the default for a
session with no schedule. The session decides when training ends, so give `max_epochs=-1`
(or at least the plan's epochs) and leave `min_epochs`/`min_steps` unset. Pausing blocks
training after an optimizer step, before the next batch. Metric names are looked up in
`trainer.callback_metrics` (also as `NAME_epoch`); pass a mapping `{"val_loss": "val/loss"}` to
rename. `train_loss`, when not logged, is the mean of the epoch's training-step losses.

Running the script again with the same session continues its plan: model, optimizer and RNGs
come back from the session's last checkpoint (don't also pass `ckpt_path` to `fit`). With a
plain DataLoader checkpoints fall at epoch ends and the rerun starts a fresh pass. With a
stateful loader that has a length (torchdata's `StatefulDataLoader`), checkpoints also fall
mid-epoch on the engine's time rule and keep Lightning's fit-loop state (its counters and the
loader's `state_dict()`); the rerun hands that to `trainer.fit_loop.load_state_dict`, as a
Lightning checkpoint would, and goes on with the very next batch. Values logged with
`self.log(on_epoch=True)` then cover the batches after the resume only (Lightning keeps them
out of its loop state); `train_loss` is whole.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

try:
    import lightning.pytorch as pl
except ImportError:  # only the older package name is installed
    import pytorch_lightning as pl  # type: ignore[no-redef]

from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.session.layout import MANIFEST
from lrconsole.core.session.manifest import Manifest
from lrconsole.integrations import SteerSettings, metric_map
from lrconsole.steer import Steer
from lrconsole.steerdata import is_stateful

__all__ = ["LrConsoleCallback"]


def _step_loss(outputs: Any) -> torch.Tensor | None:
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
    if isinstance(loss, torch.Tensor) and loss.numel() == 1:
        return loss
    return None


def _sized_stateful(loader: Any) -> bool:
    if not is_stateful(loader):
        return False
    try:
        return len(loader) > 0
    except TypeError:
        return False


class LrConsoleCallback(pl.Callback):
    """Drive the trainer's optimizer LR from an lrconsole session (see the module docstring)."""

    def __init__(
        self,
        session: str | Path,
        *,
        schedule: str | Path | Schedule | None = None,
        lr: float | None = None,
        epochs: int = 10,
        metrics: Sequence[str] | Mapping[str, str] = ("train_loss",),
        monitor: str | None = None,
        serve: bool = True,
        checkpoint_every: float = 2.0,
    ) -> None:
        super().__init__()
        self.settings = SteerSettings(
            Path(session),
            schedule,
            lr,
            epochs,
            metric_map(metrics),
            monitor,
            serve,
            checkpoint_every,
        )
        self.metrics = self.settings.metrics
        self.steer: Steer | None = None
        self.steps_per_epoch = 0
        self._live = False  # a session epoch is in progress
        self._steps = 0  # optimizer steps reported in this epoch
        self._seen = 0  # trainer.global_step at the last step reported
        self._scale = 1.0  # undoes Lightning's division of the loss by accumulate_grad_batches
        self._window: list[float] = []  # batch losses since the last optimizer step
        self._losses: list[float] = []  # step losses of this epoch
        self._trainer: pl.Trainer | None = None

    # -- resume --------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """An existing session opens here, before Lightning builds the loader's iterator,
        and sets Lightning's loop where the session's last checkpoint stands."""
        self._check(trainer, pl_module)
        folder = self.settings.session
        if self.steer is not None or not (folder / MANIFEST).is_file():
            return
        spe = Manifest.read(folder).steps_per_epoch
        self.steer = steer = self.settings.open(trainer.optimizers[0], pl_module, spe)
        self.steps_per_epoch = spe
        engine, place = steer.engine, steer.engine.loop_state
        self._losses = []
        if engine.batch and isinstance(place, dict) and "lightning" in place:
            # Mid-epoch: Lightning restores its counters and the loader's place, as from a
            # checkpoint of its own (on_train_start then opens the session's epoch).
            trainer.fit_loop.load_state_dict(place["lightning"])
            self._losses = [float(v) for v in place.get("losses", [])]
        elif engine.global_epoch:
            # At an epoch's end: Lightning's epoch count goes on, so it starts the next pass
            # at the epoch's start, after the checkpoint's RNG is back (on_train_epoch_start).
            done = dict.fromkeys(
                ("ready", "started", "processed", "completed"), engine.global_epoch
            )
            trainer.fit_loop.epoch_progress.load_state_dict({"total": done, "current": dict(done)})

    def _place(self) -> dict[str, Any]:
        """A checkpoint's "loop": Lightning's fit-loop state at this optimizer step (the
        loader's place in it) and the epoch's losses so far."""
        assert self._trainer is not None and self.steer is not None
        if not self.steer.engine.batch:  # an epoch's end: the pass is over
            loader: Any = self._trainer.train_dataloader
            return {"loader": loader.state_dict()}
        state = self._trainer.fit_loop.state_dict()
        return {"lightning": state, "losses": list(self._losses)}

    # -- fit ---------------------------------------------------------------------------
    def _check(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.lr_scheduler_configs:
            raise ValueError(
                "LrConsoleCallback: the console owns the LR; remove the LR scheduler that "
                "configure_optimizers returns"
            )
        if len(trainer.optimizers) != 1:
            raise ValueError(
                f"LrConsoleCallback steers one optimizer, the trainer has {len(trainer.optimizers)}"
            )
        if trainer.fit_loop.min_epochs or trainer.fit_loop.min_steps:
            raise ValueError(
                "LrConsoleCallback: the session decides when training ends; "
                "leave min_epochs and min_steps unset"
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        batches = trainer.num_training_batches
        if not math.isfinite(batches) or batches < 1:
            raise ValueError(
                "LrConsoleCallback needs a known number of batches per epoch: give the train "
                "dataloader a length, or set Trainer(limit_train_batches=N) to an int"
            )
        accumulate = max(1, int(trainer.accumulate_grad_batches))
        spe = math.ceil(int(batches) / accumulate)
        self._scale = float(accumulate) if pl_module.automatic_optimization else 1.0
        if self.steer is None:
            self.steer = self.settings.open(trainer.optimizers[0], pl_module, spe)
            self.steps_per_epoch = spe
        elif spe != self.steps_per_epoch:
            raise ValueError(
                f"LrConsoleCallback: the trainer now has {spe} optimizer steps per epoch, "
                f"the session {self.settings.session} was trained with {self.steps_per_epoch}"
            )
        self._trainer = trainer
        # A sized stateful loader: Lightning fetches no batch ahead of the step, so the
        # loader's state at a step is that step's place (an iterable one is fetched ahead).
        loader: Any = trainer.train_dataloader
        if _sized_stateful(loader):
            self.steer.data.keep(self.steer.engine, self._place)
            place = self.steer.engine.loop_state
            if not self.steer.engine.batch and isinstance(place, dict) and "loader" in place:
                # The finished pass: the pass Lightning starts next is the one after it.
                loader.load_state_dict(place["loader"])
                iter(loader)
        self._seen = trainer.global_step
        if self.steer.engine.batch and not self._live:
            # Resumed mid-epoch: Lightning skips on_train_epoch_start; the checkpoint's RNG
            # comes back now, after Lightning iterated the restored loader.
            self._begin(trainer)
            self._steps = self.steer.engine.batch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.steer is None or self._live:
            return
        self._begin(trainer)
        self._losses = []

    def _begin(self, trainer: pl.Trainer) -> None:
        assert self.steer is not None
        # Blocks while the operator has the run paused, or waits for a plan with a console
        # attached; writes the first step's LR into the optimizer.
        if not self.steer.start_epoch():
            # Lightning's epoch loop checks should_stop before its first batch: no batch runs.
            trainer.should_stop = True
            return
        self._live = True
        self._steps = 0
        self._window = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.steer is not None and self._live:
            self.steer.data.in_flight = True  # the loader is past the model until the step

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self.steer is None or not self._live:
            return
        loss = _step_loss(outputs)
        if loss is not None:
            self._window.append(float(loss.detach()) * self._scale)
        if trainer.global_step == self._seen:
            return  # accumulating gradients: no optimizer step on this batch
        self._seen = trainer.global_step
        value = sum(self._window) / len(self._window) if self._window else None
        self._window = []
        if self._steps >= self.steps_per_epoch:
            return
        self._steps += 1
        if value is not None and math.isfinite(value):
            self._losses.append(value)
        # Sets the next step's LR; blocks here while paused.
        self.steer.step(value)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.steer is None or not self._live:
            return
        self._live = False
        if self._steps < self.steps_per_epoch:
            return  # cut short (max_steps, a stop mid-epoch): the session keeps its last epoch
        found = trainer.callback_metrics
        metrics: dict[str, float] = {}
        for name, key in self.metrics.items():
            for candidate in (key, f"{key}_epoch"):
                value = found.get(candidate)
                if value is not None:
                    metrics[name] = float(value)
                    break
        if "train_loss" in self.metrics and "train_loss" not in metrics and self._losses:
            metrics["train_loss"] = sum(self._losses) / len(self._losses)
        self.steer.epoch_end(metrics)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.close()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self.close()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.close()

    def close(self) -> None:
        """Save the session at its last whole epoch and release it (idempotent)."""
        steer, self.steer = self.steer, None
        self._live = False
        if steer is not None:
            steer.close()
