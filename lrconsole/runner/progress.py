"""The progress line of a foreground run (`lrconsole run`, a distributed run's rank 0)."""

from __future__ import annotations

import time
from typing import TextIO

from lrconsole.core.train.events import EpochEnd


class Progress:
    """A progress line on stderr: redrawn at most 10 times a second on a terminal,
    one line per 10% otherwise (logs stay short)."""

    def __init__(self, out: TextIO, total_steps: int, steps_per_epoch: int) -> None:
        self.out = out
        self.total_epochs = total_steps // steps_per_epoch
        self.tty = out.isatty()
        self.start = time.monotonic()
        self.first_epoch: int | None = None
        self.last_draw = 0.0
        self.last_decile = -1
        self.line = ""

    def on_epoch(self, event: EpochEnd) -> None:
        now = time.monotonic()
        if self.first_epoch is None:
            self.first_epoch = event.global_epoch - 1
        done = event.global_epoch - self.first_epoch
        left = max(self.total_epochs - event.global_epoch, 0)
        eta = (now - self.start) / done * left if done else 0.0
        metrics = "  ".join(f"{k} {v:.4g}" for k, v in event.metrics.items())
        frac = event.global_epoch / self.total_epochs if self.total_epochs else 1.0
        bar = "#" * int(frac * 20)
        self.line = (
            f"[{bar:<20}] epoch {event.global_epoch}/{self.total_epochs}  "
            f"lr {event.lr:g}  {metrics}  ETA {eta:.0f}s"
        )
        if self.tty:
            if now - self.last_draw >= 0.1:
                self.out.write("\r" + self.line + "\x1b[K")
                self.out.flush()
                self.last_draw = now
        else:
            decile = int(frac * 10)
            if decile != self.last_decile:
                self.out.write(self.line + "\n")
                self.last_decile = decile

    def finish(self) -> None:
        if self.tty and self.line:
            self.out.write("\r" + self.line + "\x1b[K\n")
        self.out.flush()
