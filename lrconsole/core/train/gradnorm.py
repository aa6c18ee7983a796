"""Gradient diagnostics: the total gradient norm of every step (before clipping), without
a host sync per step.

`GradStats` sums the norms and keeps their max on the device; they are read once, at the
epoch's end (`grad_norm`, the mean, and `grad_norm_max` in the epoch row). A NaN or inf
norm stays visible there (the max and the mean become inf/nan). `GradWatch` also hands
each step's norm to the gradient guard the way `lossfeed` hands the loss to the loss
guard: copied without blocking and read one step late off the CPU, so the guard decides
one step late and `settle()` (called before anything is checkpointed) reads the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import _foreach_norm as foreach_norm  # torch's fused per-tensor norms
from torch import nn
from torch._C._nn import flatten_dense_tensors as flatten  # one C++ cat of all grads

from lrconsole.core.train.guard import GradGuard
from lrconsole.core.train.lossfeed import StepLoss


def with_grads(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The optimizer's parameters that have a gradient now."""
    return [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]


def grads_of(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The gradients the optimizer's next step uses."""
    return [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]


SMALL = 1 << 16  # gradient elements up to which one flat norm is the cheapest


def total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all `grads` together, on their device (no sync).

    Fewer ops than `get_total_norm` (whose grouping costs a tenth of a small model's
    step): a small model's grads are joined in one C++ call (a third of the time of
    `cat` over reshapes) and normed at once; a large one's take one fused `foreach` norm
    per tensor.
    """
    return _norm(grads, sum(g.numel() for g in grads) <= SMALL)


def _norm(grads: list[torch.Tensor], flat: bool) -> torch.Tensor:
    if not grads:
        return torch.zeros(())
    try:
        if flat:
            return torch.linalg.vector_norm(flatten(grads))
        return torch.linalg.vector_norm(torch.stack(foreach_norm(grads, 2.0)))
    except RuntimeError:  # grads on several devices: each norm to the first one's
        first = grads[0].device
        norms = [torch.linalg.vector_norm(g).to(first, torch.float32) for g in grads]
        return torch.linalg.vector_norm(torch.stack(norms))


def clip_with_norm(params: list[torch.Tensor], clip: float, norm: torch.Tensor) -> None:
    """Scale the grads of `params` so their total norm (`norm`, computed already) is at
    most `clip`."""
    if hasattr(nn.utils, "clip_grads_with_norm_"):  # torch >= 2.6
        nn.utils.clip_grads_with_norm_(params, clip, norm)
        return
    coef = torch.clamp(clip / (norm + 1e-6), max=1.0)
    for p in params:
        assert p.grad is not None
        p.grad.mul_(coef.to(p.grad.device))


class GradStats:
    """The epoch's step norms: their sum and max, on the device until `read()`.

    Norms are kept as they come (no work per step) and folded into the running sum and
    max every CHUNK steps of the epoch: the sum's rounding then depends only on the
    steps, never on when a checkpoint read it, so a resumed run's means equal an
    unbroken run's to the bit.
    """

    CHUNK = 256

    def __init__(self) -> None:
        self._sum: torch.Tensor | None = None
        self._max: torch.Tensor | None = None
        self._chunk: list[torch.Tensor] = []  # norms since the last fold
        # From a checkpoint, until the next step puts them on its device:
        # (sum, max) of the folded steps, and the norms of the chunk in progress.
        self._carry: tuple[float, float] | None = None
        self._carry_chunk: list[float] = []
        self.count = 0
        self.last: torch.Tensor | None = None  # the last step's norm, for the guard
        # The optimizer's parameters and whether one flat norm suits them, found once per
        # optimizer: gathering them and sizing them each step cost a third of a small
        # model's norm.
        self._params: tuple[Any, int, list[torch.Tensor], bool] | None = None

    def norm_of(self, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """`total_norm(grads_of(optimizer))`, the same tensor, with less work per step."""
        cached, groups = self._params, len(optimizer.param_groups)
        if cached is None or cached[0] is not optimizer or cached[1] != groups:
            params = [p for g in optimizer.param_groups for p in g["params"]]
            cached = (optimizer, groups, params, sum(p.numel() for p in params) <= SMALL)
            self._params = cached
        grads = [g for p in cached[2] if (g := p.grad) is not None]
        if len(grads) < len(cached[2]):  # some have no gradient: size the ones that do
            return total_norm(grads)
        return _norm(grads, cached[3])

    def add(self, norm: torch.Tensor) -> None:
        """A step's norm (computed from gradients: no graph to detach from)."""
        if self._carry_chunk:
            restored = torch.tensor(self._carry_chunk, dtype=norm.dtype, device=norm.device)
            self._chunk, self._carry_chunk = list(restored.unbind()), []
        self._chunk.append(norm)
        self.count += 1
        self.last = norm
        if len(self._chunk) >= self.CHUNK:
            self._fold()

    def _fold(self) -> None:
        if not self._chunk:
            return
        values = torch.stack(self._chunk).float()
        self._chunk = []
        part_sum, part_max = values.sum(), values.max()  # NaN and inf stay visible
        if self._sum is None or self._max is None:
            if self._carry is None:
                self._sum, self._max = part_sum, part_max
                return
            self._sum = torch.tensor(self._carry[0], dtype=torch.float32, device=values.device)
            self._max = torch.tensor(self._carry[1], dtype=torch.float32, device=values.device)
            self._carry = None
        self._sum = self._sum + part_sum
        self._max = torch.maximum(self._max, part_max)

    def _folded(self) -> tuple[float, float] | None:
        if self._sum is not None and self._max is not None:
            values = torch.stack([self._sum, self._max]).tolist()  # one read
            return float(values[0]), float(values[1])
        return self._carry

    def read(self) -> dict[str, float]:
        """The epoch's `grad_norm` (mean) and `grad_norm_max`, and start the next epoch;
        {} when no step gave a norm (a user's own loop)."""
        self._fold()
        totals, count = self._folded(), self.count
        self.reset()
        if totals is None or not count:
            return {}
        return {"grad_norm": totals[0] / count, "grad_norm_max": totals[1]}

    def reset(self) -> None:
        self._sum = self._max = self.last = None
        self._chunk, self._carry, self._carry_chunk = [], None, []
        self.count = 0

    def state_dict(self) -> dict[str, Any]:
        """The epoch so far, as plain floats (read from the device: at checkpoints only)."""
        totals = self._folded()
        chunk = torch.stack(self._chunk).float().tolist() if self._chunk else self._carry_chunk
        return {
            "count": self.count,
            "totals": list(totals) if totals else None,
            "chunk": [float(v) for v in chunk],
        }

    def load_state_dict(self, state: Any) -> None:
        self.reset()
        if isinstance(state, dict) and state.get("count"):
            self.count = int(state["count"])
            if state.get("totals"):
                total, top = state["totals"]
                self._carry = (float(total), float(top))
            self._carry_chunk = [float(v) for v in state.get("chunk") or ()]


