"""The divergence guard: a batch loss that is NaN/inf, or spikes far above the recent
epochs' mean loss, stops the run before anything past it is checkpointed.

It compares with the mean batch loss of recent epochs, not the lowest batch: single batches
of a heavy-tailed task (the lesson's) vary tenfold on their own. Its memory is part of every
checkpoint, so a resumed or rolled-back run makes exactly the decisions of an unbroken one.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

GUARD_EPOCHS = 3  # compare with the mean loss of this many recent epochs


class DivergenceGuard:
    def __init__(self, spike_factor: float | None = 10.0) -> None:
        self.spike_factor = spike_factor
        self.recent_means: deque[float] = deque(maxlen=GUARD_EPOCHS)
        self.limit = math.inf  # spike_factor x the lowest recent epoch mean, cached
        self.epoch_sum = 0.0
        self.epoch_count = 0

    def check(self, value: float | None, where: Callable[[], str]) -> str | None:
        """Count one batch loss (None: unknown, skipped); why it diverged, or None.

        `where()` names the step, as "at step N (epoch E, lr X)"; called only on a problem,
        so a healthy step formats no text.
        """
        if value is None:
            return None
        problem = None
        if not math.isfinite(value):
            problem = f"the loss is {value} {where()}"
        elif self.limit < value:
            floor = min(self.recent_means)
            if self.spike_factor and value > self.spike_factor * floor:
                problem = (
                    f"the loss spiked to {value:.4g} {where()}, over "
                    f"{self.spike_factor:g}x the recent mean {floor:.4g}"
                )
        if value == value:
            self.epoch_sum += value
            self.epoch_count += 1
        return problem

    def end_epoch(self) -> None:
        if self.epoch_count and math.isfinite(self.epoch_sum):
            self.recent_means.append(self.epoch_sum / self.epoch_count)
            self._update_limit()
        self.epoch_sum, self.epoch_count = 0.0, 0

    def _update_limit(self) -> None:
        if self.spike_factor and self.recent_means:
            self.limit = self.spike_factor * min(self.recent_means)
        else:
            self.limit = math.inf

    def state_dict(self) -> dict[str, Any]:
        """The guard's memory, as plain floats (weights_only-safe)."""
        return {
            "recent_means": [float(x) for x in self.recent_means],
            "epoch_sum": float(self.epoch_sum),
            "epoch_count": int(self.epoch_count),
        }

    def load_state_dict(self, state: Any) -> None:
        """Restore `state_dict()`; None (a checkpoint from before it was kept) starts afresh:
        the guard then relearns the loss level over the next epochs."""
        self.recent_means.clear()
        self.epoch_sum, self.epoch_count = 0.0, 0
        if isinstance(state, dict):
            self.recent_means.extend(float(x) for x in state.get("recent_means") or ())
            self.epoch_sum = float(state.get("epoch_sum", 0.0))
            self.epoch_count = int(state.get("epoch_count", 0))
        self._update_limit()
