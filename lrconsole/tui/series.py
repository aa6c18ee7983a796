"""A growing series of floats with a min/max pyramid, decimated in time bounded by the width.

`Series.buckets(n)` returns the min and max of `n` consecutive stretches of the series. It
reads one pyramid level with at most ~4n entries, so its cost depends on `n` (the screen
width), not on the length of the run: a redraw at 1,000,000 epochs costs what it costs at
1,000. Keeping the min *and* the max of each bucket keeps spikes (a loss that blew up for one
epoch stays visible however far the chart is zoomed out).
"""

from __future__ import annotations

import math
from array import array

INF = math.inf


class Series:
    """Append-only floats; non-finite values are kept as gaps."""

    __slots__ = ("_lo", "_hi", "_last")

    def __init__(self, values: list[float] | None = None) -> None:
        # _lo[k][j] / _hi[k][j]: min / max of raw values [j * 2**k, (j + 1) * 2**k).
        self._lo: list[array[float]] = [array("d")]
        self._hi: list[array[float]] = [array("d")]
        self._last = math.nan
        for value in values or ():
            self.append(value)

    def __len__(self) -> int:
        return len(self._lo[0])

    @property
    def last(self) -> float:
        return self._last

    def append(self, value: float) -> None:
        value = float(value)
        self._last = value
        finite = math.isfinite(value)
        lo, hi = (value, value) if finite else (INF, -INF)
        self._lo[0].append(lo)
        self._hi[0].append(hi)
        k = 0
        while len(self._lo[k]) % 2 == 0:
            los, his = self._lo[k], self._hi[k]
            lo = min(los[-1], los[-2])
            hi = max(his[-1], his[-2])
            if k + 1 == len(self._lo):
                self._lo.append(array("d"))
                self._hi.append(array("d"))
            self._lo[k + 1].append(lo)
            self._hi[k + 1].append(hi)
            k += 1

    def extend(self, values: list[float]) -> None:
        for value in values:
            self.append(value)

    def buckets(self, n: int, start: int = 0, stop: int | None = None) -> list[tuple[float, float]]:
        """Min and max of `n` equal stretches of the window [start, stop) (fewer when the
        window is shorter: then one per index).

        The window may reach past the end of the series (a shared x range): the stretches
        are laid out over the whole window and those past the end are left out, so a short
        series keeps its place instead of being stretched. An empty stretch (only
        non-finite values) is `(inf, -inf)`.
        """
        size = len(self)
        stop = size if stop is None else stop
        if start != 0 or stop != size:
            return self._window(n, max(0, start), stop)
        if n <= 0 or size == 0:
            return []
        raw_lo, raw_hi = self._lo[0], self._hi[0]
        if size <= n:
            return list(zip(raw_lo, raw_hi, strict=True))
        # The coarsest level that still has at least 2n entries (level 0 always qualifies).
        level = 0
        while level + 1 < len(self._lo) and len(self._lo[level + 1]) >= 2 * n:
            level += 1
        los, his = self._lo[level], self._hi[level]
        m = len(los)
        # Raw values past the last full entry of `level`: at most one entry per finer level.
        tail_lo, tail_hi = INF, -INF
        covered = m << level
        for k in range(level - 1, -1, -1):
            j = covered >> k
            if j < len(self._lo[k]):
                tail_lo = min(tail_lo, self._lo[k][j])
                tail_hi = max(tail_hi, self._hi[k][j])
                covered += 1 << k
        out: list[tuple[float, float]] = []
        for c in range(n):
            a = c * m // n
            b = (c + 1) * m // n
            out.append((min(los[a:b]), max(his[a:b])))
        if tail_lo <= tail_hi:
            lo, hi = out[-1]
            out[-1] = (min(lo, tail_lo), max(hi, tail_hi))
        return out

    def _window(self, n: int, start: int, stop: int) -> list[tuple[float, float]]:
        size = len(self)
        width = stop - start
        if n <= 0 or width <= 0 or start >= size:
            return []
        if width <= n:
            end = min(stop, size)
            return list(zip(self._lo[0][start:end], self._hi[0][start:end], strict=True))
        out: list[tuple[float, float]] = []
        for c in range(n):
            a = start + c * width // n
            if a >= size:
                break
            out.append(self._span(a, min(size, start + (c + 1) * width // n)))
        return out

    def _span(self, a: int, b: int) -> tuple[float, float]:
        """Min and max of raw [a, b): climbs the pyramid, O(log(b - a)) entries read."""
        lo, hi = INF, -INF
        k = 0
        while a < b:
            los, his = self._lo[k], self._hi[k]
            if a & 1:
                lo, hi = min(lo, los[a]), max(hi, his[a])
                a += 1
            if b & 1:
                b -= 1
                lo, hi = min(lo, los[b]), max(hi, his[b])
            a >>= 1
            b >>= 1
            k += 1
        return lo, hi

    def range(self) -> tuple[float, float]:
        """(min, max) of the finite values, or (inf, -inf) when there are none."""
        whole = self.buckets(1)
        return whole[0] if whole else (INF, -INF)
