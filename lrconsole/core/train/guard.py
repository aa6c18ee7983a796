"""The divergence guard: a batch loss that is NaN/inf, or spikes far above the recent
epochs' mean loss, stops the run before anything past it is checkpointed.

It compares with the mean batch loss of recent epochs, not the lowest batch: single batches
of a heavy-tailed task (the lesson's) vary tenfold on their own. Its memory is part of every
checkpoint, so a resumed or rolled-back run makes exactly the decisions of an unbroken one.
`GradGuard` does the same for the gradient norm (gradnorm.py feeds it).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

from lrconsole.core.plan.schema import GRAD_GUARD_FIELDS

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


class GradGuard:
    """The gradient guard, beside the loss guard and like it part of every checkpoint.

    Explosion: a step's total gradient norm (before clipping) that is NaN/inf, or above
    `spike_factor` x the mean norm of recent epochs, diverges the run (None: off).
    Vanishing: an epoch mean norm below `vanish` for `patience` epochs in a row pauses it
    the same way, naming the epochs (None, the default: off).
    """

    def __init__(
        self, spike_factor: float | None = 10.0, vanish: float | None = None, patience: int = 3
    ) -> None:
        self.spike_factor = spike_factor
        self.vanish = vanish
        self.patience = patience
        self.recent_means: deque[float] = deque(maxlen=GUARD_EPOCHS)
        self.limit = math.inf  # spike_factor x the recent mean, cached
        self.low_epochs = 0  # epochs in a row under `vanish`

    def configure(self, given: dict[str, Any]) -> None:
        """From a manifest's `grad_guard` (the fields given; the rest take defaults)."""
        settings = {**GRAD_GUARD_FIELDS, **given}
        self.spike_factor = settings["grad_spike_factor"]
        self.vanish = settings["grad_vanish"]
        self.patience = int(settings["grad_vanish_patience"])
        self._update_limit()

    @property
    def watches_steps(self) -> bool:
        """Whether each step's norm must be read (else only the epoch's, at its end)."""
        return self.spike_factor is not None

    def check(self, value: float, where: Callable[[], str]) -> str | None:
        """One step's norm; why it diverged, or None. `where()` names the step."""
        if not math.isfinite(value):
            return f"the gradient norm is {value} {where()}"
        if value > self.limit:
            mean = sum(self.recent_means) / len(self.recent_means)
            return (
                f"the gradient norm spiked to {value:.4g} {where()}, over "
                f"{self.spike_factor:g}x the recent epochs' mean norm {mean:.4g}"
            )
        return None

    def end_epoch(self, mean: float | None, epoch: int) -> str | None:
        """The epoch's mean norm (None: none measured); why to pause, or None."""
        if mean is None or not math.isfinite(mean):
            return None
        self.recent_means.append(mean)
        self._update_limit()
        if self.vanish is None or mean >= self.vanish:
            self.low_epochs = 0
            return None
        self.low_epochs += 1
        if self.low_epochs < self.patience:
            return None
        self.low_epochs = 0  # accepted: `patience` more epochs before it pauses again
        first = epoch - self.patience + 1
        epochs = f"epoch {epoch}" if first == epoch else f"epochs {first}-{epoch}"
        return (
            f"the gradient norm vanished: mean {mean:.3g} at epoch {epoch}, below "
            f"grad_vanish {self.vanish:g} for {self.patience} epochs in a row ({epochs})"
        )

    def _update_limit(self) -> None:
        if self.spike_factor and self.recent_means:
            mean = sum(self.recent_means) / len(self.recent_means)
            self.limit = self.spike_factor * mean
        else:
            self.limit = math.inf

    def state_dict(self) -> dict[str, Any]:
        return {
            "recent_means": [float(x) for x in self.recent_means],
            "low_epochs": int(self.low_epochs),
        }

    def load_state_dict(self, state: Any) -> None:
        """Restore `state_dict()`; None (an older checkpoint) starts afresh."""
        self.recent_means.clear()
        self.low_epochs = 0
        if isinstance(state, dict):
            self.recent_means.extend(float(x) for x in state.get("recent_means") or ())
            self.low_epochs = int(state.get("low_epochs", 0))
        self._update_limit()
