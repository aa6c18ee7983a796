"""The rank protocol of a distributed run, shared by the DDP follower and Steer.

Rank 0 decides; before each step it broadcasts a STEP message: the global step, its LR
and the optimizer settings in force (core.plan.settings), before an evaluation EVAL (the
built-in engine only), and EXIT when it stops. Every other rank receives each message and
does exactly what it says, so it steps with rank 0's very values. Metrics are averaged
over ranks with one all-reduce, in the order of the names every rank agrees on.

A message is one small float64 vector, one broadcast: float64 carries every float32 or
float64 setting exactly, so the ranks' values are bit-identical. A setting no segment has
set is NaN ("keep the optimizer's own"); clipping off is CLIP_OFF (0.0), told from NaN.

The messages may travel on their own CPU group (`group`, see group.py): a rank waiting on
one through a long pause must not sit inside an NCCL collective, which times out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.distributed as dist

from lrconsole.core.train.settings import apply_settings, clip_of
from lrconsole.core.train.step import apply_lr

STEP, EVAL, EXIT = 1.0, 2.0, 3.0
NOT_SET = math.nan  # a setting no segment has set yet: the optimizer keeps its own
# Slots 3.. of the vector, in order; betas take two.
_SLOTS = ("momentum", "beta1", "beta2", "weight_decay", "clip_grad_norm", "fresh")
SIZE = 3 + len(_SLOTS)


@dataclass(frozen=True)
class Message:
    """What rank 0 said. `settings`: those in force for the step (a setting absent is
    the optimizer's own); `fresh`: the step starts a `fresh_optimizer` segment."""

    kind: float
    step: int = 0
    lr: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    fresh: bool = False

    @property
    def clip(self) -> float | None:
        """The step's max gradient norm; None: no clipping."""
        return clip_of(self.settings)

    def apply(self, optimizer: torch.optim.Optimizer) -> None:
        """A STEP on another rank: its LR and settings into every param group, with the
        very functions rank 0's engine writes them with."""
        apply_lr(optimizer, self.lr)
        apply_settings(optimizer, self.settings)


class Leader(Protocol):
    """What rank 0's step hook reads of the engine (core.train.engine)."""

    optimizer: torch.optim.Optimizer
    step_settings: dict[str, Any]


def encode(settings: Mapping[str, Any], fresh: bool = False) -> list[float]:
    """Slots 3.. of a STEP message."""
    betas = settings.get("betas", (NOT_SET, NOT_SET))
    values = [settings.get("momentum", NOT_SET), betas[0], betas[1]]
    values += [settings.get("weight_decay", NOT_SET), settings.get("clip_grad_norm", NOT_SET)]
    return [float(v) for v in values] + [1.0 if fresh else 0.0]


def decode(values: list[float]) -> tuple[dict[str, Any], bool]:
    """(settings, fresh) from slots 3..; NaN slots are left out."""
    momentum, beta1, beta2, decay, clip, fresh = values
    out: dict[str, Any] = {}
    for name, value in (("momentum", momentum), ("weight_decay", decay)):
        if not math.isnan(value):
            out[name] = value
    if not math.isnan(beta1):
        out["betas"] = (beta1, beta2)
    if not math.isnan(clip):
        out["clip_grad_norm"] = clip  # CLIP_OFF (0.0): clipping off
    return out, fresh != 0.0


class Wire:
    def __init__(self, device: str = "cpu", group: Any = None) -> None:
        """`group`: a gloo group for the messages (then on CPU); None: the default group."""
        self.group = group
        self.message = torch.zeros(
            SIZE, dtype=torch.float64, device="cpu" if group is not None else device
        )

    def send(
        self,
        kind: float,
        step: int = 0,
        lr: float = 0.0,
        settings: Mapping[str, Any] | None = None,
        fresh: bool = False,
    ) -> None:
        """Rank 0: tell every rank what comes next (a STEP: with its settings)."""
        values = [kind, float(step), lr, *encode(settings or {}, fresh)]
        self.message.copy_(torch.tensor(values, dtype=torch.float64))
        dist.broadcast(self.message, src=0, group=self.group)

    def receive(self) -> Message:
        """Other ranks: the next message."""
        dist.broadcast(self.message, src=0, group=self.group)
        values = self.message.tolist()
        settings, fresh = decode(values[3:])
        return Message(float(values[0]), int(values[1]), float(values[2]), settings, fresh)

    def announcer(self, engine: Leader) -> Callable[[int, float], None]:
        """Rank 0's `step_begin` hook: before each step, its LR and settings (as the engine
        applied them), and whether the engine built a new optimizer (fresh_optimizer)."""
        built = [engine.optimizer]

        def step_begin(step: int, lr: float) -> None:
            fresh, built[0] = engine.optimizer is not built[0], engine.optimizer
            self.send(STEP, step, lr, engine.step_settings, fresh)

        return step_begin


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of an initialized torch.distributed group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def mean_over_ranks(
    names: list[str], values: Mapping[str, float], device: str = "cpu", group: Any = None
) -> dict[str, float]:
    """Every rank's metrics, averaged; every rank calls this with the same `names`.
    A name a rank did not report counts as NaN there; names not in `values` are left out.
    `group`: a gloo group to reduce on (then on CPU); None: the default group."""
    where = "cpu" if group is not None else device
    vector = torch.tensor(
        [values.get(n, float("nan")) for n in names], dtype=torch.float64, device=where
    )
    dist.all_reduce(vector, group=group)
    world = dist.get_world_size()
    return {n: v / world for n, v in zip(names, vector.tolist(), strict=True) if n in values}
