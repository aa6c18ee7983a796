"""lrconsole: steer PyTorch training by hand.

`lrconsole.Schedule` loads an exported schedule in a plain PyTorch script; importing
this package does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from lrconsole.core.schedule import OptimizerSpec, Schedule, Segment
    from lrconsole.core.task import Task
    from lrconsole.steer import Steer

__all__ = ["OptimizerSpec", "Schedule", "Segment", "Steer", "Task", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import lrconsole` (and the console) never waits for torch.
    if name in ("Schedule", "Segment", "OptimizerSpec"):
        from lrconsole.core import schedule

        return getattr(schedule, name)
    if name == "Task":
        from lrconsole.core.task import Task

        return Task
    if name == "Steer":
        from lrconsole.steer import Steer

        return Steer
    raise AttributeError(f"module 'lrconsole' has no attribute {name!r}")
