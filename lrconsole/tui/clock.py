"""The run's training wall time, from the epoch rows' `time` (unix seconds of each epoch's
end), with the idle gaps left out: a pause, a runner stopped overnight and reopened.

The rows carry no start times, so a gap is told by its length: a stretch between two epoch
ends far longer than the recent epochs took counts as one typical epoch. Pure Python, O(1)
per epoch: a million-epoch run costs no more per redraw than a short one.
"""

from __future__ import annotations

import statistics
from collections import deque

GAP_FACTOR = 4.0  # a stretch over this many typical epochs (plus GAP_SLACK) was idle
GAP_SLACK = 1.0  # seconds: a short stall (a checkpoint, an eval) still counts as training


class TrainingClock:
    def __init__(self) -> None:
        self.total = 0.0  # seconds between the first epoch end and the last, gaps left out
        self.last: tuple[int, float] | None = None  # (epoch, time) of the last row
        self.since = 0.0  # when training last resumed (this machine's clock), 0: unknown
        self._recent: deque[float] = deque(maxlen=64)  # seconds per epoch, gaps left out

    def typical(self) -> float:
        """Seconds per epoch lately (the median), 0 before two rows."""
        return statistics.median(self._recent) if self._recent else 0.0

    def add(self, epoch: int, at: float) -> None:
        """An epoch row: `epoch` ended at `at`. Thinned rows (epochs left out) are fine."""
        last, self.last = self.last, (epoch, at)
        if last is None or epoch <= last[0]:
            return
        epochs, seconds = epoch - last[0], max(0.0, at - last[1])
        typical = self.typical()
        if self._recent and seconds > epochs * typical * GAP_FACTOR + GAP_SLACK:
            seconds = epochs * typical  # idle: the epochs in it took their usual time
        else:
            self._recent.append(seconds / epochs)
        self.total += seconds

    def resumed(self, at: float) -> None:
        self.since = at

    def elapsed(self, now: float | None = None) -> float | None:
        """Training seconds so far; None before the first row. `now` while training: the
        clock runs on since the last epoch end (or the resume, when later)."""
        if self.last is None:
            return None
        # The first row's epoch has no start time: it took a typical epoch.
        seconds = self.total + self.typical()
        if now is not None:
            seconds += max(0.0, now - max(self.last[1], self.since))
        return seconds
