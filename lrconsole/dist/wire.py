"""The rank protocol of a distributed run, shared by the DDP follower and Steer.

Rank 0 decides; before each step it broadcasts `(STEP, global step, lr)`, before an
evaluation `(EVAL, 0, 0)` (the built-in engine only), and `(EXIT, 0, 0)` when it stops.
Every other rank receives each message and does exactly what it says. Metrics are averaged
over ranks with one all-reduce, in the order of the names every rank agrees on.

The messages may travel on their own CPU group (`group`, see group.py): a rank waiting on
one through a long pause must not sit inside an NCCL collective, which times out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist

STEP, EVAL, EXIT = 1.0, 2.0, 3.0


class Wire:
    def __init__(self, device: str = "cpu", group: Any = None) -> None:
        """`group`: a gloo group for the messages (then on CPU); None: the default group."""
        self.group = group
        self.message = torch.zeros(
            3, dtype=torch.float64, device="cpu" if group is not None else device
        )

    def send(self, kind: float, step: int = 0, lr: float = 0.0) -> None:
        """Rank 0: tell every rank what comes next."""
        self.message[0], self.message[1], self.message[2] = kind, step, lr
        dist.broadcast(self.message, src=0, group=self.group)

    def receive(self) -> tuple[float, int, float]:
        """Other ranks: (kind, global step, lr) of the next message."""
        dist.broadcast(self.message, src=0, group=self.group)
        kind, step, lr = self.message.tolist()
        return float(kind), int(step), float(lr)


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
