"""The LR range test (Leslie Smith; fastai's `lr_find`) on a copy of the model.

The run itself is untouched: the sweep trains a deep copy of the model and optimizer,
and every RNG is restored afterwards, so training continues exactly as it would have.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

from lrconsole.core.tasks.optim import build_optimizer
from lrconsole.core.train.engine import Engine
from lrconsole.core.train.rng import capture_rng, restore_rng
from lrconsole.core.train.step import apply_lr, train_step


@dataclass
class LrFindResult:
    lrs: list[float]
    losses: list[float]  # smoothed, as fastai plots them
    suggestion: float  # fastai's "valley": inside the longest stretch of falling loss
    steepest: float  # the steepest descent of the smoothed loss
    minimum: float  # the LR at the lowest smoothed loss
    stopped_early: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lr_find(
    engine: Engine,
    start_lr: float = 1e-6,
    end_lr: float = 10.0,
    steps: int = 100,
    beta: float = 0.98,
    diverge: float = 4.0,
) -> LrFindResult:
    """Sweep the LR geometrically over `steps` batches; stop once the loss diverges."""
    rng = capture_rng()
    model = copy.deepcopy(engine.model)
    optimizer = build_optimizer(engine.optimizer_spec, model.parameters(), start_lr)
    optimizer.load_state_dict(copy.deepcopy(engine.optimizer.state_dict()))
    task = engine.task
    model.train()
    lrs: list[float] = []
    losses: list[float] = []
    average, best, stopped = 0.0, math.inf, False
    batches = iter(task.train_loader)
    try:
        for i in range(steps):
            lr = start_lr * (end_lr / start_lr) ** (i / (steps - 1))
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(task.train_loader)
                batch = next(batches)
            apply_lr(optimizer, lr)
            # At the settings in force (the optimizer's state holds them) and their clip.
            loss = train_step(model, optimizer, task.loss, batch, task.device, engine.clip)
            value = loss.item()
            if not math.isfinite(value):
                stopped = True
                break
            average = beta * average + (1 - beta) * value
            smoothed = average / (1 - beta ** (i + 1))
            lrs.append(lr)
            losses.append(smoothed)
            best = min(best, smoothed)
            if i > 5 and smoothed > diverge * best:
                stopped = True
                break
    finally:
        restore_rng(rng)
    return LrFindResult(lrs, losses, *suggest(lrs, losses), stopped)


def suggest(lrs: list[float], losses: list[float]) -> tuple[float, float, float]:
    """(valley, steepest descent, minimum) of the smoothed loss against log LR."""
    if len(lrs) < 3:
        first = lrs[0] if lrs else 1e-3
        return first, first, first
    low = min(range(len(losses)), key=losses.__getitem__)
    # As fastai's `steep`: over the whole sweep, not only before the minimum (a noisy flat
    # start can put the minimum at the second point, leaving nothing to compare).
    slopes = [
        (losses[i + 1] - losses[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1]))
        for i in range(1, len(lrs) - 1)
    ]
    steepest = 1 + min(range(len(slopes)), key=slopes.__getitem__)
    return lrs[valley(losses)], lrs[steepest], lrs[low]


def valley(losses: list[float]) -> int:
    """fastai's valley: the longest decreasing subsequence, then 1/2 of its middle third."""
    n = len(losses)
    run = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
        if run[end] < run[i]:
            end, start = i, i - run[i]
    third = (end - start) / 3
    return min(n - 1, max(0, start + int(third) + int(third / 2)))
