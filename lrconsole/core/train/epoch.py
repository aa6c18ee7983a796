"""The training data, one epoch at a time, resumable in the middle of an epoch.

An epoch's shuffle order is the torch RNG state at its start: kept in the checkpoint, it
lets a resumed run draw the same order and fast-forward to the batch it stopped at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from lrconsole.core.train.rng import restore_rng


class EpochStream:
    def __init__(self) -> None:
        self.batches: Iterator[Any] | None = None  # None between epochs
        self.epoch_rng: torch.Tensor | None = None
        self.pending_rng: dict[str, Any] | None = None  # a checkpoint's RNG, not yet restored

    def restore_pending(self) -> None:
        if self.pending_rng is not None:
            restore_rng(self.pending_rng)
            self.pending_rng = None

    def start(self, loader: Iterable[Any], skip: int, fresh: Callable[[], None]) -> bool:
        """Iterate `loader`, past its first `skip` batches when resuming mid-epoch; else
        call `fresh()` first. True when it resumed mid-epoch."""
        resumed = bool(skip) and self.epoch_rng is not None
        if resumed:
            assert self.epoch_rng is not None
            torch.set_rng_state(self.epoch_rng)
            batches = iter(loader)
            for _ in range(skip):
                next(batches)
        else:
            fresh()
            self.epoch_rng = torch.get_rng_state()
            batches = iter(loader)
        self.restore_pending()
        self.batches = batches
        return resumed

    def load(self, epoch_rng: torch.Tensor | None, rng: dict[str, Any]) -> None:
        self.epoch_rng = epoch_rng
        self.pending_rng = rng
        self.batches = None
