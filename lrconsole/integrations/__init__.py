"""Adapters that let the console steer a trainer you already use.

    from lrconsole.integrations.lightning import LrConsoleCallback     # PyTorch Lightning
    from lrconsole.integrations.huggingface import LrConsoleCallback   # Hugging Face Trainer

Each submodule imports its library when you import it, never before: importing this package
needs neither Lightning nor transformers. Both drive the optimizer's LR through `lrconsole.Steer`,
so the session, its files and its control socket are the same as for any other run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lrconsole.core.plan.schedule import Schedule
    from lrconsole.steer import Steer


def metric_map(metrics: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """Session metric name -> the trainer's name for it."""
    if isinstance(metrics, Mapping):
        return {str(k): str(v) for k, v in metrics.items()}
    if isinstance(metrics, str):
        return {metrics: metrics}
    return {name: name for name in metrics}


@dataclass
class SteerSettings:
    """What a callback hands to `Steer` once its trainer has built the optimizer."""

    session: Path
    schedule: str | Path | Schedule | None
    lr: float | None
    epochs: int
    metrics: dict[str, str]  # session name -> the trainer's name
    monitor: str | None
    serve: bool
    checkpoint_every: float = 2.0  # seconds between time-rule checkpoints (mid-epoch ones)

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ValueError("metrics: name at least one metric to record")

    def open(self, optimizer: Any, model: Any, steps_per_epoch: int) -> Steer:
        from lrconsole.steer import Steer

        return Steer(
            optimizer,
            self.session,
            steps_per_epoch=steps_per_epoch,
            model=model,
            schedule=self.schedule,
            lr=self.lr,
            epochs=self.epochs,
            metrics=list(self.metrics),
            monitor=self.monitor,
            serve=self.serve,
            checkpoint_every=self.checkpoint_every,
        )
