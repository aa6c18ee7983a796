"""The one training step, and evaluation: shared by the engine, the LR range test and the
ranks that follow rank 0 in a distributed run.

The LR of a step is written into every param group right before it: what the operator
typed is what the optimizer uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lrconsole.core.train.gradnorm import (
    GradStats,
    clip_with_norm,
    grads_of,
    total_norm,
    with_grads,
)

if TYPE_CHECKING:
    from lrconsole.core.tasks.task import Task

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def apply_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def to_device(batch: Any, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, targets = batch[0], batch[1]
    if device != "cpu":  # non_blocking: a copy from pageable memory must not sync the device
        inputs = inputs.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
    return inputs, targets


def train_step(
    model: Callable[..., Any],
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    batch: Any,
    device: str,
    clip: float | None = None,
    grad_stats: GradStats | None = None,
) -> torch.Tensor:
    """Forward, backward and one optimizer step at the LR already applied; the loss.

    With `clip` or `grad_stats`, the total gradient norm before clipping is computed once,
    on the device (no sync): `grad_stats` takes it, and `clip` (the max total norm) scales
    the gradients with it before the step.
    """
    inputs, targets = to_device(batch, device)
    loss = loss_fn(model(inputs), targets)
    optimizer.zero_grad()
    loss.backward()
    if clip is not None or grad_stats is not None:
        norm = (
            grad_stats.norm_of(optimizer)
            if grad_stats is not None
            else total_norm(grads_of(optimizer))
        )
        if grad_stats is not None:
            grad_stats.add(norm)
        if clip is not None:
            clip_with_norm(with_grads(optimizer), clip, norm)
    optimizer.step()
    return loss


@torch.no_grad()
def evaluate(model: nn.Module, task: Task) -> dict[str, float]:
    """Loss and metrics over each whole evaluation set, in eval mode."""
    model.eval()
    out: dict[str, float] = {}
    for set_name, loader in task.eval_sets.items():
        outputs, targets = [], []
        for batch in loader:
            inputs, target = to_device(batch, task.device)
            outputs.append(model(inputs))
            targets.append(target)
        y_hat, y = torch.cat(outputs), torch.cat(targets)
        out[f"{set_name}_loss"] = float(task.loss(y_hat, y))
        for metric_name, fn in task.metrics.items():
            out[f"{set_name}_{metric_name}"] = float(fn(y_hat, y))
    model.train()
    return out
