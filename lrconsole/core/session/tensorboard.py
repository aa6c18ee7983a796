"""A session's TensorBoard runs: one per path, the global epoch as the step (the lesson's
counter), written at checkpoint time, off the per-epoch path."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

from lrconsole.core.atomic import why_unwritable
from lrconsole.core.session.layout import TB_DIR
from lrconsole.core.session.manifest import SessionError


def tb_tag(metric: str) -> str:
    """`train_loss` -> `loss/train`, so TensorBoard groups sets of one metric together."""
    head, _, tail = metric.partition("_")
    return f"{tail}/{head}" if tail else metric


class TensorBoardLogger:
    def __init__(self, folder: Path, resume_epoch: int, path: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops points a crashed run wrote past the checkpoint: none is drawn twice.
        # Each path (a rollback starts a new one) is its own TensorBoard run.
        purge = resume_epoch + 1 if resume_epoch > 0 else None
        log_dir = folder / TB_DIR / f"path-{path}"
        threading.excepthook = _quiet_writer_errors
        try:
            self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge)
        except OSError as exc:  # `tb` is a file, the folder is read-only, the disk is full
            raise SessionError(
                f"{log_dir}: cannot write TensorBoard logs: {why_unwritable(log_dir, exc)}"
            ) from None
        self.pending: list[tuple[int, float, dict[str, float]]] = []
        self.scalars: list[tuple[int, dict[str, float | None]]] = []  # by their own tags

    def add_scalars(self, global_epoch: int, scalars: dict[str, float | None]) -> None:
        """Values logged under their tags as given (`grad/norm`), at the next flush."""
        self.scalars.append((global_epoch, scalars))

    def add_epoch(self, global_epoch: int, lr: float, metrics: dict[str, Any]) -> None:
        self.pending.append((global_epoch, lr, dict(metrics)))

    def flush(self) -> None:
        self.stage()
        self.writer.flush()

    def stage(self) -> None:
        """The epochs so far to the writer's queue (cheap); `writer.flush()` writes them."""
        pending, self.pending = self.pending, []
        for epoch, lr, metrics in pending:
            for name, value in metrics.items():
                self.writer.add_scalar(tb_tag(name), value, epoch)
            self.writer.add_scalar("lr", lr, epoch)
        scalars, self.scalars = self.scalars, []
        for at, values in scalars:
            for tag, scalar in values.items():
                if scalar is not None:
                    self.writer.add_scalar(tag, scalar, at)

    def discard(self) -> None:
        """Drop the epochs not yet written (past the last checkpoint: they are redone)."""
        self.pending = []
        self.scalars = []

    def close(self) -> None:
        try:
            self.flush()
        finally:
            with contextlib.suppress(Exception):  # the flush's error is the one to report
                self.writer.close()


def _quiet_writer_errors(args: threading.ExceptHookArgs) -> None:
    """TensorBoard's writer thread dies on a disk error and prints a traceback; the
    error reaches the trainer at its next flush anyway, said once, in one line."""
    if isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread":
        return
    _default_hook(args)


_default_hook = threading.excepthook
