"""Pinned checkpoints: ones the user keeps for good, whatever pruning's rule says.

`keep_checkpoints` bounds what disk holds (the newest few and the newest few segment
boundaries); a point worth keeping longer, say the end of a good segment, is pinned by
epoch. Torch-free: the CLI pins on disk when no runner holds the session.
"""

from __future__ import annotations

from pathlib import Path

from lrconsole.core.session.layout import checkpoint_files, checkpoint_name, checkpoint_step
from lrconsole.core.session.manifest import Manifest, SessionError


def pinned_epochs(m: Manifest) -> list[int]:
    return sorted(step // m.steps_per_epoch for step in m.pinned_steps)


def kept_epochs(folder: Path, m: Manifest) -> list[int]:
    """Epochs with a checkpoint on disk (at an epoch's end)."""
    spe = m.steps_per_epoch
    steps = (checkpoint_step(p) for p in checkpoint_files(folder))
    return [s // spe for s in steps if s is not None and s % spe == 0]


def set_pin(folder: Path, m: Manifest, epoch: int, on: bool = True) -> list[int]:
    """Pin (`on`) or unpin the checkpoint at `epoch` in `m` (the caller writes it); the
    pinned epochs after. SessionError, naming what there is, when there is nothing to do."""
    step = epoch * m.steps_per_epoch
    if on and step not in m.pinned_steps:
        if not (folder / checkpoint_name(step)).exists():
            kept = ", ".join(map(str, kept_epochs(folder, m))) or "none"
            raise SessionError(f"no checkpoint at epoch {epoch} to pin; kept epochs: {kept}")
        m.pinned_steps.append(step)
    elif not on:
        if step not in m.pinned_steps:
            pinned = ", ".join(map(str, pinned_epochs(m))) or "none"
            raise SessionError(f"epoch {epoch} is not pinned; pinned epochs: {pinned}")
        m.pinned_steps.remove(step)
    return pinned_epochs(m)
