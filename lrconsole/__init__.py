"""lrconsole: steer PyTorch training by hand.

`lrconsole.Schedule` loads an exported schedule in a plain PyTorch script; importing
this package does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lrconsole._version import __version__

if TYPE_CHECKING:
    from lrconsole.core.plan.schedule import Schedule
    from lrconsole.core.plan.segment import OptimizerSpec, Segment
    from lrconsole.core.tasks.task import Task
    from lrconsole.steer import Steer

__all__ = ["OptimizerSpec", "Schedule", "Segment", "Steer", "Task", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import lrconsole` (and the console) never waits for torch.
    if name in ("Schedule", "Segment", "OptimizerSpec"):
        from lrconsole.core.plan import schedule, segment

        return getattr(schedule if name == "Schedule" else segment, name)
    if name == "Task":
        from lrconsole.core.tasks.task import Task

        return Task
    if name == "Steer":
        from lrconsole.steer import Steer

        return Steer
    raise AttributeError(f"module 'lrconsole' has no attribute {name!r}")
