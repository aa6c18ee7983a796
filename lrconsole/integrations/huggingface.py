"""Hugging Face `transformers.Trainer`: let the console steer `trainer.train()`.

    from lrconsole.integrations.huggingface import LrConsoleCallback

    args = TrainingArguments(..., num_train_epochs=1000, lr_scheduler_type="constant",
                             eval_strategy="epoch")
    steer = LrConsoleCallback("sessions/bert", schedule="plan.yaml",
                              metrics=["train_loss", "eval_loss"])
    trainer = Trainer(model, args, train_dataset=train, eval_dataset=val, callbacks=[steer])
    trainer.train()

The console owns the LR: the callback writes it after the trainer's scheduler stepped, so any
scheduler is overridden, but use `lr_scheduler_type="constant"` (the callback warns otherwise)
so that the `learning_rate` the trainer logs is not misleading; `learning_rate` itself is only
the default for a session with no schedule. The session decides when training ends, so give
`num_train_epochs` at least the plan's epochs. Pausing blocks training after an optimizer step,
before the next batch. One session step is one optimizer step (`gradient_accumulation_steps`
batches).

Metrics: `train_loss` is the mean of the epoch's step losses, read from the model's output
(`output.loss` or `output["loss"]`, as Hugging Face models return it when given labels); any
other name is looked up among the values the trainer logged during the epoch (`eval_loss`,
`eval_accuracy`, `loss`, ...); pass a mapping `{"val_loss": "eval_loss"}` to rename. With
`eval_strategy="epoch"` the epoch is recorded after its evaluation.

Running the script again with the same session continues its plan (model, optimizer and RNGs
come back from the session's last epoch-end checkpoint); don't also pass
`resume_from_checkpoint`. The trainer's own loop starts again at its epoch 0, so its data
order does not resume, and checkpoints stay at epoch ends even with a stateful loader: the
trainer takes its resume position only from its own checkpoint folder (README: why).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from lrconsole.core.plan.schedule import Schedule
from lrconsole.integrations import SteerSettings, metric_map
from lrconsole.steer import Steer

__all__ = ["LrConsoleCallback"]


def _output_loss(output: Any) -> torch.Tensor | None:
    if isinstance(output, Mapping):
        loss = output.get("loss")
    elif isinstance(output, (tuple, list)) and output:
        loss = output[0]
    else:
        loss = getattr(output, "loss", None)
    if isinstance(loss, torch.Tensor) and loss.numel() == 1:
        return loss
    return None


class LrConsoleCallback(TrainerCallback):
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
        self._halted = False  # the session ended training: no optimizer step may change weights
        self._pending = False  # the epoch's steps are done; its evaluation is still to come
        self._steps = 0  # optimizer steps reported in this epoch
        self._window: list[float] = []  # batch losses since the last optimizer step
        self._losses: list[float] = []  # step losses of this epoch
        self._logged: dict[str, float] = {}  # what the trainer logged during this epoch
        self._hook: torch.utils.hooks.RemovableHandle | None = None

    # -- train -------------------------------------------------------------------------
    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        train_dataloader: Any = None,
        **kwargs: Any,
    ) -> None:
        if optimizer is None or train_dataloader is None:
            raise ValueError("LrConsoleCallback: the trainer passed no optimizer or dataloader")
        try:
            batches = len(train_dataloader)
        except TypeError:
            raise ValueError(
                "LrConsoleCallback needs a train dataset with a length (batches per epoch)"
            ) from None
        scheduler = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
        if scheduler != "constant":
            warnings.warn(
                f"LrConsoleCallback: the console owns the LR and overrides the {scheduler!r} "
                "scheduler; use lr_scheduler_type='constant' so the logged learning_rate is true",
                stacklevel=2,
            )
        accumulate = max(1, int(args.gradient_accumulation_steps))
        self.steps_per_epoch = max(1, math.ceil(batches / accumulate))
        self.steer = self.settings.open(
            getattr(optimizer, "optimizer", optimizer),  # accelerate wraps the torch optimizer
            model,
            self.steps_per_epoch,
        )
        if model is not None:
            self._hook = model.register_forward_hook(self._capture_loss)
        self._live = self._halted = self._pending = False
        self._open(control)

    def _capture_loss(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if module.training and self._live:
            loss = _output_loss(output)
            if loss is not None:
                self._window.append(float(loss.detach()))

    def _open(self, control: TrainerControl) -> None:
        """Start the session's next epoch; blocks while paused or waiting for a plan."""
        assert self.steer is not None
        if self.steer.start_epoch():
            self._live = True
            self._steps = 0
            self._window, self._losses, self._logged = [], [], {}
        else:
            self._halted = True
            control.should_training_stop = True

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # Usually opened already, at the end of the last epoch (or in on_train_begin).
        if self.steer is not None and not self._live and not self._halted:
            self._open(control)

    def on_pre_optimizer_step(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        optimizer: torch.optim.Optimizer | None = None,
        **kwargs: Any,
    ) -> None:
        # The trainer runs one step of an epoch before it looks at should_training_stop: when
        # the session had nothing to train from the start, drop the gradients so that step
        # changes neither the weights nor the optimizer's state.
        if self.steer is not None and not self._live and optimizer is not None:
            optimizer.zero_grad(set_to_none=True)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.steer is None or not self._live or self._pending:
            return
        value = sum(self._window) / len(self._window) if self._window else None
        self._window = []
        if self._steps >= self.steps_per_epoch:
            return
        self._steps += 1
        if value is not None and math.isfinite(value):
            self._losses.append(value)
        # The trainer stepped its scheduler already: the LR written here is the next step's.
        # Blocks here while paused.
        self.steer.step(value)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        for key, value in (logs or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._logged[key] = float(value)

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.steer is None or not self._live:
            return
        if control.should_evaluate:  # the epoch's evaluation follows: record it with the epoch
            self._pending = True
        else:
            self._finish(state, control)

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        metrics = kwargs.get("metrics")
        if isinstance(metrics, Mapping):
            self.on_log(args, state, control, logs=dict(metrics))
        if self._pending:
            self._finish(state, control)

    def _finish(self, state: TrainerState, control: TrainerControl, more: bool = True) -> None:
        """Record the epoch; then, if the trainer goes on, start the next one right here,
        where the trainer still checks should_training_stop before another batch."""
        assert self.steer is not None
        self._pending = self._live = False
        if self._steps < self.steps_per_epoch:
            self._halted = True  # cut short (max_steps): the session keeps its last epoch
            return
        metrics: dict[str, float] = {}
        for name, key in self.metrics.items():
            if key in self._logged:
                metrics[name] = self._logged[key]
        if "train_loss" in self.metrics and "train_loss" not in metrics:
            if self._losses:
                metrics["train_loss"] = sum(self._losses) / len(self._losses)
            elif "loss" in self._logged:
                metrics["train_loss"] = self._logged["loss"]
        self.steer.epoch_end(metrics)
        goes_on = (
            not control.should_training_stop
            and state.global_step < state.max_steps
            and round(state.epoch or 0) < state.num_train_epochs
        )
        if more and goes_on:
            self._open(control)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.steer is not None and self._pending:
            self._finish(state, control, more=False)
        self.close()

    def close(self) -> None:
        """Save the session at its last whole epoch and release it (idempotent)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        steer, self.steer = self.steer, None
        self._live = self._pending = False
        if steer is not None:
            steer.close()
