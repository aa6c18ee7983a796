"""Handlers on engine events: the metrics log, TensorBoard and checkpoints.

None of this lives in the training loop; the engine only emits events.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrconsole.core.session.layout import TB_DIR
from lrconsole.core.train import events as ev

if TYPE_CHECKING:
    from lrconsole.core.train.trainer import Trainer


def tb_tag(metric: str) -> str:
    """`train_loss` -> `loss/train`, so TensorBoard groups sets of one metric together."""
    head, _, tail = metric.partition("_")
    return f"{tail}/{head}" if tail else metric


class TensorBoardLogger:
    """Every epoch's metrics and LR, with the global epoch as the step (the lesson's counter)."""

    def __init__(self, folder: Path, resume_epoch: int, path: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops points a crashed run wrote past the checkpoint: none is drawn twice.
        # Each path (a rollback starts a new one) is its own TensorBoard run.
        purge = resume_epoch + 1 if resume_epoch > 0 else None
        log_dir = folder / TB_DIR / f"path-{path}"
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge)

        self.pending: list[ev.EpochEnd] = []

    def on_epoch(self, event: ev.EpochEnd) -> None:
        # Buffered: the writer runs at checkpoint time, off the per-epoch path.
        self.pending.append(event)

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for event in pending:
            for name, value in event.metrics.items():
                self.writer.add_scalar(tb_tag(name), value, event.global_epoch)
            self.writer.add_scalar("lr", event.lr, event.global_epoch)
        self.writer.flush()

    def discard(self) -> None:
        """Drop the epochs not yet written (past the last checkpoint: they are redone)."""
        self.pending = []

    def close(self) -> None:
        self.flush()
        self.writer.close()


class MetricsRecorder:
    """Appends each epoch to metrics.csv and the in-memory history; tracks the best."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def on_epoch(self, event: ev.EpochEnd) -> None:
        row: dict[str, Any] = {
            "global_epoch": event.global_epoch,
            "global_step": event.global_step,
            "segment": event.segment,
            "lr": event.lr,
            **event.metrics,
            "time": round(event.time, 3),
        }
        self.trainer.metrics_log.append(row)
        self.trainer.history.append(event.to_dict())
        manifest = self.trainer.manifest
        value = event.metrics.get(manifest.monitor)
        if value is None or math.isnan(value):
            return
        best = manifest.best
        better = best is None or (
            value < best["value"] if manifest.monitor_mode == "min" else value > best["value"]
        )
        if better:
            manifest.best = {
                "metric": manifest.monitor,
                "value": value,
                "epoch": event.global_epoch,
            }


class Checkpointer:
    """Saves at most every `interval` seconds at epoch ends, and at every segment end and pause."""

    def __init__(self, trainer: Trainer, interval: float = 2.0) -> None:
        self.trainer = trainer
        self.interval = interval
        self.last_time = time.monotonic()
        self.last_step = trainer.engine.global_step

    def on_epoch(self, event: ev.EpochEnd) -> None:
        if time.monotonic() - self.last_time >= self.interval:
            self.save()

    def on_segment_end(self, event: ev.SegmentEnd) -> None:
        self.save()

    def on_paused(self, event: ev.Paused) -> None:
        self.save()

    def save(self, force: bool = False) -> None:
        engine = self.trainer.engine
        if engine.diverged or (engine.global_step == self.last_step and not force):
            return
        if engine._batch and not engine.mid_epoch_checkpoints:
            return
        path = self.trainer.save_checkpoint()
        self.last_time = time.monotonic()
        self.last_step = engine.global_step
        engine.emit(ev.CheckpointSaved(path, engine.global_epoch, engine.global_step))