class GradWatch:
    """Diagnostics (`stats`, None when off) and the gradient guard, for one engine.

    `diverged(message, (step, epoch))` pauses the run the way a loss divergence does.
    """

    def __init__(self, diverged: Callable[[str, tuple[int, int] | None], None]) -> None:
        self.stats: GradStats | None = GradStats()
        self.guard = GradGuard()
        self.layers = False  # per-layer norms at epoch ends (TensorBoard only)
        self.diverged = diverged
        self._pending: tuple[StepLoss, torch.Tensor, Any] | None = None
        self._buffers: list[torch.Tensor] = []
        self._turn = 0
        # The lagged path (a copy read a step late), which devices with a queue take; on
        # a CPU reading at once is cheaper. Tests set this to run the lagged path on CPU.
        self.lag_on_cpu = False

    def set_enabled(self, on: bool) -> None:
        if on != (self.stats is not None):  # on: keep what a checkpoint loaded
            self.stats = GradStats() if on else None
            self._pending = None

    def push(self, at: StepLoss) -> None:
        """After a step: its norm (if it gave one) to the guard, the step before judged."""
        stats = self.stats
        if stats is None or stats.last is None or not self.guard.watches_steps:
            return
        norm, stats.last = stats.last, None
        if norm.device.type == "cpu" and not self.lag_on_cpu:
            self._check(at, float(norm))  # no device queue to stall: judged at once
            return
        cuda = norm.device.type == "cuda"
        self._turn ^= 1
        if len(self._buffers) < 2:
            self._buffers = [torch.empty((), pin_memory=cuda) for _ in range(2)]
        buffer = self._buffers[self._turn]
        buffer.copy_(norm.reshape(()), non_blocking=cuda)
        event = None
        if cuda:
            event = torch.cuda.Event()
            event.record()
        previous, self._pending = self._pending, (at, buffer, event)
        if previous is not None:
            self._judge(*previous)

    def settle(self) -> None:
        """Judge the step still pending (waits for its copy)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self._judge(*pending)

    def _judge(self, at: StepLoss, buffer: torch.Tensor, event: Any) -> None:
        if event is not None:
            event.synchronize()  # the copy only: later steps stay queued
        self._check(at, float(buffer))  # a host buffer: no device sync

    def _check(self, at: StepLoss, norm: float) -> None:
        where = lambda: f"at step {at.step} (epoch {at.epoch}, lr {at.lr:g})"  # noqa: E731
        problem = self.guard.check(norm, where)
        if problem is not None:
            self.diverged(problem, (at.step, at.epoch))

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """The epoch's norms for its row; the vanishing check (`epoch` counts from 1)."""
        self.settle()
        if self.stats is None:
            return {}
        row = self.stats.read()
        problem = self.guard.end_epoch(row.get("grad_norm"), epoch)
        if problem is not None:
            self.diverged(problem, None)
        return row

    def state_dict(self) -> dict[str, Any]:
        stats = self.stats.state_dict() if self.stats is not None else None
        return {"guard": self.guard.state_dict(), "stats": stats}

    def load_state_dict(self, state: Any) -> None:
        state = state if isinstance(state, dict) else {}
        self._pending = None
        self.guard.load_state_dict(state.get("guard"))
        if self.stats is not None:
            self.stats.load_state_dict(state.get("stats"))


def layer_norms(named: Iterable[tuple[str, nn.Parameter]]) -> dict[str, float]:
    """Each parameter's gradient norm now (the last step's), for TensorBoard at an epoch's
    end: one read for all of them."""
    names, norms = [], []
    for name, p in named:
        if p.grad is not None:
            names.append(name)
            norms.append(torch.linalg.vector_norm(p.grad.detach()).float())
    if not norms:
        return {}
    values = torch.stack([n.to(norms[0].device) for n in norms]).tolist()
    return {name: float(v) for name, v in zip(names, values, strict=True)}
