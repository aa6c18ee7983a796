"""The loss of every step, read one step late on an accelerator so that reading it never
stalls the device.

`loss.item()` on CUDA waits for the whole queue: once a step, the GPU would idle while
Python queues the next one. Instead each step's loss is copied (non_blocking, into a
pinned host buffer) and read when the next step has been queued, by then long done. The
guard then decides one step late; `settle()` reads the last loss at once, and the engine
calls it before anything is checkpointed, so no checkpoint lies past a bad step. A loss
on the CPU has no queue to wait for: it is read at once, with no copy (unless `lag` says
otherwise), so handlers on batch events see each step as it ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from lrconsole.core.train import events as ev

if TYPE_CHECKING:
    from lrconsole.core.train.guard import DivergenceGuard


@dataclass(frozen=True)
class StepLoss:
    """Where a loss was taken: its step, epoch (from 1), batch (from 1) and LR."""

    step: int
    epoch: int
    batch: int
    batches: int  # steps in the epoch
    lr: float


class LossFeed:
    """Hands each loss to the guard (`diverged(message, (step, epoch))` on a problem) and
    to the BatchEnd listeners of `emitter`."""

    def __init__(
        self,
        guard: DivergenceGuard,
        diverged: Callable[[str, tuple[int, int]], None],
        emitter: ev.Emitter,
    ) -> None:
        self.guard = guard
        self.diverged = diverged
        self.emitter = emitter
        # True/False: always/never read a step late; None: when the loss is off the CPU.
        self.lag: bool | None = None
        self._pending: tuple[StepLoss, Any, Any] | None = None  # where, value, CUDA event
        self._buffers: list[torch.Tensor] = []  # two host buffers, used in turn
        self._turn = 0

    def push(self, where: StepLoss, value: float | torch.Tensor | None) -> None:
        """Take this step's loss; report the step before it."""
        if not self.lag and (not isinstance(value, torch.Tensor) or value.device.type == "cpu"):
            # No queue to stall: read it now. Copying it first, as a device's loss is,
            # cost 18 us a step, 2.5% of a lesson step.
            self.settle()
            self._report(where, _read(value.detach() if torch.is_tensor(value) else value, None))
            return
        staged = self._stage(value)
        previous, self._pending = self._pending, (where, *staged)
        if previous is not None:
            self._report(previous[0], _read(previous[1], previous[2]))
        if self.lag is False:  # a device's loss, read at once because `lag` says so
            self.settle()

    def settle(self) -> None:
        """Report the step still pending now (waits for the device)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self._report(pending[0], _read(pending[1], pending[2]))

    def _report(self, at: StepLoss, value: float | None) -> None:
        where = lambda: f"at step {at.step} (epoch {at.epoch}, lr {at.lr:g})"  # noqa: E731
        problem = self.guard.check(value, where)
        if problem is not None:
            self.diverged(problem, (at.step, at.epoch))
        if self.emitter.listens(ev.BatchEnd):
            loss = float("nan") if value is None else value
            self.emitter.emit(ev.BatchEnd(at.step, at.epoch, at.batch, at.batches, loss, at.lr))

    def _stage(self, value: float | torch.Tensor | None) -> tuple[Any, Any]:
        if not isinstance(value, torch.Tensor):
            return value, None
        value = value.detach()
        cuda = value.device.type == "cuda"
        buffer = self._buffer(value.dtype, cuda)
        buffer.copy_(value.reshape(()), non_blocking=cuda)
        if not cuda:
            return buffer, None
        event = torch.cuda.Event()
        event.record()
        return buffer, event

    def _buffer(self, dtype: torch.dtype, pin: bool) -> torch.Tensor:
        self._turn ^= 1
        if len(self._buffers) < 2 or self._buffers[0].dtype != dtype:
            self._buffers = [torch.empty((), dtype=dtype, pin_memory=pin) for _ in range(2)]
        return self._buffers[self._turn]


def _read(value: Any, event: Any) -> float | None:
    if event is not None:
        event.synchronize()  # waits for the copy only: the next step stays queued
    if isinstance(value, torch.Tensor):
        return float(value)  # a host buffer: no device sync
    return None if value is None else float(value)
