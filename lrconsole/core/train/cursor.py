"""Which segment the next step falls in: found once per segment, not once per step."""

from __future__ import annotations

from collections.abc import Callable

from lrconsole.core.plan.plan import Plan
from lrconsole.core.plan.segment import Segment


class SegmentCursor:
    """`on_cut(index, step)`: the running segment was cut short at `step` by a plan edit."""

    def __init__(self, plan: Plan, on_cut: Callable[[int, int], None]) -> None:
        self.plan = plan
        self.on_cut = on_cut
        self.reset()

    def reset(self) -> None:
        self.index = -1
        self.end = -1  # the first step past the current segment
        self.segment: Segment | None = None
        self.version = -1

    def at(self, step: int) -> tuple[int, int, Segment]:
        """(index, position inside it, segment) of `step`; cached until the plan changes."""
        plan = self.plan
        if self.version != plan.version or step >= self.end:
            index, _ = plan.locate(step)
            self.version = plan.version
            moved = index != self.index and self.index >= 0
            if moved and 0 < step < self.end:  # cut short by an edit
                self.on_cut(self.index, step)
            self.index = index
            self.segment = plan.segments[index]
            self.end = plan.end_of(index)
        assert self.segment is not None
        start = self.end - self.segment.length(plan.steps_per_epoch)
        return self.index, step - start, self.segment
