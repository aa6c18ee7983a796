"""The epoch history a process keeps in memory: bounded, whatever the run's length.

Rows are EpochEnd.to_dict() dicts, in epoch order. The newest `recent` epochs are kept at
full resolution; older ones are thinned to every `stride`-th epoch (counted from the first
row, which therefore always stays), and the stride doubles whenever the rows would pass
`cap`. The first and last row of each segment are kept too (the console's segment table
reads them) while they fit in a quarter of the cap; past that they are thinned like the
rest. So at most `cap` rows are held, and appending costs O(1) amortized: a thinning pass
costs O(cap) and frees at least a quarter of the cap. metrics.csv keeps every epoch.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from typing import Any

CAP = 4096  # rows held at most: a few MB however long the run
RECENT = 1024  # the newest epochs, never thinned


class EpochHistory:
    def __init__(
        self, rows: Iterable[dict[str, Any]] = (), cap: int = CAP, recent: int = RECENT
    ) -> None:
        if not 0 < recent <= cap // 2:
            raise ValueError(f"recent must be in 1..cap/2, not {recent} (cap {cap})")
        self.cap = cap
        self.recent = recent
        self.stride = 1
        self._rows: list[dict[str, Any]] = []
        self._epochs: list[int] = []  # the rows' global_epoch, for bisect
        self._pinned: set[int] = set()  # epochs that start or end a segment
        self._pin = True  # False once the pins alone would not fit
        for row in rows:
            self.append(row)

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._rows)

    def rows(self) -> list[dict[str, Any]]:
        """The rows held, oldest first (a new list: safe to hand to another thread)."""
        return list(self._rows)

    @property
    def first_epoch(self) -> int | None:
        return self._epochs[0] if self._epochs else None

    @property
    def last_epoch(self) -> int | None:
        return self._epochs[-1] if self._epochs else None

    def append(self, row: dict[str, Any]) -> None:
        epoch = int(row["global_epoch"])
        if self._rows and epoch <= self._epochs[-1]:
            self.truncate(epoch - 1)  # an epoch trained again: the newer row wins
        if self._pin and (not self._rows or row.get("segment") != self._rows[-1].get("segment")):
            if self._rows:
                self._pinned.add(self._epochs[-1])  # the last row of the segment before
            self._pinned.add(epoch)
        self._rows.append(row)
        self._epochs.append(epoch)
        if len(self._rows) > self.cap:
            self._thin()

    def truncate(self, epoch: int) -> None:
        """Forget the rows past `epoch` (a rollback to it)."""
        cut = bisect.bisect_right(self._epochs, epoch)
        del self._rows[cut:]
        del self._epochs[cut:]
        self._pinned = {e for e in self._pinned if e <= epoch}

    def _keep(self, epoch: int, origin: int) -> bool:
        return (epoch - origin) % self.stride == 0 or (self._pin and epoch in self._pinned)

    def _thin(self) -> None:
        origin, newest = self._epochs[0], self._epochs[-1]
        span = newest - origin
        self._filter(origin, newest)  # rows that left the recent window, off the stride
        while len(self._rows) > self.cap - self.cap // 4:  # leave room: O(1) amortized
            if self._pin and (len(self._pinned) > self.cap // 4 or self.stride > span):
                self._pin = False  # too many segments to pin them all: thin them too
                self._pinned.clear()
            elif self.stride <= span:
                self.stride *= 2
            else:
                break  # only the first row and the newest ones are left
            self._filter(origin, newest)

    def _filter(self, origin: int, newest: int) -> None:
        kept = [
            i
            for i, e in enumerate(self._epochs)
            if e > newest - self.recent or self._keep(e, origin)
        ]
        self._rows = [self._rows[i] for i in kept]
        self._epochs = [self._epochs[i] for i in kept]
