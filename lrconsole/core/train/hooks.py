"""Where a distributed run (lrconsole.dist) or a user's own loop joins the engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Hooks:
    """Where a distributed run joins the loop (lrconsole.dist); all None otherwise."""

    step_begin: Callable[[int, float], None] | None = None  # (global step, lr) before a step
    epoch_start: Callable[[int], None] | None = None  # (finished epochs) before an epoch
    reduce_metrics: Callable[[dict[str, float]], dict[str, float]] | None = None
    train_model: Callable[..., Any] | None = None  # e.g. the DDP wrapper for training
    # A user's own loop (lrconsole.steer): its position, such as its loader's state_dict(),
    # kept in every checkpoint as "loop" (plain data and tensors: loaded weights_only).
    loop_state: Callable[[], Any] | None = None
